"""The ffmpeg argument list for one job: a pure function of the spec, the probed input and the capabilities.

One ffmpeg process writes every output from one decode of the input. Outputs that need their own picture
(scale, fps) or sound (sample rate, channel layout) get a branch of one -filter_complex graph fed by `split`
/ `asplit`; outputs that need no filtering map the decoded input stream directly (ffmpeg still decodes it
once and hands the frames to every encoder); copy outputs map the input stream without decoding.

Missing input audio is not an error: an output that asks for audio from a silent input is written without
an audio track, because an audio-less file is more useful than a failed job. Missing input video is an
error unless the output's video codec is `none`, since the whole point of such an output is its picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import (
    AudioCodec,
    Container,
    JobSpec,
    OutputSpec,
    PixFmt,
    Preset,
    VideoCodec,
)
from framefleet.media.capabilities import CPU_ENCODERS, Capabilities
from framefleet.media.probe import AudioInfo, MediaInfo, VideoInfo

# The input streams every output draws from; `V` skips cover art, as probe() does.
VIDEO_SOURCE = "0:V:0"
AUDIO_SOURCE = "0:a:0"

GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", "-loglevel", "error")

# Outputs are written to temporary names, so the muxer is always named rather than guessed from a suffix.
MUXERS: dict[Container, str] = {
    Container.mp4: "mp4",
    Container.mkv: "matroska",
    Container.mov: "mov",
    Container.webm: "webm",
    Container.ts: "mpegts",
}
FASTSTART = frozenset({Container.mp4, Container.mov})

DEFAULT_CRF: dict[VideoCodec, int] = {
    VideoCodec.h264: 23,
    VideoCodec.hevc: 28,
    VideoCodec.vp9: 32,
    VideoCodec.av1: 35,
}
DEFAULT_AUDIO_KBPS: dict[AudioCodec, int] = {AudioCodec.aac: 128, AudioCodec.opus: 96, AudioCodec.mp3: 128}
DEFAULT_PRESET = Preset.medium
DEFAULT_PIX_FMT = PixFmt.yuv420p

# libvpx-vp9 speed: (deadline, cpu-used). `good` spans 0 (best) to 5; `realtime` is for the fastest presets.
VP9_SPEED: dict[Preset, tuple[str, int]] = {
    Preset.ultrafast: ("realtime", 8),
    Preset.superfast: ("realtime", 7),
    Preset.veryfast: ("realtime", 6),
    Preset.faster: ("good", 5),
    Preset.fast: ("good", 4),
    Preset.medium: ("good", 3),
    Preset.slow: ("good", 2),
    Preset.slower: ("good", 1),
    Preset.veryslow: ("good", 0),
}
# libsvtav1 -preset runs 0 (slowest) to 13; this SVT-AV1 maps 12-13 onto 11 anyway.
SVTAV1_PRESET: dict[Preset, int] = {
    Preset.ultrafast: 11,
    Preset.superfast: 11,
    Preset.veryfast: 10,
    Preset.faster: 10,
    Preset.fast: 9,
    Preset.medium: 8,
    Preset.slow: 6,
    Preset.slower: 4,
    Preset.veryslow: 2,
}
# Pixel formats an encoder refuses although the spec allows them for its codec.
ENCODER_PIX_FMTS: dict[str, frozenset[PixFmt]] = {
    "libsvtav1": frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
}
SUBSAMPLED = frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le, PixFmt.yuv422p})

# Input codecs (PyAV/ffmpeg names) each container can take by stream copy; None means anything.
COPY_VIDEO: dict[Container, frozenset[str] | None] = {
    Container.mp4: frozenset({"h264", "hevc", "av1", "vp9", "mpeg4", "mpeg2video", "mpeg1video", "mjpeg"}),
    Container.mov: frozenset({"h264", "hevc", "prores", "mpeg4", "mpeg2video", "mjpeg", "dnxhd"}),
    Container.mkv: None,
    Container.webm: frozenset({"vp8", "vp9", "av1"}),
    Container.ts: frozenset({"h264", "hevc", "mpeg2video", "mpeg1video"}),
}
COPY_AUDIO: dict[Container, frozenset[str] | None] = {
    Container.mp4: frozenset({"aac", "mp3", "opus", "flac", "ac3", "eac3", "alac"}),
    Container.mov: frozenset({"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le"}),
    Container.mkv: None,
    Container.webm: frozenset({"opus", "vorbis"}),
    Container.ts: frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus"}),
}

# Standard layout per channel count; the only ones libopus takes without a mapping family.
LAYOUTS: dict[int, str] = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "quad",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}
OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
MP3_MAX_RATE = 48000

# Broadcast rates written as the exact fractions encoders expect.
NTSC_RATES: dict[float, str] = {
    23.976: "24000/1001",
    29.97: "30000/1001",
    59.94: "60000/1001",
    119.88: "120000/1001",
}


@dataclass
class _OutputPlan:
    """What one output does with each kind of stream; filters are empty when no branch is needed."""

    index: int
    output: OutputSpec
    path: Path
    video: str  # "encode" | "copy" | "none"
    audio: str
    video_filters: list[str] = field(default_factory=list)
    audio_filters: list[str] = field(default_factory=list)
    video_label: str = VIDEO_SOURCE
    audio_label: str = AUDIO_SOURCE


def _unsupported(message: str) -> JobFailure:
    return JobFailure(FailureClass.spec_unsupported, message)


def _num(value: float) -> str:
    """A number as ffmpeg reads it: integers without '.0', others to six significant digits."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


