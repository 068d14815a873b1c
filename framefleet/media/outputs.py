"""Plain file outputs: picture size, sound format, copy rules, muxers and each output's arguments.

Missing input audio is not an error: an output that asks for audio from a silent input is written without
an audio track, because an audio-less file is more useful than a failed job. Missing input video is an
error unless the output's video codec is `none`, since the whole point of such an output is its picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framefleet.core.encoding import AUDIO_ONLY_CONTAINERS, IMAGE_CODECS
from framefleet.core.spec import AudioCodec, Container, OutputSpec, PixFmt, VideoCodec
from framefleet.media.capabilities import CPU_ENCODERS
from framefleet.media.colour import copy_tag_args, encode_filters
from framefleet.media.encoders import (
    DEFAULT_PIX_FMT,
    Family,
    VideoEncode,
    encoder_name,
    video_encoder_args,
)
from framefleet.media.filters import (
    fit_picture,
    fps_value,
    remix,
)
from framefleet.media.ladder import constant_rate
from framefleet.media.metadata import tag_args
from framefleet.media.planning import (
    AUDIO_SOURCE,
    ENCODER_PIX_FMTS,
    VIDEO_SOURCE,
    JobBuilder,
    StreamScore,
    check_cpu_encoder,
    map_label,
    unsupported,
)
from framefleet.media.probe import AudioInfo, Hdr10, MediaInfo, SubtitleInfo, VideoInfo
from framefleet.media.tracks import SoundSource

# Outputs are written to temporary names, so the muxer is always named rather than guessed from a suffix.
MUXERS: dict[Container, str] = {
    Container.mp4: "mp4",
    Container.mkv: "matroska",
    Container.mov: "mov",
    Container.webm: "webm",
    Container.ts: "mpegts",
    Container.m4a: "ipod",
    Container.mp3: "mp3",
    Container.opus: "ogg",
    Container.flac: "flac",
    Container.gif: "gif",
    Container.webp: "webp",
    Container.images: "image2",
}

FASTSTART = frozenset({Container.mp4, Container.mov, Container.m4a})

DEFAULT_AUDIO_KBPS: dict[AudioCodec, int] = {AudioCodec.aac: 128, AudioCodec.opus: 96, AudioCodec.mp3: 128}

SUBSAMPLED = frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le, PixFmt.yuv422p})

IMAGE_EXTENSION: dict[VideoCodec, str] = {
    VideoCodec.jpeg: "jpg",
    VideoCodec.png: "png",
    VideoCodec.webp: "webp",
}

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
    Container.m4a: frozenset({"aac", "alac"}),
    Container.mp3: frozenset({"mp3"}),
    Container.opus: frozenset({"opus"}),
    Container.flac: frozenset({"flac"}),
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


# Subtitle codec each container is given a text track in (mov_text in MP4/MOV, WebVTT in WebM); Matroska
# keeps WebVTT and ASS as they are and takes the other text formats as SubRip. Other containers hold none.
TEXT_SUBTITLES = frozenset({"mov_text", "subrip", "webvtt", "ass", "ssa", "text"})
SUBTITLE_CODEC: dict[Container, str] = {
    Container.mp4: "mov_text",
    Container.mov: "mov_text",
    Container.webm: "webvtt",
    Container.mkv: "subrip",
}
MKV_KEEPS = frozenset({"webvtt", "ass", "subrip"})


def subtitle_codec(container: Container, track: SubtitleInfo) -> str | None:
    """The codec a subtitle track is written in, or None when the container cannot hold it."""
    if track.codec not in TEXT_SUBTITLES:
        # Picture subtitles (PGS, DVD) cannot become text; only Matroska holds them, by copy.
        return "copy" if container is Container.mkv else None
    if container is Container.mkv and track.codec in MKV_KEEPS:
        return "copy"
    return SUBTITLE_CODEC.get(container)


@dataclass
class SoundBranch:
    """One more sound track of an output: its input track, its branch and the label it maps."""

    key: str
    source: SoundSource
    filters: list[str]
    label: str = ""


@dataclass
class OutputPlan:
    """What one plain output does with each kind of stream; filters are empty when no branch is needed."""

    index: int
    output: OutputSpec
    path: Path
    video: str  # "encode" | "copy" | "none"
    audio: str
    video_filters: list[str] = field(default_factory=list)
    audio_filters: list[str] = field(default_factory=list)
    video_label: str = VIDEO_SOURCE
    audio_label: str = AUDIO_SOURCE
    family: Family = Family.cpu
    width: int = 0
    height: int = 0
    fps: float | None = None
    score: StreamScore | None = None
    head: list[str] = field(default_factory=list)  # before the branch and its reference: tone mapping
    hdr10: Hdr10 | None = None  # HDR10 metadata the encoder states (an HEVC or AV1 picture that stays HDR)
    subtitles: list[tuple[SubtitleInfo, str]] = field(default_factory=list)  # carried tracks, their codec
    audio_source: SoundSource | None = None  # the first sound track's input track (or pair)
    more_audio: list[SoundBranch] = field(default_factory=list)  # audio_tracks after the first

    @property
    def key(self) -> str:
        """Label suffix of this output's graph branches."""
        return str(self.index)


