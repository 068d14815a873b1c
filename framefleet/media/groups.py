"""HLS, DASH and CMAF groups in the job's one command: rungs (sizes, GOP-aligned encoders), audio
renditions, and the hls / dash muxer outputs that write their segments and media playlists or MPD."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from framefleet.core.ladders import AudioRenditionSpec, GroupSpec, GroupType, SegmentType, default_cap
from framefleet.core.spec import AudioCodec, VideoCodec
from framefleet.media.capabilities import CPU_ENCODERS
from framefleet.media.colour import encode_filters
from framefleet.media.encoders import (
    DEFAULT_PIX_FMT,
    Family,
    VideoEncode,
    reorder_delay_frames,
    video_encoder_args,
)
from framefleet.media.filters import (
    fps_value,
    num,
)
from framefleet.media.ladder import ResolvedLadder, resolve_ladder
from framefleet.media.outputs import TEXT_SUBTITLES, audio_filters, audio_kbps, audio_target
from framefleet.media.planning import (
    ENCODER_PIX_FMTS,
    JobBuilder,
    StreamScore,
    check_cpu_encoder,
    map_label,
    unsupported,
)
from framefleet.media.probe import SubtitleInfo, VideoInfo
from framefleet.media.tracks import SoundSource

HLS_SEGMENT_EXT = {SegmentType.ts: "ts", SegmentType.fmp4: "m4s"}

DASH_MANIFEST = "manifest.mpd"

HLS_MASTER = "master.m3u8"

# ffmpeg's AAC encoder stamps its first packet this many samples before the first real one (priming).
AAC_PRIMING_SAMPLES = 1024


@dataclass
class RungPlan:
    """One video rung: encoder settings, the hardware that runs it, its branch and where it lands."""

    name: str
    encode: VideoEncode
    family: Family
    filters: list[str]
    label: str = ""
    score: StreamScore | None = None
    ref: str = ""
    playlist: str = ""  # HLS media playlist (hls groups)
    stream_index: int = 0  # index inside the DASH/CMAF output
    aspect: Fraction = Fraction(16, 9)  # display aspect, the source's
    head: list[str] = field(default_factory=list)  # before the branch and its reference: tone mapping
    video_range: str = "SDR"  # HLS VIDEO-RANGE: SDR, or PQ/HLG when the rung stays HDR


@dataclass
class AudioPlan:
    """One audio rendition: what the encoder gets and where it lands."""

    spec: AudioRenditionSpec
    sample_rate: int
    channels: int
    filters: list[str]
    source: SoundSource
    language: str | None = None  # the rendition's, else its input track's
    label: str = ""
    playlist: str = ""
    stream_index: int = 0


@dataclass
class SubtitlePlan:
    """One input text subtitle track carried as an HLS WebVTT rendition: ffmpeg converts it to one WebVTT
    file, packaging cuts that into segments on the video's boundaries and writes its playlist."""

    track: SubtitleInfo
    name: str

    @property
    def vtt(self) -> str:
        """The whole track as ffmpeg writes it (cut into segments afterwards, not published)."""
        return f"{self.name}.vtt"

    @property
    def playlist(self) -> str:
        """Its media playlist."""
        return f"{self.name}.m3u8"


# HLS VIDEO-RANGE by transfer function (the picture's after operations: tone-mapped rungs are SDR).
VIDEO_RANGES = {"smpte2084": "PQ", "arib-std-b67": "HLG"}


@dataclass
class GroupPlan:
    """One group: its ladder resolved against the source, rungs and audio renditions, its folder."""

    spec: GroupSpec
    folder: Path
    ladder: ResolvedLadder
    rungs: list[RungPlan]
    audio: list[AudioPlan]
    subtitles: list[SubtitlePlan] = field(default_factory=list)  # HLS WebVTT renditions

    @property
    def name(self) -> str:
        """The group's name."""
        return self.spec.name or ""


