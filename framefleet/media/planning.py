"""What every part of a job's one ffmpeg command shares: its inputs, the builder that gathers outputs
and their indexes (for loopback decoders), hardware routing, and the scored streams."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.operations import LoudnessSpec, ToneMapSpec
from framefleet.core.spec import AudioCodec, Fallback, JobSpec, PixFmt, QualitySpec, VideoCodec
from framefleet.media.capabilities import CPU_ENCODERS, Capabilities
from framefleet.media.encoders import (
    Family,
    HardwareSetup,
    VideoEncode,
    encoder_name,
    hw_refusal,
)
from framefleet.media.filters import (
    Assets,
    PreVideo,
    even,
    fit_audio,
    loudness_chain,
    pre_audio,
    pre_video,
    tonemap_chain,
    tonemapped_video,
)
from framefleet.media.metadata import STRIP_METADATA
from framefleet.media.probe import (
    AudioInfo,
    Hdr10,
    MediaInfo,
    VideoInfo,
)
from framefleet.media.quality import ScoreLogs, stream_metrics, vmaf_model_for
from framefleet.media.tracks import SoundSource, SoundSources

# Codecs that carry PQ or HLG pictures (at 10 bits).
HDR_CODECS = frozenset({VideoCodec.hevc, VideoCodec.av1, VideoCodec.vp9})

# The input streams every output draws from; `V` skips cover art, as probe() does.
VIDEO_SOURCE = "0:V:0"
AUDIO_SOURCE = "0:a:0"

GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", "-loglevel", "error")

# Pixel formats an encoder refuses although the spec allows them for its codec.
ENCODER_PIX_FMTS: dict[str, frozenset[PixFmt]] = {
    "libsvtav1": frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
}


def unsupported(message: str) -> JobFailure:
    """A JobFailure: this job cannot run as specified here."""
    return JobFailure(FailureClass.spec_unsupported, message)


@dataclass
class StreamScore:
    """One video stream scored in the encoding process."""

    name: str
    logs: ScoreLogs
    model: str
    fps: float
    width: int
    height: int
    bit_depth: int
    quality: QualitySpec  # the job's metrics less those this stream cannot be scored with
    skipped: dict[str, str]  # metric -> why it was not measured
    segment_seconds: float | None = None
    # Set for a scaled stream: it is upscaled to this size and scored against the unscaled source there
    # (scaling loss counts, as viewers see it); `native` then scores it at its own size as well.
    display: tuple[int, int] | None = None
    native: StreamScore | None = None

    @property
    def measured(self) -> bool:
        """True when any metric is left to measure (else the stream is not compared at all)."""
        return bool(self.quality.metrics)


@dataclass(frozen=True)
class LoudnessCheck:
    """One normalised sound stream and where its ebur128 readings are written."""

    name: str
    meter: Path
    spec: LoudnessSpec


class JobBuilder:
    """Accumulates one job's inputs, graph chains and outputs, keeping output indexes for -dec."""

    def __init__(
        self,
        spec: JobSpec,
        info: MediaInfo,
        caps: Capabilities,
        workdir: Path,
        threads: int,
        hardware: HardwareSetup | None,
        assets: Assets,
        score: bool,
        native_scores: bool = True,
    ) -> None:
        ops = spec.operations
        # Every input track (or mono pair) the job's sound is made from; the first is every output's default.
        self.sources = SoundSources(spec, info)
        primary = self.sources.primary
        info = replace(info, audio=primary.track if primary is not None else None)
        self.spec = spec
        self.info = info
        # The input audio stream (or joined pair) every sound output draws from by default.
        self.audio_source = primary.head()[1] if primary is not None else AUDIO_SOURCE
        self.caps = caps
        self.workdir = workdir
        self.threads = threads
        self.hardware = hardware
        self.assets = assets
        self.score = score and spec.quality is not None
        self.native_scores = native_scores  # a scaled stream's own-size score beside its display-size one
        self.outputs_args: list[list[str]] = []
        self.scores: list[StreamScore] = []
        self.refs: list[tuple[str, StreamScore, int, int]] = []  # (ref label, score, output index, stream)
        self.notes: dict[str, Any] = {}
        if unused := self.sources.unused():
            self.notes["unused_audio_tracks"] = unused
        ops = spec.operations
        self.strip_audio = ops is not None and ops.strip_audio
        self.pre: PreVideo | None = None
        self.video: VideoInfo | None = None
        # Tone mapping on each SDR branch (HDR source, SDR target) and the picture such a branch sees.
        self.branch_tonemap: list[str] = []
        self.sdr_video: VideoInfo | None = None
        if info.video is not None:
            self.pre = pre_video(ops, info.video, VIDEO_SOURCE, assets, input_index=1)
            self.video = video = self.pre.video
            self.notes.update(self.pre.notes)
            if video is not None and (tonemap := branch_tonemap(spec, video)) is not None:
                self.branch_tonemap = tonemap_chain(tonemap)
                self.sdr_video = tonemapped_video(video)
        self.audio: AudioInfo | None = None if self.strip_audio else info.audio
        self.audio_pre: list[str] = []
        if self.audio is not None:
            self.audio_pre, self.audio = pre_audio(ops, self.audio)
        self.loudness = ops.loudness if ops is not None and self.audio is not None else None
        # Encoded sound starts and ends with the picture (stream copies keep the input's packets).
        self.picture_length = video_length(spec, info) if self.video is not None else None
        self.loudness_checks: list[LoudnessCheck] = []
        self.gpu_frames = False

    def picture_for(self, codec: VideoCodec | None, pix: PixFmt | None) -> tuple[VideoInfo, list[str]]:
        """The picture an encoded branch of `codec`/`pix` starts from, and the filters that make it: an SDR
        target of an HDR source gets the tone-mapped picture, everything else the shared one as it is."""
        assert self.video is not None
        if self.sdr_video is not None and is_sdr(codec, pix):
            self.notes["tonemapped"] = True
            return self.sdr_video, list(self.branch_tonemap)
        return self.video, []

    def hdr10_for(self, codec: VideoCodec | None, video: VideoInfo) -> Hdr10 | None:
        """The HDR10 metadata an HEVC or AV1 stream of `video` states (x265 writes it as SEI, SVT-AV1 as
        metadata OBUs; MP4 adds mdcv/clli). VP9 has no place for it in its bitstream."""
        if codec in (VideoCodec.hevc, VideoCodec.av1) and video.hdr and video.bit_depth > 8:
            return video.hdr10
        return None

    def sound(self, source: SoundSource) -> AudioInfo:
        """The sound a source's branches start from: after the shared channel mix."""
        return pre_audio(self.spec.operations, source.track)[1]

    def sound_fit(self, sound: AudioInfo) -> list[str]:
        """The head of a sound branch: `sound` cut or padded to the picture's start and length (nothing
        without a picture)."""
        if self.info.video is None:
            return []
        start = clock_start(self.spec, self.info.video.start)
        return fit_audio(start, self.picture_length, clock_start(self.spec, sound.start), sound.sample_rate)

    def loudness_tail(self, name: str, source: SoundSource, channels: int, rate: int) -> list[str]:
        """Normalisation and metering at the end of the sound branch of `name` (nothing without loudness)."""
        if self.loudness is None:
            return []
        if self.assets.loudness is None:
            raise ValueError("loudness normalisation needs its measuring pass first")
        safe = name.replace("/", "__")
        meter = self.workdir / "loudness" / f"{safe}.r128.txt"
        chain = loudness_chain(self.loudness, self.assets.loudness, source.ordinal, channels, rate, meter)
        if chain:
            self.loudness_checks.append(LoudnessCheck(name, meter, self.loudness))
        return chain

    def family_for(self, enc: VideoEncode, what: str) -> Family:
        """The hardware family for one encoded stream, or the CPU when the spec's fallback allows it."""
        if self.hardware is None or self.hardware.family is Family.cpu:
            return Family.cpu
        family = self.hardware.family
        reason = hw_refusal(family, enc)
        if reason is None and encoder_name(family, enc.codec) not in self.caps.encoders:
            reason = f"this worker's ffmpeg has no {encoder_name(family, enc.codec)}"
        if reason is None:
            return family
        if self.spec.fallback is Fallback.cpu:
            self.notes.setdefault("cpu_fallback", []).append(f"{what}: {reason}")
            return Family.cpu
        raise unsupported(f"{what}: {reason} (set fallback: cpu to encode it on the CPU)")

    def check_encoder(self, name: str, what: str) -> None:
        """Refuse an encoder this ffmpeg lacks."""
        if name not in self.caps.encoders:
            raise unsupported(f"this worker's ffmpeg has no {name} encoder ({what})")

    def add_output(self, args: list[str], path: str) -> int:
        """Append one output (its options, then its path) and return its index for -dec.

        Every output is stripped of the input's metadata first; its own options may then add tags.
        """
        self.outputs_args.append([*STRIP_METADATA, *args, path])
        return len(self.outputs_args) - 1

    def score_stream(self, score: StreamScore, output: int, stream: int, ref: str) -> None:
        """Score stream `stream` of output `output` against the branch copy labelled `ref`."""
        if not score.measured:
            return  # every metric asked for is skipped at this size: no comparison to run
        self.refs.append((ref, score, output, stream))
        self.scores.append(score)