def round_dim(value: float, even: bool) -> int:
    """Nearest size, even when the pixel format needs it, halves rounding up."""
    # Half rounds up (not to even, as round() would) so equal inputs always give the same size.
    if even:
        return max(2, math.floor(value / 2 + 0.5) * 2)
    return max(1, math.floor(value + 0.5))


def target_size(output: OutputSpec, video: VideoInfo) -> tuple[int, int] | None:
    """The output picture size, or None to keep the input's; a missing side keeps the display aspect."""
    spec = output.video
    pix = spec.pix_fmt or DEFAULT_PIX_FMT
    even = pix in SUBSAMPLED and spec.codec not in IMAGE_CODECS
    if spec.codec in (VideoCodec.gif, VideoCodec.webp, VideoCodec.jpeg):
        even = False
    src_w, src_h = video.display_width, video.display_height
    aspect = src_w * video.sample_aspect_ratio / src_h
    if spec.width is not None and spec.height is not None:
        size = (spec.width, spec.height)
    elif spec.width is not None:
        size = (spec.width, round_dim(spec.width / aspect, even))
    elif spec.height is not None:
        size = (round_dim(spec.height * aspect, even), spec.height)
    elif abs(video.sample_aspect_ratio - 1.0) > 1e-6:
        # Non-square pixels: keep the height, make pixels square so every player shows the same shape.
        size = (round_dim(src_h * aspect, even), round_dim(src_h, even))
    elif even and (src_w % 2 or src_h % 2):
        # 4:2:0 and 4:2:2 encoders refuse odd sizes; drop the odd line rather than fail.
        size = (max(2, src_w - src_w % 2), max(2, src_h - src_h % 2))
    else:
        return None
    if size == (src_w, src_h) and abs(video.sample_aspect_ratio - 1.0) <= 1e-6:
        return None
    return size


def video_filters(output: OutputSpec, video: VideoInfo) -> tuple[list[str], int, int]:
    """Filters for an output's picture and the size they give."""
    filters: list[str] = []
    fps = output_fps(output, video)
    if fps is not None and (video.vfr or video.fps is None or abs(video.fps - fps) > 1e-3):
        filters.append(f"fps={fps_value(fps)}")
    spec = output.video
    if spec.fit is not None and spec.width is not None and spec.height is not None:
        src_w = round_dim(video.display_width * video.sample_aspect_ratio, False)
        even = (spec.pix_fmt or DEFAULT_PIX_FMT) in SUBSAMPLED
        fitted = fit_picture(src_w, video.display_height, spec.width, spec.height, spec.fit, even_sizes=even)
        return filters + fitted.filters, fitted.width, fitted.height
    size = target_size(output, video)
    if size is not None:
        filters.append(f"scale={size[0]}:{size[1]}:flags=bicubic")
        filters.append("setsar=1")
        return filters, size[0], size[1]
    return filters, video.display_width, video.display_height