def plan_group(b: JobBuilder, group: GroupSpec, gindex: int, folder: Path) -> GroupPlan:
    """Rungs (sized against the source, GOP-aligned) and audio renditions of one group."""
    if b.video is None or b.info.video is None:
        raise unsupported(f"group {group.name!r} needs video but the input has no video stream")
    ladder = resolve_ladder(group, b.video)
    hls_ts = group.type is GroupType.hls and group.segment_type is SegmentType.ts
    rungs: list[RungPlan] = []
    for rindex, resolved in enumerate(ladder.rungs):
        rung = resolved.spec
        assert rung.codec is not None
        maxrate, bufsize = rung.maxrate_kbps, rung.bufsize_kbps
        if rung.bitrate_kbps is None and maxrate is None:
            # Every rung has a VBV cap: players size their buffers and switch on the manifest's rates.
            maxrate, bufsize = default_cap(rung.codec, min(resolved.width, resolved.height))
        enc = VideoEncode(
            codec=rung.codec,
            crf=rung.crf,
            bitrate_kbps=rung.bitrate_kbps,
            maxrate_kbps=maxrate,
            bufsize_kbps=bufsize,
            preset=rung.preset,
            profile=rung.profile,
            level=rung.level,
            pix_fmt=rung.pix_fmt,
            gop=ladder.gop,
            width=resolved.width,
            height=resolved.height,
            fps=ladder.fps,
        )
        picture, head = b.picture_for(rung.codec, rung.pix_fmt)
        enc = replace(enc, hdr10=b.hdr10_for(rung.codec, picture))
        what = f"group {group.name!r} rung {rung.name!r}"
        family = b.family_for(enc, what)
        if hls_ts and family is not Family.cpu:
            # The driver's preset tables decide hardware B-frames; the sound's lead must be known now.
            enc = replace(enc, b_frames=0)
        if family is Family.cpu:
            encoder = check_cpu_encoder(rung.codec, b.caps)
            pix = rung.pix_fmt or DEFAULT_PIX_FMT
            if encoder in ENCODER_PIX_FMTS and pix not in ENCODER_PIX_FMTS[encoder]:
                raise unsupported(f"{what}: {encoder} cannot encode {pix.value}")
        filters = [f"fps={fps_value(ladder.fps)}"] if ladder.needs_fps_filter else []
        sar = rung_sar(b.video, resolved.width, resolved.height)
        if (resolved.width, resolved.height) != (b.video.width, b.video.height) or sar != 1:
            filters.append(f"scale={resolved.width}:{resolved.height}:flags=bicubic")
        filters.append(f"setsar={sar.numerator}/{sar.denominator}")
        # Explicit colour on every rung (CMAF also wants a colour box in every video track).
        filters = encode_filters(picture, filters, resolved.width, resolved.height)
        plan = RungPlan(name=rung.name or f"rung{rindex}", encode=enc, family=family, filters=filters)
        plan.head = head
        plan.video_range = VIDEO_RANGES.get(picture.color_transfer or "", "SDR")
        plan.aspect = sar * Fraction(resolved.width, resolved.height)
        plan.playlist = f"{plan.name}.m3u8"
        rungs.append(plan)
    audio: list[AudioPlan] = []
    if b.audio is not None:
        renditions = group.audio if group.audio is not None else [AudioRenditionSpec(default=True)]
        for aindex, rendition in enumerate(renditions):
            b.check_encoder(CPU_ENCODERS[rendition.codec], f"group {group.name} audio")
            source = b.sources.for_rendition(rendition, f"groups.{gindex}.audio.{aindex}.track")
            assert source is not None
            mixed = b.sound(source)
            rate, channels = audio_target(rendition.codec, rendition.sample_rate, rendition.channels, mixed)
            filters = b.sound_fit(mixed) + audio_filters(rendition.codec, rate, channels, mixed)
            name = rendition.name or "audio"
            filters += b.loudness_tail(f"{group.name or f'group{gindex}'}/{name}", source, channels, rate)
            language = rendition.language or source.track.language
            audio.append(
                AudioPlan(rendition, rate, channels, filters, source, language, playlist=f"{name}.m3u8")
            )
    if hls_ts and audio:
        delays = sorted({reorder_delay_frames(r.encode, r.family) for r in rungs})
        if len(delays) > 1:
            b.notes.setdefault("hls_ts_sync", []).append(
                f"group {group.name!r}: rungs reorder {delays} frames; the sound lines up with the "
                f"longest, so players that place TS by decode time are off by the difference elsewhere"
            )
        for rendition_plan in audio:
            rendition_plan.filters += ts_audio_lead(delays[-1] / ladder.fps, rendition_plan.sample_rate)
    subtitles = [
        SubtitlePlan(track, f"subtitles{track.index}")
        for track in b.info.subtitle_tracks
        if group.type is GroupType.hls and track.codec in TEXT_SUBTITLES and "webvtt" in b.caps.encoders
    ]
    return GroupPlan(spec=group, folder=folder, ladder=ladder, rungs=rungs, audio=audio, subtitles=subtitles)