def is_sdr(codec: VideoCodec | None, pix: PixFmt | None) -> bool:
    """Whether an encoded stream cannot be HDR: only 10-bit HEVC, AV1 and VP9 carry PQ or HLG (copies keep
    the source as it is; pictures are always SDR)."""
    if codec in (None, VideoCodec.copy, VideoCodec.none):
        return False
    return codec not in HDR_CODECS or pix is not PixFmt.yuv420p10le


def sdr_targets(spec: JobSpec) -> list[str]:
    """Where the spec sends pictures that cannot be HDR: 8-bit or H.264 outputs and rungs, and pictures."""
    where = [f"outputs.{i}" for i, o in enumerate(spec.outputs) if is_sdr(o.video.codec, o.video.pix_fmt)]
    for g, group in enumerate(spec.groups):
        where += [
            f"groups.{g}.ladder.{r}"
            for r, rung in enumerate(group.ladder)
            if is_sdr(rung.codec, rung.pix_fmt)
        ]
    if spec.thumbnails or spec.sprites or spec.poster is not None:
        where.append("thumbnails")
    return where


def branch_tonemap(spec: JobSpec, video: VideoInfo) -> ToneMapSpec | None:
    """The tone mapping each SDR branch of an HDR picture gets (None: none needed, or `when: always`
    already tone-mapped the shared picture).

    Without an `operations.tonemap` section the default (hable) applies; `when: never` refuses the job
    rather than writing HDR tags on SDR pictures. HDR targets (10-bit HEVC, AV1, VP9) stay HDR.
    """
    if not video.hdr:
        return None
    targets = sdr_targets(spec)
    if not targets:
        return None
    ops = spec.operations
    tonemap = (ops.tonemap if ops is not None else None) or ToneMapSpec()
    if tonemap.when == "never":
        raise JobFailure(
            FailureClass.spec_unsupported,
            f"the source is HDR ({video.color_transfer}) and {targets[0]} is an SDR target (8-bit, H.264 or "
            "a picture), but operations.tonemap.when is never: make it 10-bit HEVC, AV1 or VP9, or allow "
            "tone mapping",
        )
    return tonemap


