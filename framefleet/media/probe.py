"""Media probing with PyAV: what an input holds, and proof that its first stream really decodes.

Every way a file can be unusable (empty, text, truncated, random bytes, no audio or video) ends in
JobFailure(input_invalid) with a sentence a user understands; no other exception escapes for bad media.
"""

from __future__ import annotations

import itertools
import struct
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
import av.filter
import av.stream

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.operations import AudioTrackSpec

# Bounded probing so hostile input cannot make the demuxer read or analyse forever.
PROBE_OPTIONS = {"probesize": str(20 * 1024 * 1024), "analyzeduration": str(10_000_000)}
OPEN_TIMEOUT_SECONDS = 15.0
READ_TIMEOUT_SECONDS = 15.0
# How much of the file to demux (packets of all streams) while looking for one decoded frame.
DECODE_CHECK_PACKETS = 2000
DECODE_CHECK_SECONDS = 20.0
# Demuxers that turn plain text into a "video" stream; a text file is never a valid input.
TEXT_FORMATS = frozenset({"tty", "bintext", "xbin", "adf", "idf", "srt", "webvtt", "ass", "subviewer"})
TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf", "text", "subrip", "webvtt", "ass", "ssa"})
# ffmpeg's AVColorTransferCharacteristic / AVColorPrimaries codes for the values that change processing.
TRANSFERS = {1: "bt709", 6: "smpte170m", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12"}
TRANSFERS |= {16: "smpte2084", 18: "arib-std-b67"}
PRIMARIES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020", 12: "smpte432"}
MATRICES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
RANGES = {1: "tv", 2: "pc"}
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
INTERLACED_FIELD_ORDERS = frozenset({2, 3, 4, 5})  # tt, bb, tb, bt
FIELD_ORDER_UNKNOWN = 0
# A stream that states no field order and whose frames are unflagged (MPEG-4 Part 2, MJPEG, FFV1 or raw
# video in AVI or MP4, captures re-wrapped without their flags) may still hold fields: idet looks at its
# first frames. Its verdict needs enough frames it could decide on, mostly interlaced ones.
IDET_FRAMES = 60
IDET_SECONDS = 10.0
IDET_MIN_DECIDED = 10
IDET_INTERLACED_SHARE = 2 / 3
# Average and nominal rates further apart than this mark a variable-frame-rate stream.
VFR_TOLERANCE = 0.005


@dataclass(frozen=True)
class Hdr10:
    """HDR10 static metadata (SMPTE ST 2086 mastering display, CTA-861.3 content light level), in the
    units x265 and the HEVC SEI use: chromaticity in 1/50000, luminance in 1/10000 cd/m2."""

    green: tuple[int, int] | None = None
    blue: tuple[int, int] | None = None
    red: tuple[int, int] | None = None
    white: tuple[int, int] | None = None
    max_luminance: int | None = None
    min_luminance: int | None = None
    max_cll: int | None = None  # brightest pixel, cd/m2
    max_fall: int | None = None  # brightest frame average, cd/m2

    def x265_params(self) -> list[str]:
        """`master-display=...` and `max-cll=...` for -x265-params (what the source states, nothing else)."""
        params: list[str] = []
        if None not in (self.green, self.blue, self.red, self.white, self.max_luminance, self.min_luminance):
            g, b, r, w = self.green, self.blue, self.red, self.white
            assert g and b and r and w
            params.append(
                f"master-display=G({g[0]},{g[1]})B({b[0]},{b[1]})R({r[0]},{r[1]})WP({w[0]},{w[1]})"
                f"L({self.max_luminance},{self.min_luminance})"
            )
        if self.max_cll is not None and self.max_fall is not None:
            params.append(f"max-cll={self.max_cll},{self.max_fall}")
        return params

    def svtav1_params(self) -> list[str]:
        """`mastering-display=...` and `content-light=...` for -svtav1-params: the same values, written as
        SVT-AV1 reads them (chromaticity 0-1, luminance in cd/m2)."""
        params: list[str] = []
        if None not in (self.green, self.blue, self.red, self.white, self.max_luminance, self.min_luminance):
            g, b, r, w = self.green, self.blue, self.red, self.white
            assert g and b and r and w and self.max_luminance is not None and self.min_luminance is not None

            def xy(point: tuple[int, int]) -> str:
                return f"{point[0] / 50000:.6g},{point[1] / 50000:.6g}"

            params.append(
                f"mastering-display=G({xy(g)})B({xy(b)})R({xy(r)})WP({xy(w)})"
                f"L({self.max_luminance / 10000:.6g},{self.min_luminance / 10000:.6g})"
            )
        if self.max_cll is not None and self.max_fall is not None:
            params.append(f"content-light={self.max_cll},{self.max_fall}")
        return params


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float | None
    pix_fmt: str | None
    rotation: int
    frames: int | None
    bit_rate: int | None
    sample_aspect_ratio: float = 1.0
    interlaced: bool = False
    bit_depth: int = 8
    color_transfer: str | None = None
    color_primaries: str | None = None
    vfr: bool = False
    color_matrix: str | None = None  # YCbCr matrix tag (ffmpeg's colorspace names)
    color_range: str | None = None  # "tv" (limited) or "pc" (full); None when untagged
    duration: float | None = None  # the video stream's own length in seconds, when the file says
    nominal_fps: float | None = None  # the stream's declared (base) rate; differs from `fps` when VFR
    hdr10: Hdr10 | None = None  # mastering display and content light level, when the source states them
    start: float = 0.0  # when the first frame is shown, seconds after the file's earliest stream starts
    # "tff"/"bff" when idet found fields in frames the stream does not flag (interlaced is then True too):
    # deinterlacing must then take every frame, with this parity, as no frame says it is interlaced.
    field_parity: str | None = None

    @property
    def hdr(self) -> bool:
        """True for PQ (SMPTE 2084) and HLG (ARIB STD-B67) pictures."""
        return self.color_transfer in HDR_TRANSFERS

    @property
    def display_width(self) -> int:
        """Width as shown, after the rotation ffmpeg applies when decoding."""
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        """Height as shown, after the rotation ffmpeg applies when decoding."""
        return self.width if self.rotation in (90, 270) else self.height


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    channels: int
    sample_rate: int
    bit_rate: int | None
    layout: str | None = None
    index: int = 0  # among the input's audio streams (ffmpeg's 0:a:N)
    language: str | None = None
    paired: int | None = None  # a mono pair made stereo: the right track's index (`index` is the left's)
    start: float = 0.0  # when the first sample plays, seconds after the file's earliest stream starts


@dataclass(frozen=True)
class SubtitleInfo:
    codec: str  # mov_text, subrip, webvtt, ass, or a picture codec (hdmv_pgs_subtitle, dvd_subtitle)
    index: int  # among the input's subtitle streams (ffmpeg's 0:s:N)
    language: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float | None
    size_bytes: int
    bit_rate: int | None
    video: VideoInfo | None
    audio: AudioInfo | None  # the track outputs use: the first, or the one the spec picks
    audio_tracks: tuple[AudioInfo, ...] = ()  # every audio stream, in order
    subtitle_tracks: tuple[SubtitleInfo, ...] = ()  # every subtitle stream, in order

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _invalid(message: str) -> JobFailure:
    return JobFailure(FailureClass.input_invalid, message)


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _rate(value: Fraction | None) -> float | None:
    if value is None or value <= 0:
        return None
    return float(value)


def _normalise_rotation(degrees: float) -> int:
    # Snap to the nearest quarter turn: containers store matrices with small float errors.
    return (round(degrees / 90.0) * 90) % 360


def _stream_rotation(stream: av.stream.Stream) -> int:
    """Rotation from the legacy `rotate` tag, used when no decoded frame carries a display matrix."""
    tag = stream.metadata.get("rotate")
    if tag is None:
        return 0
    try:
        return _normalise_rotation(float(tag))
    except ValueError:
        return 0


def _is_cover(stream: av.stream.Stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _first_frame(container: av.container.InputContainer, stream: Any) -> Any:
    """Demux the start of `stream` and return its first decoded frame, or None if nothing decodes."""
    deadline = time.monotonic() + DECODE_CHECK_SECONDS
    seen = 0
    # One frame needs no decoder threads; starting them costs more than decoding a small input.
    stream.codec_context.thread_count = 1
    try:
        # Demux every stream, not just this one, so the limits also bound a file whose declared stream
        # never gets a packet.
        for packet in container.demux():
            seen += 1
            if packet.stream.index == stream.index:
                # A damaged packet is skipped as ffmpeg itself would; only "nothing decodes" is fatal.
                # demux() ends with an empty flush packet per stream, which drains buffered frames.
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    frames = []
                if frames:
                    return frames[0]
            if seen >= DECODE_CHECK_PACKETS or time.monotonic() > deadline:
                return None
    except av.FFmpegError:
        return None
    return None


def _codec_name(ctx: Any) -> str:
    # The codec's own name (av1, mp3), not the decoder implementation's (libdav1d, mp3float).
    return str(ctx.codec.canonical_name or ctx.name)


def _bit_depth(pix_fmt: str | None) -> int:
    if not pix_fmt:
        return 8
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, IndexError, TypeError):
        return 8


def _is_vfr(stream: Any) -> bool:
    average, nominal = _rate(stream.average_rate), _rate(stream.base_rate)
    if average is None or nominal is None:
        return False
    return abs(average - nominal) / nominal > VFR_TOLERANCE


def _code(value: Any, names: dict[int, str]) -> str | None:
    try:
        return names.get(int(value))
    except (TypeError, ValueError):
        return None


def _field_order(stream: Any) -> int | None:
    value = getattr(stream.codec_context, "field_order", None)
    return None if value is None else int(value)


def idet_parity(counts: dict[str, float]) -> str | None:
    """The parity ("tff"/"bff") when idet's multi-frame counts (tff, bff, progressive) say interlaced."""
    tff, bff, progressive = (counts.get(k, 0.0) for k in ("tff", "bff", "progressive"))
    decided = tff + bff + progressive
    if decided < IDET_MIN_DECIDED or tff + bff < IDET_INTERLACED_SHARE * decided:
        return None
    return "tff" if tff >= bff else "bff"


def _unflagged_parity(path: Path, index: int) -> str | None:
    """idet over the first frames of video stream `index`; its parity when they hold fields, else None."""
    counts: dict[str, float] = {}
    deadline = time.monotonic() + IDET_SECONDS
    try:
        with av.open(
            str(path), mode="r", options=PROBE_OPTIONS, timeout=(OPEN_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
        ) as container:
            stream: Any = container.streams[index]
            graph = av.filter.Graph()
            buffer = graph.add_buffer(template=stream)
            idet, sink = graph.add("idet"), graph.add("buffersink")
            buffer.link_to(idet)
            idet.link_to(sink)
            graph.configure()
            for n, frame in enumerate(container.decode(stream)):
                graph.push(frame)
                while True:
                    try:
                        out = graph.pull()
                    except (av.BlockingIOError, av.EOFError):
                        break
                    # idet keeps running totals in each frame's metadata: the last frame's are the verdict.
                    prefix = "lavfi.idet.multiple."
                    counts = {
                        k.removeprefix(prefix): float(v)
                        for k, v in out.metadata.items()
                        if k.startswith(prefix) and k != prefix + "current_frame"
                    }
                if n + 1 >= IDET_FRAMES or time.monotonic() > deadline:
                    break
    except (av.FFmpegError, OSError, ValueError):
        return None  # the first frame decoded; what idet cannot read it does not judge
    return idet_parity(counts)


def _with_fields(path: Path, stream: Any, video: VideoInfo) -> VideoInfo:
    """`video`, interlaced with its parity when the stream states no field order but idet finds fields."""
    if video.interlaced or _field_order(stream) != FIELD_ORDER_UNKNOWN:
        return video
    parity = _unflagged_parity(path, stream.index)
    return video if parity is None else replace(video, interlaced=True, field_parity=parity)


def _video_info(stream: Any, frame: Any) -> VideoInfo:
    """The video stream as the container and codec describe it, refined by its first decoded `frame`
    (rotation, colour tags, HDR metadata) when there is one."""
    ctx = stream.codec_context
    rotation = _normalise_rotation(float(getattr(frame, "rotation", 0) or 0)) or _stream_rotation(stream)
    sar = stream.sample_aspect_ratio
    width = int(ctx.width or getattr(frame, "width", 0))
    height = int(ctx.height or getattr(frame, "height", 0))
    if width <= 0 or height <= 0:
        raise _invalid("the video stream has no picture size")
    pix_fmt = ctx.pix_fmt or getattr(getattr(frame, "format", None), "name", None)
    field_order = getattr(ctx, "field_order", None)
    interlaced = bool(getattr(frame, "interlaced_frame", False)) or field_order in INTERLACED_FIELD_ORDERS
    return VideoInfo(
        codec=_codec_name(ctx),
        width=width,
        height=height,
        fps=_rate(stream.average_rate) or _rate(stream.guessed_rate),
        pix_fmt=pix_fmt,
        rotation=rotation,
        frames=_positive_int(stream.frames),
        bit_rate=_positive_int(stream.bit_rate or ctx.bit_rate),
        sample_aspect_ratio=float(sar) if sar and sar > 0 else 1.0,
        interlaced=interlaced,
        bit_depth=_bit_depth(pix_fmt),
        color_transfer=_code(getattr(frame, "color_trc", None), TRANSFERS)
        or _code(getattr(ctx, "color_trc", None), TRANSFERS),
        color_primaries=_code(getattr(frame, "color_primaries", None), PRIMARIES)
        or _code(getattr(ctx, "color_primaries", None), PRIMARIES),
        vfr=_is_vfr(stream),
        color_matrix=_code(getattr(frame, "colorspace", None), MATRICES)
        or _code(getattr(ctx, "colorspace", None), MATRICES),
        color_range=_code(getattr(frame, "color_range", None), RANGES)
        or _code(getattr(ctx, "color_range", None), RANGES),
        duration=_stream_seconds(stream),
        nominal_fps=_rate(stream.base_rate),
        hdr10=_hdr10(frame),
    )


def _ratio(num: int, den: int, scale: int) -> int:
    return round(num * scale / den) if den else 0


def _hdr10(frame: Any) -> Hdr10 | None:
    """HDR10 static metadata from the first frame's side data (decoders attach the stream's SEI or
    container boxes to every frame), or None when the source states none."""
    found: dict[str, Any] = {}
    for side in getattr(frame, "side_data", None) or ():
        kind = str(getattr(side.type, "name", side.type)).rsplit(".", 1)[-1]
        data = bytes(side)
        # AVMasteringDisplayMetadata: primaries R, G, B then white point as rationals, min and max
        # luminance as rationals, then has_primaries and has_luminance.
        if kind == "MASTERING_DISPLAY_METADATA" and len(data) >= 88:
            v = struct.unpack("=22i", data[:88])
            if v[20]:
                xy = [
                    (_ratio(v[i], v[i + 1], 50000), _ratio(v[i + 2], v[i + 3], 50000))
                    for i in range(0, 16, 4)
                ]
                found.update(red=xy[0], green=xy[1], blue=xy[2], white=xy[3])
            if v[21]:
                found.update(
                    min_luminance=_ratio(v[16], v[17], 10000), max_luminance=_ratio(v[18], v[19], 10000)
                )
        elif kind == "CONTENT_LIGHT_LEVEL" and len(data) >= 8:
            found["max_cll"], found["max_fall"] = struct.unpack("=2I", data[:8])
    return Hdr10(**found) if found else None


def _stream_seconds(stream: Any) -> float | None:
    """A stream's own length: its duration, or Matroska's DURATION tag (`00:00:04.000000000`), which is
    where the stream ends: a stream that starts late is that much shorter."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = str(stream.metadata.get("DURATION") or "")
    try:
        hours, minutes, seconds = tag.split(":")
        end = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    return max(0.0, end - start)


def _start(stream: Any, file_start: float) -> float:
    """When a stream starts, seconds after the file's earliest stream (the time ffmpeg counts from)."""
    if stream.start_time is None or not stream.time_base:
        return 0.0
    return max(0.0, float(stream.start_time * stream.time_base) - file_start)


def _audio_info(stream: Any, index: int = 0, file_start: float = 0.0) -> AudioInfo:
    ctx = stream.codec_context
    layout = getattr(ctx, "layout", None)
    channels = int(getattr(ctx, "channels", 0) or (len(layout.channels) if layout is not None else 0))
    if channels <= 0 or not ctx.sample_rate:
        raise _invalid("the audio stream has no channels or sample rate")
    return AudioInfo(
        codec=_codec_name(ctx),
        channels=channels,
        sample_rate=int(ctx.sample_rate),
        bit_rate=_positive_int(stream.bit_rate or ctx.bit_rate),
        layout=getattr(layout, "name", None),
        index=index,
        language=_language(stream),
        start=_start(stream, file_start),
    )


def _language(stream: Any) -> str | None:
    language = str(stream.metadata.get("language") or "").lower()
    return language if language and language != "und" else None


def _duration(container: av.container.InputContainer, streams: list[Any]) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    for stream in streams:
        if stream is not None and stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    return None


def _probe_open(path: Path, size: int, *, decode: bool) -> MediaInfo:
    with av.open(
        str(path), mode="r", options=PROBE_OPTIONS, timeout=(OPEN_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
    ) as container:
        format_name = container.format.name
        if format_name in TEXT_FORMATS:
            raise _invalid("the input is a text file, not audio or video")
        # Cover art is stored as a one-picture "video" stream; it is not the input's video.
        # (ffmpeg's `V` stream specifier skips it the same way, see command.py.)
        video_stream = next((s for s in container.streams.video if not _is_cover(s)), None)
        audio_stream = next(iter(container.streams.audio), None)
        for stream in (video_stream, audio_stream):
            if stream is not None and _codec_name(stream.codec_context) in TEXT_CODECS:
                raise _invalid("the input is a text file, not audio or video")
        if video_stream is None and audio_stream is None:
            raise _invalid("the input has no audio or video stream")

        checked = video_stream if video_stream is not None else audio_stream
        frame = _first_frame(container, checked) if decode else None
        if frame is None and decode:
            kind = "video" if checked is video_stream else "audio"
            raise _invalid(f"the {kind} stream does not decode (the file is truncated or corrupt)")
        # ffmpeg counts every stream's time from the file's earliest one: a sound that starts later than the
        # picture (or before it) has to be lined up with it (filters.fit_audio).
        file_start = (container.start_time or 0) / av.time_base
        video = None
        if video_stream is not None:
            info = replace(_video_info(video_stream, frame), start=_start(video_stream, file_start))
            # A file ffmpeg has just written (decode=False) is as progressive as its stream says: no idet.
            video = _with_fields(path, video_stream, info) if decode else info
        audio = _audio_info(audio_stream, 0, file_start) if audio_stream is not None else None
        tracks = tuple(_audio_info(s, i, file_start) for i, s in enumerate(container.streams.audio))
        return MediaInfo(
            format_name=format_name,
            duration=_duration(container, [video_stream, audio_stream]),
            size_bytes=size,
            bit_rate=_positive_int(container.bit_rate),
            video=video,
            audio=audio,
            audio_tracks=tracks,
            subtitle_tracks=tuple(
                SubtitleInfo(codec=_codec_name(st.codec_context), index=i, language=_language(st))
                for i, st in enumerate(container.streams.subtitles)
            ),
        )


def probe(path: Path, *, decode: bool = True) -> MediaInfo:
    """Describe the media file at `path`; raise JobFailure(input_invalid) when it is not usable media.

    `decode=False` skips decoding the first frame, for a file ffmpeg itself has just written: what its
    streams' parameters say is enough to describe it (size, length, codecs), and the decode would prove
    nothing new while costing a decoder's start (milliseconds per output, more than a short job's probe).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _invalid("the input file does not exist") from None
    except OSError as exc:
        raise _invalid(f"the input file cannot be read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise _invalid("the input is not a regular file")
    if size == 0:
        raise _invalid("the input file is empty")
    try:
        return _probe_open(path, size, decode=decode)
    except JobFailure:
        raise
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _invalid(f"the input is not readable audio or video ({reason})") from None
    except (
        OSError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        ZeroDivisionError,
        UnicodeError,
        AttributeError,
    ) as exc:
        # PyAV surfaces some malformed-media cases through plain Python errors (odd metadata, bad rates).
        raise _invalid(f"the input is not readable audio or video ({type(exc).__name__}: {exc})") from None


def pick_audio_track(
    info: MediaInfo, track: AudioTrackSpec | None, where: str = "operations.audio_track"
) -> AudioInfo | None:
    """The input audio track `track` picks (the first without a choice); a pair of mono tracks comes back
    as one stereo track whose `paired` names the right one.

    A pick the input cannot meet is refused (spec_unsupported) rather than silently taking another track.
    """
    if track is None or not info.audio_tracks:
        if track is not None:
            raise JobFailure(FailureClass.spec_unsupported, f"{where}: the input has no audio")
        return info.audio
    have = ", ".join(f"{t.index}:{t.language or 'und'}/{t.channels}ch" for t in info.audio_tracks)

    def refuse(wanted: str) -> JobFailure:
        return JobFailure(
            FailureClass.spec_unsupported,
            f"{where}: the input has no audio track with {wanted} (it has {have})",
        )

    if track.pair is not None:
        left, right = (next((t for t in info.audio_tracks if t.index == i), None) for i in track.pair)
        for wanted, found in zip(track.pair, (left, right), strict=True):
            if found is None:
                raise refuse(f"index {wanted}")
            if found.channels != 1:
                raise JobFailure(
                    FailureClass.spec_unsupported,
                    f"{where}: pair needs two mono tracks, track {wanted} has {found.channels} channels",
                )
        assert left is not None and right is not None
        return replace(
            left,
            channels=2,
            layout="stereo",
            bit_rate=None,
            paired=right.index,
            language=left.language or right.language,
        )
    if track.index is not None:
        chosen = next((t for t in info.audio_tracks if t.index == track.index), None)
        if chosen is None:
            raise refuse(f"index {track.index}")
        return chosen
    chosen = next((t for t in info.audio_tracks if t.language == track.language), None)
    if chosen is None:
        raise refuse(f"language {track.language!r}")
    return chosen


def unused_audio_tracks(info: MediaInfo, used: set[int]) -> list[dict[str, Any]]:
    """The input's audio tracks outside `used`: index, language, codec and channels of each."""
    return [
        {"index": t.index, "language": t.language, "codec": t.codec, "channels": t.channels}
        for t in info.audio_tracks
        if t.index not in used
    ]


@dataclass(frozen=True)
class FrameIndex:
    """The source's video frames as the container lists them: count, rate, keyframes, timestamps."""

    frames: int
    fps: float
    keyframes: tuple[int, ...]  # frame numbers (presentation order) of keyframes
    start: float  # the first frame's time, seconds from the file's start
    steps_even: bool  # every frame lasts 1/fps (constant frame rate)


def _video_packets(path: Path) -> tuple[list[tuple[int, bool]], Fraction, float]:
    """(pts, keyframe) of every video packet, the stream's time base, and the file's start in seconds."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = [
                (int(p.pts), bool(p.is_keyframe)) for p in container.demux(stream) if p.pts is not None
            ]
            start = (container.start_time or 0) / av.time_base
            return packets, Fraction(stream.time_base or Fraction(1, 90000)), start
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise _invalid(f"the video's frames cannot be listed: {exc}") from None


def frame_index(path: Path) -> FrameIndex:
    """The video's frames read from the container (no decoding): count, rate, keyframes, evenness."""
    packets, base, start = _video_packets(path)
    if len(packets) < 2:
        raise _invalid("the input has too few video frames to split")
    packets.sort()
    pts = [p for p, _ in packets]
    steps = [b - a for a, b in itertools.pairwise(pts)]
    step = sorted(steps)[len(steps) // 2]
    if step <= 0:
        raise _invalid("the input's video timestamps repeat")
    fps = float(1 / (step * base))
    even = all(abs(s - step) <= max(1, step // 50) for s in steps)
    keyframes = tuple(i for i, (_, key) in enumerate(packets) if key)
    return FrameIndex(len(pts), fps, keyframes, float(pts[0] * base) - start, even)


def video_timestamps(path: Path) -> tuple[list[int], Fraction]:
    """The presentation timestamps of a video's frames and their time base (to check a joined file)."""
    packets, base, _ = _video_packets(path)
    return [p for p, _ in packets], base