def ts_audio_lead(seconds: float, rate: int) -> list[str]:
    """Filters that start an HLS TS audio rendition `seconds` before t=0 with silence, the sound unmoved.

    Some players (shaka-player) place each demuxed TS playlist by its first timestamp, min(DTS, PTS): for
    video the first decode time, `seconds` (the B-frame delay) before the first picture; for AAC the first
    packet, one priming frame before the first sample. Starting the sound's first packet at the video's
    first decode time gives both the same shift; players that read PTS see the same content times.
    """
    pad = round(seconds * rate) - AAC_PRIMING_SAMPLES
    if pad <= 0:
        return []  # no B-frames: the priming alone, at most one AAC frame late on those players
    return [f"adelay=delays={pad}S:all=1", f"asetpts=PTS-{pad}/SR/TB"]


def rung_sar(video: VideoInfo, width: int, height: int) -> Fraction:
    """Pixel aspect that keeps the source's exact display aspect at width x height.

    Even rounding makes 426x240 slightly narrower than 16:9; DASH wants one aspect per adaptation set,
    and players should show every rung with the source's shape, so the rung carries e.g. 640:639 pixels.
    """
    sar = Fraction(video.sample_aspect_ratio).limit_denominator(10_000)
    dar = Fraction(video.width, video.height) * sar
    return (dar / Fraction(width, height)).limit_denominator(10_000)


def rung_video_args(b: JobBuilder, rung: RungPlan, stream: str | None) -> list[str]:
    """Encoder options of one rung; `stream` addresses it inside a DASH output."""
    args = video_encoder_args(
        rung.encode,
        rung.family,
        threads=b.threads if rung.family is Family.cpu else 0,
        stream=stream,
        hw_frames=b.gpu_frames and rung.family is Family.nvenc,
    )
    if rung.encode.codec is VideoCodec.hevc:
        args += [f"-tag:{stream or 'v'}", "hvc1"]
    # The muxer's stream aspect (DASH checks it per adaptation set) comes from -aspect, not from the frames.
    return [*args, f"-aspect:{stream or 'v'}", f"{rung.aspect.numerator}:{rung.aspect.denominator}"]


def rendition_audio_args(plan: AudioPlan, stream: str) -> list[str]:
    """Encoder options of one audio rendition, language included."""
    codec = plan.spec.codec
    kbps = audio_kbps(codec, plan.spec.bitrate_kbps, plan.channels)
    args = [f"-c:{stream}", CPU_ENCODERS[codec], f"-b:{stream}", f"{kbps}k"]
    if plan.language:
        args += [f"-metadata:s:{stream}", f"language={plan.language}"]
    return args


