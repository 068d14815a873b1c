"""After ffmpeg: measure each rendition's segments and write the manifests a player reads first.

HLS master playlists are written here, from the produced segments: BANDWIDTH is the peak segment bit
rate (the highest of any run of segments lasting 0.5-1.5 target durations, as RFC 8216 defines it) plus
the richest audio rendition's, AVERAGE-BANDWIDTH the same for averages, CODECS from the bitstreams,
RESOLUTION and FRAME-RATE from the ladder. DASH MPDs come from ffmpeg's dash muxer (one MPD for all
representations); their `bandwidth` attributes are replaced by the measured minimum channel rate that
plays each representation without stalling after minBufferTime, and never less than its average, and
what the muxer declares wrongly is made true (media/mpd.py); a manifest still breaking a DASH rule
fails the job instead of being published. A CMAF group's fMP4 segments also get VOD HLS media playlists
and a master, so one set of segments serves both.

`publish_order()` lists every file with the manifests last, so a reader never sees a manifest that
points at something not yet published.
"""

from __future__ import annotations

import io
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.ladders import GroupType, SegmentType
from framefleet.media.cmaf import NotPatchable, aac_brand, avc_brand, patch_header, patch_segment
from framefleet.media.codecs import codec_string
from framefleet.media.groups import DASH_MANIFEST, HLS_MASTER, GroupPlan, SubtitlePlan
from framefleet.media.mpd import fix_mpd, iso_duration, mpd_problems

MPD_NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}
AUDIO_GROUP = "audio"
SUBTITLE_GROUP = "subs"


@dataclass
class Segment:
    name: str
    duration: float
    size: int


@dataclass
class Rendition:
    """One packaged stream of a group: its playlist (HLS), init segment, media segments and rates."""

    name: str
    kind: str  # video | audio | subtitles
    segments: list[Segment]
    init: str | None = None
    playlist: str | None = None
    codecs: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    channels: int | None = None
    language: str | None = None
    default: bool = False
    representation_id: str | None = None
    video_range: str = "SDR"  # HLS VIDEO-RANGE of a video rung: SDR, PQ or HLG
    peak_bps: int = 0
    average_bps: int = 0
    bandwidth_bps: int = 0  # DASH @bandwidth

    @property
    def duration(self) -> float:
        """Total seconds of its segments."""
        return sum(s.duration for s in self.segments)

    def files(self) -> list[str]:
        """Its files, init first."""
        return ([self.init] if self.init else []) + [s.name for s in self.segments]

    def details(self) -> dict[str, Any]:
        """JSON-ready facts for the job result."""
        facts: dict[str, Any] = {
            "kind": self.kind,
            "codecs": self.codecs,
            "segments": len(self.segments),
            "duration_seconds": round(self.duration, 3),
            "peak_bitrate_kbps": round(self.peak_bps / 1000, 1),
            "average_bitrate_kbps": round(self.average_bps / 1000, 1),
        }
        if self.playlist:
            facts["playlist"] = self.playlist
        if self.representation_id is not None:
            facts["representation_id"] = self.representation_id
            facts["bandwidth"] = self.bandwidth_bps
        if self.kind == "video":
            facts |= {"width": self.width, "height": self.height, "frame_rate": round(self.fps or 0, 3)}
        elif self.kind == "subtitles":
            facts |= {"language": self.language}
        else:
            facts |= {"channels": self.channels, "language": self.language, "default": self.default}
        return facts


@dataclass
class PackagedGroup:
    """A finished group: its renditions and manifests, all inside `folder`."""

    plan: GroupPlan
    folder: Path
    renditions: list[Rendition]
    manifests: dict[str, str] = field(default_factory=dict)  # "hls" -> master.m3u8, "dash" -> manifest.mpd

    def publish_order(self) -> list[str]:
        """Every file relative to the folder: segments and media playlists first, manifests last."""
        order: list[str] = []
        for rendition in self.renditions:
            order += rendition.files()
        for rendition in self.renditions:
            if rendition.playlist:
                order.append(rendition.playlist)
        order += [name for name in self.manifests.values() if name not in order]
        return list(dict.fromkeys(order))


def _invalid(message: str) -> JobFailure:
    return JobFailure(FailureClass.encoder_failed, message)


# --- rates ------------------------------------------------------------------------------------------------