def check_cpu_encoder(codec: VideoCodec | AudioCodec, caps: Capabilities) -> str:
    """The CPU encoder for `codec`; refused when this ffmpeg lacks it."""
    encoder = CPU_ENCODERS[codec]
    if encoder not in caps.encoders:
        raise unsupported(f"this worker's ffmpeg has no {encoder} encoder for {codec.value}")
    return encoder


def require_filters(names: set[str], caps: Capabilities) -> None:
    """Refuse a graph using filters this ffmpeg lacks."""
    missing = sorted(names - caps.filters)
    if missing:
        raise unsupported(f"this worker's ffmpeg lacks the filter(s) {', '.join(missing)}")


def map_label(label: str) -> str:
    """A -map argument: input streams as they are, graph labels in brackets."""
    return label if label.startswith("0:") else f"[{label}]"


# Filters that only resize or retag a picture: a branch made of these (after any fps change) shows the
# same scene as the source, so it can be upscaled back and compared with it pixel for pixel.
RESIZING = ("scale=", "setsar=", "setparams=")


def clock_start(spec: JobSpec, start: float) -> float:
    """When a stream starting `start` s into the file starts on the encode's clock: the trim's start is cut
    off the front (ffmpeg's input seek counts from it)."""
    trim = spec.operations.trim if spec.operations is not None else None
    return max(0.0, start - (trim.start if trim is not None else 0.0))