def output_fps(output: OutputSpec, video: VideoInfo) -> float | None:
    """The output's constant frame rate, or None to keep the source's timing (variable if it varies)."""
    if output.video.fps is not None:
        return output.video.fps
    if output.video.constant_rate and video.vfr:
        return constant_rate(video)
    return None


def audio_target(
    codec: AudioCodec, rate: int | None, channels: int | None, audio: AudioInfo
) -> tuple[int, int]:
    """(sample rate, channels) the encoder will get."""
    rate = rate or audio.sample_rate
    if codec is AudioCodec.opus and rate not in OPUS_RATES:
        rate = 48000
    if codec is AudioCodec.mp3 and rate > MP3_MAX_RATE:
        rate = MP3_MAX_RATE
    channels = channels or audio.channels
    channels = min(channels, 2 if codec is AudioCodec.mp3 else max(LAYOUTS))
    return rate, channels


def audio_filters(codec: AudioCodec, rate: int, channels: int, audio: AudioInfo) -> list[str]:
    """Resampling and channel layout the encoder needs, nothing when it takes the sound as it is."""
    filters: list[str] = []
    if rate != audio.sample_rate:
        filters.append(f"aresample={rate}")
    layout = LAYOUTS[channels]
    # libopus refuses layouts such as 5.1(side) or 2.1 even at a supported channel count.
    if channels != audio.channels:
        filters.append(remix(audio, channels))
    elif codec is AudioCodec.opus and audio.layout != layout:
        filters.append(f"aformat=channel_layouts={layout}")
    return filters