def fps_value(fps: float) -> str:
    """A frame rate for an fps= filter; broadcast rates become their exact fractions."""
    for rate, fraction in NTSC_RATES.items():
        if abs(fps - rate) < 0.0005:
            return fraction
    return _num(fps)


def _round_dim(value: float, even: bool) -> int:
    # Half rounds up (not to even, as round() would) so equal inputs always give the same size.
    if even:
        return max(2, math.floor(value / 2 + 0.5) * 2)
    return max(1, math.floor(value + 0.5))


def target_size(output: OutputSpec, video: VideoInfo) -> tuple[int, int] | None:
    """The output picture size, or None to keep the input's; a missing side keeps the display aspect."""
    spec = output.video
    pix = spec.pix_fmt or DEFAULT_PIX_FMT
    even = pix in SUBSAMPLED
    src_w, src_h = video.display_width, video.display_height
    aspect = src_w * video.sample_aspect_ratio / src_h
    if spec.width is not None and spec.height is not None:
        size = (spec.width, spec.height)
    elif spec.width is not None:
        size = (spec.width, _round_dim(spec.width / aspect, even))
    elif spec.height is not None:
        size = (_round_dim(spec.height * aspect, even), spec.height)
    elif abs(video.sample_aspect_ratio - 1.0) > 1e-6:
        # Non-square pixels: keep the height, make pixels square so every player shows the same shape.
        size = (_round_dim(src_h * aspect, even), _round_dim(src_h, even))
    elif even and (src_w % 2 or src_h % 2):
        # 4:2:0 and 4:2:2 encoders refuse odd sizes; drop the odd line rather than fail.
        size = (max(2, src_w - src_w % 2), max(2, src_h - src_h % 2))
    else:
        return None
    if size == (src_w, src_h) and abs(video.sample_aspect_ratio - 1.0) <= 1e-6:
        return None
    return size


def _video_filters(output: OutputSpec, video: VideoInfo) -> list[str]:
    filters: list[str] = []
    fps = output.video.fps
    if fps is not None and (video.fps is None or abs(video.fps - fps) > 1e-3):
        filters.append(f"fps={fps_value(fps)}")
    size = target_size(output, video)
    if size is not None:
        filters.append(f"scale={size[0]}:{size[1]}:flags=bicubic")
        filters.append("setsar=1")
    return filters


def _audio_target(codec: AudioCodec, output: OutputSpec, audio: AudioInfo) -> tuple[int, int]:
    """(sample rate, channels) the encoder will get."""
    rate = output.audio.sample_rate or audio.sample_rate
    if codec is AudioCodec.opus and rate not in OPUS_RATES:
        rate = 48000
    if codec is AudioCodec.mp3 and rate > MP3_MAX_RATE:
        rate = MP3_MAX_RATE
    channels = output.audio.channels or audio.channels
    channels = min(channels, 2 if codec is AudioCodec.mp3 else max(LAYOUTS))
    return rate, channels


def _audio_filters(codec: AudioCodec, output: OutputSpec, audio: AudioInfo) -> list[str]:
    rate, channels = _audio_target(codec, output, audio)
    filters: list[str] = []
    if rate != audio.sample_rate:
        filters.append(f"aresample={rate}")
    layout = LAYOUTS[channels]
    # libopus refuses layouts such as 5.1(side) or 2.1 even at a supported channel count.
    if channels != audio.channels or (codec is AudioCodec.opus and audio.layout != layout):
        filters.append(f"aformat=channel_layouts={layout}")
    return filters


def _check_encoder(codec: VideoCodec | AudioCodec, caps: Capabilities) -> str:
    encoder = CPU_ENCODERS[codec]
    if encoder not in caps.encoders:
        raise _unsupported(f"this worker's ffmpeg has no {encoder} encoder for {codec.value}")
    return encoder