def peak_bitrate(segments: list[Segment], target: float) -> int:
    """RFC 8216 peak: the highest bit rate of any contiguous run lasting 0.5-1.5 x the target duration.

    Runs shorter than half the target (a stub last segment) only count when nothing else qualifies.
    """
    best = 0.0
    for start in range(len(segments)):
        bits = 0.0
        seconds = 0.0
        for segment in segments[start:]:
            bits += segment.size * 8
            seconds += segment.duration
            if seconds > 1.5 * target:
                break
            if seconds >= 0.5 * target:
                best = max(best, bits / seconds)
    if best == 0.0:
        best = max((s.size * 8 / s.duration for s in segments if s.duration > 0), default=0.0)
    return math.ceil(best)


def average_bitrate(segments: list[Segment]) -> int:
    """Total bits over total seconds."""
    seconds = sum(s.duration for s in segments)
    return math.ceil(sum(s.size for s in segments) * 8 / seconds) if seconds > 0 else 0


def dash_bandwidth(segments: list[Segment], min_buffer: float) -> int:
    """Smallest channel rate delivering each segment before it plays, after `min_buffer` seconds."""
    needed = 0.0
    bits = 0.0
    start = 0.0
    for segment in segments:
        bits += segment.size * 8
        needed = max(needed, bits / (start + min_buffer))
        start += segment.duration
    return math.ceil(needed)


# --- HLS ---------------------------------------------------------------------------------------------------


def parse_media_playlist(path: Path) -> tuple[str | None, list[tuple[str, float]]]:
    """(init segment, [(segment, duration)]) of a VOD media playlist."""
    init: str | None = None
    entries: list[tuple[str, float]] = []
    duration: float | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-MAP:"):
            match = re.search(r'URI="([^"]+)"', line)
            init = match.group(1) if match else None
        elif line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line and not line.startswith("#"):
            if duration is None:
                raise _invalid(f"{path.name}: segment {line} has no duration")
            entries.append((line, duration))
            duration = None
    return init, entries


def _segments(folder: Path, entries: list[tuple[str, float]]) -> list[Segment]:
    segments = []
    for name, duration in entries:
        file = folder / name
        if not file.is_file():
            raise _invalid(f"segment {name} listed in a playlist was not written")
        segments.append(Segment(name, duration, file.stat().st_size))
    if not segments:
        raise _invalid(f"no segments were written in {folder.name}")
    return segments