def hls_outputs(b: JobBuilder, group: GroupPlan) -> None:
    """One hls muxer output per rung and per audio rendition."""
    seg = group.spec.segment_type or SegmentType.ts
    ext = HLS_SEGMENT_EXT[seg]
    common = [
        "-f",
        "hls",
        "-hls_time",
        num(round(group.ladder.segment_seconds, 6)),
        "-hls_playlist_type",
        "vod",
        "-hls_flags",
        "independent_segments",
        "-hls_segment_type",
        "mpegts" if seg is SegmentType.ts else "fmp4",
        # Each rung and audio rendition is its own muxer. Left to themselves, the hls muxer and the
        # segment muxer inside it each shift a stream's timestamps so its first one is zero: video by its
        # B-frame delay, AAC by its priming, so the sound played ~59 ms early. Kept as the encoders made
        # them, every playlist shares the source's clock (TS adds the same fixed offset to all; fMP4 says
        # the delays with edit lists), as one DASH muxer or one file already does.
        "-avoid_negative_ts",
        "disabled",
        "-hls_segment_options",
        "avoid_negative_ts=disabled",
    ]
    for rung in group.rungs:
        args = ["-map", map_label(rung.label), *rung_video_args(b, rung, None), "-an", *common]
        if seg is SegmentType.fmp4:
            args += ["-hls_fmp4_init_filename", f"{rung.name}_init.mp4"]
        args += ["-hls_segment_filename", str(group.folder / f"{rung.name}_%05d.{ext}")]
        index = b.add_output(args, str(group.folder / rung.playlist))
        if rung.score is not None:
            b.score_stream(rung.score, index, 0, rung.ref)
    for plan in group.audio:
        args = ["-map", map_label(plan.label), "-vn", *rendition_audio_args(plan, "a"), *common]
        if seg is SegmentType.fmp4:
            args += ["-hls_fmp4_init_filename", f"{plan.spec.name}_init.mp4"]
        args += ["-hls_segment_filename", str(group.folder / f"{plan.spec.name}_%05d.{ext}")]
        b.add_output(args, str(group.folder / plan.playlist))
    for sub in group.subtitles:
        # ffmpeg's hls muxer takes no WebVTT-only output: the whole track as WebVTT, segmented later.
        args = ["-map", f"0:s:{sub.track.index}", "-c:s", "webvtt", "-f", "webvtt"]
        b.add_output(args, str(group.folder / sub.vtt))


def dash_output(b: JobBuilder, group: GroupPlan) -> None:
    """One dash muxer output holding every rung and audio rendition, one MPD."""
    args: list[str] = []
    for index, rung in enumerate(group.rungs):
        rung.stream_index = index
        args += ["-map", map_label(rung.label), *rung_video_args(b, rung, f"v:{index}")]
    sets: list[str] = []
    by_codec: dict[VideoCodec, list[int]] = {}
    for rung in group.rungs:
        by_codec.setdefault(rung.encode.codec, []).append(rung.stream_index)
    for streams in by_codec.values():
        sets.append(f"id={len(sets)},streams={','.join(map(str, streams))}")
    by_language: dict[tuple[str, AudioCodec], list[int]] = {}
    for aindex, plan in enumerate(group.audio):
        plan.stream_index = len(group.rungs) + aindex
        args += ["-map", map_label(plan.label), *rendition_audio_args(plan, f"a:{aindex}")]
        by_language.setdefault((plan.language or "und", plan.spec.codec), []).append(plan.stream_index)
    for streams in by_language.values():
        sets.append(f"id={len(sets)},streams={','.join(map(str, streams))}")
    args += [
        "-f",
        "dash",
        "-dash_segment_type",
        "mp4",
        "-seg_duration",
        num(round(group.ladder.segment_seconds, 6)),
        "-use_template",
        "1",
        "-use_timeline",
        "1",
        "-adaptation_sets",
        " ".join(sets),
        "-init_seg_name",
        "init-$RepresentationID$.m4s",
        "-media_seg_name",
        "chunk-$RepresentationID$-$Number%05d$.m4s",
    ]
    if group.spec.type is GroupType.cmaf:
        args += ["-format_options", "movflags=+cmaf+write_colr"]
    index = b.add_output(args, str(group.folder / DASH_MANIFEST))
    for rung in group.rungs:
        if rung.score is not None:
            b.score_stream(rung.score, index, rung.stream_index, rung.ref)