def _plan_video(plan: _OutputPlan, info: MediaInfo, caps: Capabilities) -> None:
    output = plan.output
    codec = output.video.codec
    if codec is None or codec is VideoCodec.none:
        plan.video = "none"
        return
    if info.video is None:
        raise _unsupported(
            f"output {output.name!r} asks for {codec.value} video but the input has no video stream "
            "(set video.codec to none for an audio-only output)"
        )
    if codec is VideoCodec.copy:
        allowed = COPY_VIDEO[output.container]
        if allowed is not None and info.video.codec not in allowed:
            raise _unsupported(
                f"output {output.name!r}: {output.container.value} cannot hold the input's "
                f"{info.video.codec} video by copy; choose a video codec to re-encode"
            )
        plan.video = "copy"
        return
    encoder = _check_encoder(codec, caps)
    pix = output.video.pix_fmt or DEFAULT_PIX_FMT
    if encoder in ENCODER_PIX_FMTS and pix not in ENCODER_PIX_FMTS[encoder]:
        raise _unsupported(f"output {output.name!r}: {codec.value} ({encoder}) cannot encode {pix.value}")
    plan.video = "encode"
    plan.video_filters = _video_filters(output, info.video)


def _plan_audio(plan: _OutputPlan, info: MediaInfo, caps: Capabilities) -> None:
    output = plan.output
    codec = output.audio.codec
    if codec is None or codec is AudioCodec.none or info.audio is None:
        plan.audio = "none"
        return
    if codec is AudioCodec.copy:
        allowed = COPY_AUDIO[output.container]
        if allowed is not None and info.audio.codec not in allowed:
            raise _unsupported(
                f"output {output.name!r}: {output.container.value} cannot hold the input's "
                f"{info.audio.codec} audio by copy; choose an audio codec to re-encode"
            )
        plan.audio = "copy"
        return
    _check_encoder(codec, caps)
    plan.audio = "encode"
    plan.audio_filters = _audio_filters(codec, output, info.audio)


def _require_filters(names: set[str], caps: Capabilities) -> None:
    missing = sorted(names - caps.filters)
    if missing:
        raise _unsupported(f"this worker's ffmpeg lacks the filter(s) {', '.join(missing)}")


def _branch_graph(kind: str, source: str, plans: list[_OutputPlan]) -> list[str]:
    """Graph chains that feed each encoding output of `kind` ('v' or 'a') from one decoded stream."""
    chains_of = (lambda p: p.video_filters) if kind == "v" else (lambda p: p.audio_filters)
    if not any(chains_of(p) for p in plans):
        return []  # nothing to filter: every output maps the decoded stream directly
    split = "split" if kind == "v" else "asplit"
    graph: list[str] = []
    if len(plans) == 1:
        sources = [f"[{source}]"]
    else:
        names = [f"[{kind}src{p.index}]" for p in plans]
        graph.append(f"[{source}]{split}={len(plans)}{''.join(names)}")
        sources = names
    for plan, src in zip(plans, sources, strict=True):
        chain = chains_of(plan)
        label = f"{kind}out{plan.index}"
        if chain:
            graph.append(f"{src}{','.join(chain)}[{label}]")
        else:
            label = src.strip("[]")  # a split output can be mapped as it is
        if kind == "v":
            plan.video_label = label
        else:
            plan.audio_label = label
    return graph


def _graph_filters(graph: list[str]) -> set[str]:
    """Names of the filters a graph uses (chains look like '[in]name=args,name2[out]')."""
    names: set[str] = set()
    for chain in graph:
        body = chain[chain.index("]") + 1 :]
        body = body[: body.index("[")] if "[" in body else body
        names.update(item.split("=", 1)[0] for item in body.split(","))
    return names


def _map(label: str) -> str:
    return label if label.startswith("0:") else f"[{label}]"