def media_playlist(rendition: Rendition, target: int, independent: bool) -> str:
    """A VOD media playlist for fMP4 segments (CMAF groups)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0"]
    lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    if independent:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if rendition.init:
        lines.append(f'#EXT-X-MAP:URI="{rendition.init}"')
    for segment in rendition.segments:
        lines += [f"#EXTINF:{segment.duration:.6f},", segment.name]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def target_duration(renditions: list[Rendition]) -> int:
    """EXT-X-TARGETDURATION: every EXTINF, rounded to the nearest integer, must fit under it."""
    longest = max((s.duration for r in renditions for s in r.segments), default=1.0)
    return max(1, math.floor(longest + 0.5))


def master_playlist(renditions: list[Rendition], version: int) -> str:
    """The HLS master playlist: audio renditions as EXT-X-MEDIA, one EXT-X-STREAM-INF per video rung.

    Every variant says its VIDEO-RANGE (SDR, PQ or HLG): players pick HDR variants only on HDR screens.
    """
    audio = [r for r in renditions if r.kind == "audio"]
    video = [r for r in renditions if r.kind == "video"]
    subtitles = [r for r in renditions if r.kind == "subtitles"]
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rendition in subtitles:
        attrs = [f'TYPE=SUBTITLES,GROUP-ID="{SUBTITLE_GROUP}"', f'NAME="{rendition.name}"']
        if rendition.language:
            attrs.append(f'LANGUAGE="{rendition.language}"')
        attrs += ["DEFAULT=NO", "AUTOSELECT=YES", "FORCED=NO", f'URI="{rendition.playlist}"']
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    for rendition in audio:
        attrs = [f'TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}"', f'NAME="{rendition.name}"']
        if rendition.language:
            attrs.append(f'LANGUAGE="{rendition.language}"')
        attrs += [f"DEFAULT={'YES' if rendition.default else 'NO'}", "AUTOSELECT=YES"]
        attrs += [f'CHANNELS="{rendition.channels}"', f'URI="{rendition.playlist}"']
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    audio_peak = max((r.peak_bps for r in audio), default=0)
    audio_average = max((r.average_bps for r in audio), default=0)
    audio_codecs = list(dict.fromkeys(r.codecs for r in audio if r.codecs))
    for rendition in video:
        codecs = ",".join([c for c in [rendition.codecs, *audio_codecs] if c])
        attrs = [
            f"BANDWIDTH={rendition.peak_bps + audio_peak}",
            f"AVERAGE-BANDWIDTH={rendition.average_bps + audio_average}",
            f"RESOLUTION={rendition.width}x{rendition.height}",
            f"FRAME-RATE={rendition.fps or 0:.3f}",
            f'CODECS="{codecs}"',
            f"VIDEO-RANGE={rendition.video_range}",
        ]
        if audio:
            attrs.append(f'AUDIO="{AUDIO_GROUP}"')
        if subtitles:
            attrs.append(f'SUBTITLES="{SUBTITLE_GROUP}"')
        # No rendition carries captions; saying so stops players waiting for CEA-608 in the video.
        attrs.append("CLOSED-CAPTIONS=NONE")
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), rendition.playlist or ""]
    return "\n".join(lines) + "\n"


def _package_hls(plan: GroupPlan) -> PackagedGroup:
    folder = plan.folder
    renditions: list[Rendition] = []
    for rung in plan.rungs:
        init, entries = parse_media_playlist(folder / rung.playlist)
        rendition = Rendition(
            name=rung.name,
            kind="video",
            segments=_segments(folder, entries),
            init=init,
            playlist=rung.playlist,
            width=rung.encode.width,
            height=rung.encode.height,
            fps=plan.ladder.fps,
            video_range=rung.video_range,
        )
        rendition.codecs = codec_string(folder / (init or rendition.segments[0].name))
        renditions.append(rendition)
    for audio in plan.audio:
        init, entries = parse_media_playlist(folder / audio.playlist)
        rendition = Rendition(
            name=audio.spec.name or "audio",
            kind="audio",
            segments=_segments(folder, entries),
            init=init,
            playlist=audio.playlist,
            channels=audio.channels,
            language=audio.language,
            default=audio.spec.default,
        )
        rendition.codecs = codec_string(folder / (init or rendition.segments[0].name))
        renditions.append(rendition)
    renditions += [_package_subtitles(plan, sub, renditions[0]) for sub in plan.subtitles]
    target = target_duration(renditions)
    for rendition in renditions:
        rendition.peak_bps = peak_bitrate(rendition.segments, target)
        rendition.average_bps = average_bitrate(rendition.segments)
    for rendition in renditions:
        if rendition.kind == "subtitles":  # segments as long as the video's: the playlist is written now
            playlist = media_playlist(rendition, target, independent=False)
            (folder / (rendition.playlist or "")).write_text(playlist, encoding="utf-8")
    version = 7 if plan.spec.segment_type is SegmentType.fmp4 else 6
    (folder / HLS_MASTER).write_text(master_playlist(renditions, version), encoding="utf-8")
    return PackagedGroup(plan, folder, renditions, {"hls": HLS_MASTER})


# --- WebVTT subtitle renditions ------------------------------------------------------------------------

VTT_TIME = re.compile(r"(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})")


@dataclass
class Cue:
    start: float
    end: float
    text: str  # the cue's settings and payload lines, as ffmpeg wrote them after the timing


def _vtt_seconds(text: str) -> float:
    match = VTT_TIME.fullmatch(text.strip())
    if match is None:
        raise _invalid(f"unreadable WebVTT time {text!r}")
    hours, minutes, seconds, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    return (
        f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}.{millis % 1000:03d}"
    )


def parse_vtt(text: str) -> list[Cue]:
    """The cues of a WebVTT file (identifiers dropped; NOTE, STYLE and REGION blocks have no timing line)."""
    cues: list[Cue] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.split("\n")
        timing = next((k for k, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue
        start, rest = lines[timing].split("-->", 1)
        end, _, settings = rest.strip().partition(" ")
        payload = "\n".join(lines[timing + 1 :])
        cues.append(
            Cue(_vtt_seconds(start), _vtt_seconds(end), (" " + settings if settings else "") + "\n" + payload)
        )
    return cues


def vtt_segment(cues: list[Cue], start: float, end: float, mpegts: int) -> str:
    """One WebVTT segment: every cue overlapping [start, end) (a cue spanning a boundary is repeated, as
    HLS asks), times on the media timeline that X-TIMESTAMP-MAP ties to the video's first picture."""
    lines = ["WEBVTT", f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000", ""]
    for cue in cues:
        if cue.start < end and cue.end > start:
            lines += [f"{_vtt_time(cue.start)} --> {_vtt_time(cue.end)}{cue.text}", ""]
    return "\n".join(lines) + "\n"


def first_picture_pts(folder: Path, video: Rendition) -> int:
    """The 90 kHz presentation time of the video's first picture as its segments carry it (MPEG-TS adds a
    fixed offset; fMP4 starts at its edit), which WebVTT's LOCAL 0 stands for."""
    import av

    first = folder / video.segments[0].name
    data = ((folder / video.init).read_bytes() if video.init else b"") + first.read_bytes()
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        times = [p.pts for p in container.demux(stream) if p.pts is not None]
        if not times or stream.time_base is None:
            raise _invalid(f"{first.name} has no timed video packet")
        return round(min(times) * stream.time_base * 90_000)


def _package_subtitles(plan: GroupPlan, sub: SubtitlePlan, video: Rendition) -> Rendition:
    """Cut ffmpeg's WebVTT file for one track into segments on the video's boundaries."""
    folder = plan.folder
    source = folder / sub.vtt
    if not source.is_file():
        raise _invalid(f"the WebVTT file of subtitle track {sub.track.index} was not written")
    cues = parse_vtt(source.read_text(encoding="utf-8"))
    mpegts = first_picture_pts(folder, video)
    segments: list[Segment] = []
    start = 0.0
    for number, piece in enumerate(video.segments):
        name = f"{sub.name}_{number:05d}.vtt"
        (folder / name).write_text(vtt_segment(cues, start, start + piece.duration, mpegts), encoding="utf-8")
        segments.append(Segment(name, piece.duration, (folder / name).stat().st_size))
        start += piece.duration
    source.unlink()  # only the segments are published
    return Rendition(
        name=sub.name,
        kind="subtitles",
        segments=segments,
        playlist=sub.playlist,
        codecs="wvtt",
        language=sub.track.language,
    )


# --- DASH and CMAF -----------------------------------------------------------------------------------------


def _template_name(template: str, rep_id: str, number: int) -> str:
    def number_text(match: re.Match[str]) -> str:
        fmt = match.group(1)
        return f"{number:{fmt[1:]}}" if fmt else str(number)

    name = template.replace("$RepresentationID$", rep_id)
    return re.sub(r"\$Number(%0\d+d)?\$", number_text, name)


def parse_mpd(path: Path) -> tuple[ET.Element, list[dict[str, Any]]]:
    """The MPD root and, per Representation: id, content type, codecs, init, [(segment, seconds)]."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise _invalid(f"the DASH manifest is unreadable: {exc}") from None
    found: list[dict[str, Any]] = []
    for aset in root.iterfind(".//mpd:AdaptationSet", MPD_NS):
        kind = aset.get("contentType") or ""
        for rep in aset.iterfind("mpd:Representation", MPD_NS):
            template = rep.find("mpd:SegmentTemplate", MPD_NS)
            if template is None:
                template = aset.find("mpd:SegmentTemplate", MPD_NS)
            if template is None:
                raise _invalid("the DASH manifest has no SegmentTemplate")
            rep_id = rep.get("id") or ""
            timescale = int(template.get("timescale") or 1)
            number = int(template.get("startNumber") or 1)
            entries: list[tuple[str, float]] = []
            for s in template.iterfind("mpd:SegmentTimeline/mpd:S", MPD_NS):
                for _ in range(int(s.get("r") or 0) + 1):
                    name = _template_name(template.get("media") or "", rep_id, number)
                    entries.append((name, int(s.get("d") or 0) / timescale))
                    number += 1
            found.append(
                {
                    "id": rep_id,
                    "kind": kind,
                    "codecs": rep.get("codecs"),
                    "init": _template_name(template.get("initialization") or "", rep_id, 0),
                    "entries": entries,
                }
            )
    return root, found


def _patch_bandwidth(text: str, rep_id: str, bandwidth: int) -> str:
    pattern = re.compile(rf'(<Representation id="{re.escape(rep_id)}"[^>]*?bandwidth=")\d+(")')
    return pattern.sub(rf"\g<1>{bandwidth}\g<2>", text, count=1)


def _cmaf_brands(plan: GroupPlan, reps: list[dict[str, Any]]) -> dict[str, bytes | None]:
    """The CMAF media profile brand each representation meets (None: only the structural brands)."""
    brands: dict[str, bytes | None] = {}
    by_id = {r["id"]: r["codecs"] or "" for r in reps}
    for rung in plan.rungs:
        codecs = by_id.get(str(rung.stream_index), "")
        brands[str(rung.stream_index)] = avc_brand(
            codecs, rung.encode.width, rung.encode.height, plan.ladder.fps
        )
    for audio in plan.audio:
        codecs = by_id.get(str(audio.stream_index), "")
        brands[str(audio.stream_index)] = aac_brand(codecs, audio.channels, audio.sample_rate)
    return brands


def _patch_cmaf(plan: GroupPlan, reps: list[dict[str, Any]]) -> None:
    """Rewrite each CMAF header and segment so its boxes say what CMAF asks (media/cmaf.py)."""
    brands = _cmaf_brands(plan, reps)
    for rep in reps:
        profile = brands.get(rep["id"])
        files = [(rep["init"], patch_header)] + [(name, patch_segment) for name, _ in rep["entries"]]
        for name, patch in files:
            path = plan.folder / name
            try:
                path.write_bytes(patch(path.read_bytes(), profile))
            except (OSError, NotPatchable) as exc:
                raise _invalid(f"CMAF file {name} could not be completed: {exc}") from None


def _package_dash(plan: GroupPlan) -> PackagedGroup:
    folder = plan.folder
    mpd_path = folder / DASH_MANIFEST
    root, reps = parse_mpd(mpd_path)
    if plan.spec.type is GroupType.cmaf:
        _patch_cmaf(plan, reps)  # before measuring: a brand box may grow by a few bytes
    min_buffer = iso_duration(root.get("minBufferTime")) or plan.ladder.segment_seconds
    by_id = {r["id"]: r for r in reps}
    renditions: list[Rendition] = []
    for rung in plan.rungs:
        rep = by_id.get(str(rung.stream_index))
        if rep is None:
            raise _invalid(f"the DASH manifest lacks rung {rung.name}")
        renditions.append(
            Rendition(
                name=rung.name,
                kind="video",
                segments=_segments(folder, rep["entries"]),
                init=rep["init"],
                codecs=rep["codecs"],
                width=rung.encode.width,
                height=rung.encode.height,
                fps=plan.ladder.fps,
                representation_id=rep["id"],
                video_range=rung.video_range,
            )
        )
    for audio in plan.audio:
        rep = by_id.get(str(audio.stream_index))
        if rep is None:
            raise _invalid(f"the DASH manifest lacks audio {audio.spec.name}")
        renditions.append(
            Rendition(
                name=audio.spec.name or "audio",
                kind="audio",
                segments=_segments(folder, rep["entries"]),
                init=rep["init"],
                codecs=rep["codecs"],
                channels=audio.channels,
                language=audio.language,
                default=audio.spec.default,
                representation_id=rep["id"],
            )
        )
    target = target_duration(renditions)
    text = mpd_path.read_text(encoding="utf-8")
    for rendition in renditions:
        if not (folder / (rendition.init or "")).is_file():
            raise _invalid(f"init segment {rendition.init} was not written")
        rendition.peak_bps = peak_bitrate(rendition.segments, target)
        rendition.average_bps = average_bitrate(rendition.segments)
        # Never below the average: on a clip shorter than a few buffers the formula alone says less.
        rendition.bandwidth_bps = max(dash_bandwidth(rendition.segments, min_buffer), rendition.average_bps)
        text = _patch_bandwidth(text, rendition.representation_id or "", rendition.bandwidth_bps)
    text = fix_mpd(text)
    problems = mpd_problems(text)
    if problems:  # a player would stall or fail on it: publish nothing rather than a broken stream
        raise _invalid("the DASH manifest does not conform: " + "; ".join(problems))
    mpd_path.write_text(text, encoding="utf-8")
    manifests = {"dash": DASH_MANIFEST}
    if plan.spec.type is GroupType.cmaf:
        for rendition in renditions:
            rendition.playlist = f"{rendition.name}.m3u8"
            playlist = media_playlist(rendition, target, independent=rendition.kind == "video")
            (folder / rendition.playlist).write_text(playlist, encoding="utf-8")
        (folder / HLS_MASTER).write_text(master_playlist(renditions, 7), encoding="utf-8")
        manifests = {"hls": HLS_MASTER, "dash": DASH_MANIFEST}
    return PackagedGroup(plan, folder, renditions, manifests)


def package(plan: GroupPlan) -> PackagedGroup:
    """Measure a group's segments and write (or fix) its manifests."""
    if plan.spec.type is GroupType.hls:
        return _package_hls(plan)
    return _package_dash(plan)