def audio_kbps(codec: AudioCodec, kbps: int | None, channels: int) -> int:
    """The asked bitrate, or the codec's default per stereo pair."""
    # The default is per stereo pair, so surround sound is not starved.
    return kbps if kbps is not None else DEFAULT_AUDIO_KBPS[codec] * max(1, channels // 2)


def plan_video(plan: OutputPlan, b: JobBuilder) -> None:
    """Decide what an output does with the picture: encode (on which hardware), copy, or none."""
    output = plan.output
    codec = output.video.codec
    if codec is None or codec is VideoCodec.none:
        plan.video = "none"
        return
    video = b.info.video
    if video is None or b.video is None:
        raise unsupported(
            f"output {output.name!r} asks for {codec.value} video but the input has no video stream "
            "(set video.codec to none for an audio-only output)"
        )
    if codec is VideoCodec.copy:
        allowed = COPY_VIDEO.get(output.container)
        if allowed is not None and video.codec not in allowed:
            raise unsupported(
                f"output {output.name!r}: {output.container.value} cannot hold the input's "
                f"{video.codec} video by copy; choose a video codec to re-encode"
            )
        if b.pre is not None and b.pre.edited:
            raise unsupported(
                f"output {output.name!r} copies the video, but the job's operations change the picture; "
                "choose a video codec to re-encode"
            )
        plan.video = "copy"
        return
    enc = encode_of(output, 0, 0)
    pix = enc.pix_fmt or DEFAULT_PIX_FMT
    picture, plan.head = b.picture_for(codec, output.video.pix_fmt)
    plan.video_filters, plan.width, plan.height = video_filters(output, picture)
    plan.fps = output_fps(output, picture) or picture.fps
    if codec not in IMAGE_CODECS:
        plan.video_filters = encode_filters(picture, plan.video_filters, plan.width, plan.height)
    plan.hdr10 = b.hdr10_for(codec, picture)
    enc = encode_of(output, plan.width, plan.height, plan.fps, plan.hdr10)
    if codec in IMAGE_CODECS:
        check_cpu_encoder(codec, b.caps) if codec in CPU_ENCODERS else b.check_encoder(
            encoder_name(Family.cpu, codec), f"output {output.name}"
        )
        plan.family = Family.cpu
    else:
        plan.family = b.family_for(enc, f"output {output.name!r}")
        if plan.family is Family.cpu:
            encoder = check_cpu_encoder(codec, b.caps)
            if encoder in ENCODER_PIX_FMTS and pix not in ENCODER_PIX_FMTS[encoder]:
                raise unsupported(
                    f"output {output.name!r}: {codec.value} ({encoder}) cannot encode {pix.value}"
                )
    plan.video = "encode"


def encode_of(
    output: OutputSpec, width: int, height: int, fps: float | None = None, hdr10: Hdr10 | None = None
) -> VideoEncode:
    """The encoder settings an output asks for, at its final size."""
    v = output.video
    assert v.codec is not None
    return VideoEncode(
        codec=v.codec,
        crf=v.crf,
        bitrate_kbps=v.bitrate_kbps,
        maxrate_kbps=v.maxrate_kbps,
        bufsize_kbps=v.bufsize_kbps,
        preset=v.preset,
        profile=v.profile,
        level=v.level,
        pix_fmt=v.pix_fmt,
        image_quality=v.image_quality,
        width=width,
        height=height,
        fps=fps,
        hdr10=hdr10,
    )


def plan_audio(plan: OutputPlan, b: JobBuilder) -> None:
    """Decide what an output does with the sound: encode, copy, or none."""
    output = plan.output
    codec = output.audio.codec
    if codec is None or codec is AudioCodec.none or b.audio is None:
        plan.audio = "none"
        return
    sources = b.sources.for_output(output, plan.index)
    plan.audio_source = sources[0]
    plan.audio_label = sources[0].head()[1]
    if codec is AudioCodec.copy:
        allowed = COPY_AUDIO.get(output.container)
        if allowed is not None and b.audio.codec not in allowed:
            raise unsupported(
                f"output {output.name!r}: {output.container.value} cannot hold the input's "
                f"{b.audio.codec} audio by copy; choose an audio codec to re-encode"
            )
        if b.audio_pre or b.loudness is not None or b.audio.paired is not None:
            raise unsupported(
                f"output {output.name!r} copies the audio, but the job's operations change the sound; "
                "choose an audio codec to re-encode"
            )
        plan.audio = "copy"
        return
    if codec is AudioCodec.flac:
        b.check_encoder("flac", f"output {output.name}")
    else:
        check_cpu_encoder(codec, b.caps)
    plan.audio = "encode"
    name = output.name or f"output{plan.index}"
    for k, source in enumerate(sources):
        sound = b.sound(source)
        rate, channels = audio_target(codec, output.audio.sample_rate, output.audio.channels, sound)
        filters = b.sound_fit(sound) + audio_filters(codec, rate, channels, sound)
        # The first track's loudness reading is the output's; the others' are named after their place.
        filters += b.loudness_tail(name if k == 0 else f"{name}#{k}", source, channels, rate)
        if k == 0:
            plan.audio_filters = filters
        else:
            plan.more_audio.append(SoundBranch(f"{plan.key}t{k}", source, filters))


def plan_subtitles(plan: OutputPlan, b: JobBuilder) -> list[dict[str, Any]]:
    """Carry the input's subtitle tracks the output's container can hold (unless it says drop); returns
    the tracks left out because it cannot, so the job's result names them."""
    tracks = b.info.subtitle_tracks
    if plan.output.subtitles == "drop" or not tracks:
        return []
    left: list[dict[str, Any]] = []
    for track in tracks:
        codec = subtitle_codec(plan.output.container, track) if plan.video != "none" else None
        if codec is not None and codec != "copy" and codec not in b.caps.encoders:
            codec = None
        if codec is None:
            left.append({"index": track.index, "language": track.language, "codec": track.codec})
        else:
            plan.subtitles.append((track, codec))
    return left


def subtitle_args(plan: OutputPlan) -> list[str]:
    """Map, codec and language of each carried subtitle track (the input's tags are stripped)."""
    args: list[str] = []
    for k, (track, codec) in enumerate(plan.subtitles):
        args += ["-map", f"0:s:{track.index}", f"-c:s:{k}", codec]
        if track.language:
            args += [f"-metadata:s:s:{k}", f"language={track.language}"]
    return args


def hvc1_tag(plan: OutputPlan, info: MediaInfo) -> list[str]:
    """`-tag:v hvc1` for HEVC in MP4/MOV."""
    # Apple players only play HEVC in MP4/MOV when tagged hvc1 (ffmpeg's default is hev1).
    if plan.output.container not in FASTSTART or plan.video == "none":
        return []
    hevc = plan.output.video.codec is VideoCodec.hevc or (
        plan.video == "copy" and info.video is not None and info.video.codec == "hevc"
    )
    return ["-tag:v", "hvc1"] if hevc else []


def audio_args(b: JobBuilder, plan: OutputPlan) -> list[str]:
    """Map and encoder options for an output's sound tracks (with `audio_tracks`, each is tagged with its
    input track's language)."""
    args: list[str] = []
    for label in [plan.audio_label, *(m.label for m in plan.more_audio)]:
        args += ["-map", map_label(label)]
    if plan.audio == "copy":
        return [*args, "-c:a", "copy"]
    spec = plan.output.audio
    codec = spec.codec
    assert codec is not None and codec not in (AudioCodec.copy, AudioCodec.none)
    assert plan.audio_source is not None
    sources = [plan.audio_source, *(m.source for m in plan.more_audio)]
    if codec is AudioCodec.flac:
        args += ["-c:a", "flac"]
    else:
        args += ["-c:a", CPU_ENCODERS[codec]]
        for k, source in enumerate(sources):
            _, channels = audio_target(codec, spec.sample_rate, spec.channels, b.sound(source))
            which = f"-b:a:{k}" if len(sources) > 1 else "-b:a"
            args += [which, f"{audio_kbps(codec, spec.bitrate_kbps, channels)}k"]
    if plan.output.audio_tracks is not None:
        for k, source in enumerate(sources):
            if source.track.language:
                args += [f"-metadata:s:a:{k}", f"language={source.track.language}"]
    return args


def video_args(b: JobBuilder, plan: OutputPlan) -> list[str]:
    """Map and encoder options for an output's picture."""
    args = ["-map", map_label(plan.video_label)]
    if plan.video == "copy":
        assert b.video is not None
        return [*args, "-c:v", "copy", *copy_tag_args(b.video)]
    enc = encode_of(plan.output, plan.width, plan.height, plan.fps, plan.hdr10)
    threads = b.threads if plan.family is Family.cpu else 0
    hw_frames = b.gpu_frames and plan.family is Family.nvenc
    return args + video_encoder_args(enc, plan.family, threads=threads, hw_frames=hw_frames)


def output_path(output: OutputSpec, path: Path) -> Path:
    """Image sequences write numbered files inside the output's folder."""
    if output.container is Container.images:
        codec = output.video.codec or VideoCodec.jpeg
        return path / f"{output.name}_%05d.{IMAGE_EXTENSION[codec]}"
    return path


def plain_output_args(b: JobBuilder, plan: OutputPlan) -> list[str]:
    """Every option of one plain output, before its path."""
    args: list[str] = []
    if plan.video != "none":
        args += video_args(b, plan)
        args += hvc1_tag(plan, b.info)
    if plan.audio != "none":
        args += audio_args(b, plan)
    args += subtitle_args(plan)
    args += tag_args(plan.output.metadata, audio=plan.audio != "none")
    container = plan.output.container
    if container in AUDIO_ONLY_CONTAINERS:
        args.append("-vn")  # cover art would otherwise be carried into m4a/mp3/flac
    args += ["-f", MUXERS[container]]
    if container in (Container.webm, Container.mkv):
        # The seek index before the clusters, as faststart does for MP4: a browser seeks without first
        # fetching the end of the file.
        args += ["-cues_to_front", "1"]
    if container in FASTSTART:
        flags = "+faststart"
        if plan.video != "none":
            # B-frames then start at composition offset zero instead of behind an edit list, so a player
            # that ignores edit lists shows the first picture at 0 rather than one B-frame delay late.
            flags += "+negative_cts_offsets"
        args += ["-movflags", flags]
    return args