def video_length(spec: JobSpec, info: MediaInfo) -> float | None:
    """Seconds of picture the job writes: the video stream's own length after the trim."""
    if info.video is None or info.video.duration is None:
        return None
    length = info.video.duration
    trim = spec.operations.trim if spec.operations is not None else None
    if trim is not None:
        length = max(0.0, length - trim.start)
        if trim.length is not None:
            length = min(length, trim.length)
    return length


def display_size(b: JobBuilder, filters: list[str], width: int, height: int) -> tuple[int, int] | None:
    """The size a width x height stream is scored at, or None to score it at its own size.

    That is the spec's display size, else the source's square-pixel size after operations. Branches that
    pad or crop (fit pad/fill) frame another scene than the source and keep their own-size score.
    """
    quality, video = b.spec.quality, b.video
    assert quality is not None and video is not None
    if quality.display is not None:
        size = (quality.display.width, quality.display.height)
    else:
        size = (even(video.display_width * video.sample_aspect_ratio), even(video.display_height))
    if size == (width, height):
        return None
    if not all(f.startswith(RESIZING) for f in filters if not f.startswith("fps=")):
        return None
    return size


def score_for(
    b: JobBuilder,
    name: str,
    width: int,
    height: int,
    fps: float | None,
    pix: PixFmt | None,
    display: tuple[int, int] | None = None,
) -> StreamScore:
    """Where and how one encoded stream of `name` is scored: at `display` size when given (with its
    own-size score as `native` unless the builder leaves those out), else at its own size."""
    quality = b.spec.quality
    assert quality is not None and b.video is not None
    safe = name.replace("/", "__")
    rate = fps or b.video.fps or 25.0

    def at(w: int, h: int, suffix: str) -> StreamScore:
        metrics, skipped = stream_metrics(quality, w, h)
        return StreamScore(
            name=name,
            logs=ScoreLogs(b.workdir / "quality" / f"{safe}{suffix}.quality.json"),
            model=vmaf_model_for(quality, w, h),
            fps=rate,
            width=w,
            height=h,
            bit_depth=10 if pix is PixFmt.yuv420p10le else 8,
            quality=metrics,
            skipped=skipped,
        )

    if display is None:
        return at(width, height, "")
    score = at(*display, "")
    score.display = display
    if b.native_scores:
        native = at(width, height, ".native")
        score.native = native if native.measured else None
    return score


def scoreable(codec: VideoCodec | None) -> bool:
    """True for the video codecs quality is measured on (not copies, pictures or GIFs)."""
    return codec in (VideoCodec.h264, VideoCodec.hevc, VideoCodec.av1, VideoCodec.vp9)