def _video_args(plan: _OutputPlan, threads: int) -> list[str]:
    output = plan.output
    spec = output.video
    args = ["-map", _map(plan.video_label)]
    if plan.video == "copy":
        args += ["-c:v", "copy"]
        return args
    codec = spec.codec
    assert codec is not None and codec not in (VideoCodec.copy, VideoCodec.none)
    encoder = CPU_ENCODERS[codec]
    preset = spec.preset or DEFAULT_PRESET
    args += ["-c:v", encoder]
    if spec.bitrate_kbps is not None:
        kbps = spec.bitrate_kbps
        args += ["-b:v", f"{kbps}k"]
        # SVT-AV1 refuses a VBV cap outside CRF mode; it gets a plain target bitrate.
        if codec is not VideoCodec.av1:
            args += ["-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k"]
    else:
        args += ["-crf", str(spec.crf if spec.crf is not None else DEFAULT_CRF[codec])]
        if codec is VideoCodec.vp9:
            # Constant quality: without -b:v 0 libvpx treats crf as a cap on a default bitrate.
            args += ["-b:v", "0"]
    if codec in (VideoCodec.h264, VideoCodec.hevc):
        args += ["-preset", preset.value]
    elif codec is VideoCodec.vp9:
        deadline, cpu_used = VP9_SPEED[preset]
        args += ["-deadline", deadline, "-cpu-used", str(cpu_used), "-row-mt", "1"]
    elif codec is VideoCodec.av1:
        args += ["-preset", str(SVTAV1_PRESET[preset])]
    if codec is VideoCodec.hevc:
        args += ["-x265-params", "log-level=error"]
    args += ["-pix_fmt", (spec.pix_fmt or DEFAULT_PIX_FMT).value]
    if threads > 0:
        args += ["-threads:v", str(threads)]
    return args


def _hvc1_tag(plan: _OutputPlan, info: MediaInfo) -> list[str]:
    # Apple players only play HEVC in MP4/MOV when tagged hvc1 (ffmpeg's default is hev1).
    if plan.output.container not in FASTSTART or plan.video == "none":
        return []
    hevc = plan.output.video.codec is VideoCodec.hevc or (
        plan.video == "copy" and info.video is not None and info.video.codec == "hevc"
    )
    return ["-tag:v", "hvc1"] if hevc else []


def _audio_args(plan: _OutputPlan, info: MediaInfo) -> list[str]:
    args = ["-map", _map(plan.audio_label)]
    if plan.audio == "copy":
        return [*args, "-c:a", "copy"]
    spec = plan.output.audio
    codec = spec.codec
    assert codec is not None and codec not in (AudioCodec.copy, AudioCodec.none) and info.audio is not None
    _, channels = _audio_target(codec, plan.output, info.audio)
    kbps = spec.bitrate_kbps
    if kbps is None:
        # The default is per stereo pair, so surround sound is not starved.
        kbps = DEFAULT_AUDIO_KBPS[codec] * max(1, channels // 2)
    return [*args, "-c:a", CPU_ENCODERS[codec], "-b:a", f"{kbps}k"]


def build_transcode(
    spec: JobSpec,
    info: MediaInfo,
    caps: Capabilities,
    input_path: Path,
    output_paths: dict[str, Path],
    *,
    threads: int = 0,
) -> list[str]:
    """ffmpeg arguments (without the binary) writing every output of `spec` in one process."""
    plans: list[_OutputPlan] = []
    for index, output in enumerate(spec.outputs):
        name = output.name or f"output{index}"
        if name not in output_paths:
            raise ValueError(f"no output path given for output {name!r}")
        plan = _OutputPlan(index=index, output=output, path=output_paths[name], video="none", audio="none")
        _plan_video(plan, info, caps)
        _plan_audio(plan, info, caps)
        if plan.video == "none" and plan.audio == "none":
            raise _unsupported(
                f"output {name!r} would be empty: it has no video and the input has no audio stream"
            )
        plans.append(plan)

    video_encoders = [p for p in plans if p.video == "encode"]
    audio_encoders = [p for p in plans if p.audio == "encode"]
    graph = _branch_graph("v", VIDEO_SOURCE, video_encoders)
    graph += _branch_graph("a", AUDIO_SOURCE, audio_encoders)
    if graph:
        _require_filters(_graph_filters(graph), caps)

    args = list(GLOBAL_ARGS)
    if threads > 0:
        args += ["-threads", str(threads)]
    args += ["-i", str(input_path)]
    if graph:
        if threads > 0:
            args += ["-filter_complex_threads", str(threads)]
        args += ["-filter_complex", ";".join(graph)]
    for plan in plans:
        if plan.video != "none":
            args += _video_args(plan, threads)
            args += _hvc1_tag(plan, info)
        if plan.audio != "none":
            args += _audio_args(plan, info)
        args += ["-f", MUXERS[plan.output.container]]
        if plan.output.container in FASTSTART:
            args += ["-movflags", "+faststart"]
        args.append(str(plan.path))
    return args


def expected_duration(spec: JobSpec, info: MediaInfo) -> float | None:
    """Seconds of media the job will write (for progress percent), or None when unknown."""
    del spec  # every output spans the whole input until trimming exists in the spec
    if info.duration is not None and info.duration > 0:
        return info.duration
    if info.video is not None and info.video.frames and info.video.fps:
        return info.video.frames / info.video.fps
    return None
