"""Job spec v1: what a client may ask for, validated strictly (unknown fields are refused).

Every check raises with the name of the field at fault, so the API can answer 422 pointing at it.
After validation the spec is *normalised*: defaults chosen from the container are written in, so the
stored spec says exactly what will run.

A job delivers any mix of plain file `outputs`, adaptive-streaming `groups` (HLS, DASH, CMAF ladders),
`thumbnails`, `sprites` and a `poster`, all cut from one decode of the input after the job's `operations`.
Fields added after the first release are optional and leave a first-release spec's dump unchanged (see
core/specbase.py), so existing specs keep validating with the same meaning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from framefleet.core.artifacts import PosterSpec, SpriteSpec, ThumbnailSpec
from framefleet.core.encoding import (
    AUDIO_ONLY_CONTAINERS,
    CONTAINER_AUDIO,
    CONTAINER_VIDEO,
    DEFAULT_AUDIO,
    DEFAULT_VIDEO,
    IMAGE_CODECS,
    MAX_CRF,
    OPUS_SAMPLE_RATES,
    PICTURE_CONTAINERS,
    SAMPLE_RATES,
    Crf,
    check_crf,
    check_profile_level,
    check_rate_control,
)
from framefleet.core.ladders import GroupSpec
from framefleet.core.operations import AudioTrackSpec, OperationsSpec
from framefleet.core.specbase import (
    AudioCodec,
    Container,
    Destination,
    Fallback,
    Fit,
    Hardware,
    Name,
    PixFmt,
    Preset,
    Priority,
    Profile,
    Strict,
    VideoCodec,
    check_overwrite,
    check_uri,
    spec_error,
)

__all__ = [
    "CONTAINER_AUDIO",
    "CONTAINER_VIDEO",
    "DEFAULT_AUDIO",
    "DEFAULT_VIDEO",
    "MAX_CRF",
    "OPUS_SAMPLE_RATES",
    "PRIORITY_ORDER",
    "SAMPLE_RATES",
    "SPEC_VERSION",
    "AudioCodec",
    "AudioSpec",
    "Container",
    "DisplaySize",
    "Fallback",
    "Fit",
    "GroupSpec",
    "Hardware",
    "JobSpec",
    "Metric",
    "OperationsSpec",
    "OutputSpec",
    "OutputTag",
    "ParallelSpec",
    "PixFmt",
    "PosterSpec",
    "Preset",
    "Priority",
    "Profile",
    "QualitySpec",
    "QualityTargetSpec",
    "SpriteSpec",
    "ThumbnailSpec",
    "VideoCodec",
    "VideoSpec",
    "VmafModel",
    "check_uri",
    "output_extension",
    "spec_error",
]

SPEC_VERSION: Literal[1] = 1
PRIORITY_ORDER: tuple[Priority, ...] = tuple(Priority)


class Metric(StrEnum):
    vmaf = "vmaf"
    psnr = "psnr"
    ssim = "ssim"


class VmafModel(StrEnum):
    auto = "auto"  # by the scored picture's size: the 4K model from 2160 lines (or 3840 columns) up
    default = "vmaf_v0.6.1"
    uhd = "vmaf_4k_v0.6.1"
    neg = "vmaf_v0.6.1neg"


class VideoSpec(Strict):
    _added: ClassVar[frozenset[str]] = frozenset(
        {"profile", "level", "maxrate_kbps", "bufsize_kbps", "fit", "image_quality", "constant_rate"}
    )

    codec: VideoCodec | None = None
    width: Annotated[int, Field(ge=16, le=8192)] | None = None
    height: Annotated[int, Field(ge=16, le=8192)] | None = None
    fps: Annotated[float, Field(gt=0, le=240)] | None = None
    crf: Crf | None = None
    bitrate_kbps: Annotated[int, Field(ge=50, le=500_000)] | None = None
    preset: Preset | None = None
    pix_fmt: PixFmt | None = None
    profile: Profile | None = None
    level: str | None = None
    maxrate_kbps: Annotated[int, Field(ge=50, le=500_000)] | None = None
    bufsize_kbps: Annotated[int, Field(ge=50, le=1_000_000)] | None = None
    fit: Fit | None = None
    image_quality: Annotated[int, Field(ge=1, le=100)] | None = None
    # A variable-frame-rate source made constant (at its standard rate) even without an `fps`.
    constant_rate: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        codec = self.codec
        tuning: tuple[str, ...] = ("width", "height", "fps", "crf", "bitrate_kbps", "preset", "pix_fmt")
        tuning += (
            "profile",
            "level",
            "maxrate_kbps",
            "bufsize_kbps",
            "fit",
            "image_quality",
            "constant_rate",
        )
        if codec in (VideoCodec.copy, VideoCodec.none):
            for name in tuning:
                if getattr(self, name) is not None:
                    raise spec_error("video_codec", f"{name} cannot be set when codec is {codec.value}", name)
            return self
        if codec is not None:
            self.check_pictures(codec)
        check_rate_control(self.crf, self.bitrate_kbps, self.maxrate_kbps, self.bufsize_kbps)
        if codec is not None:
            self.level = check_profile_level(codec, self.profile, self.level, self.pix_fmt)
        if self.fit is not None and (self.width is None or self.height is None):
            raise spec_error("fit", f"fit {self.fit.value} needs both width and height", "fit")
        return self

    def check_pictures(self, codec: VideoCodec, prefix: str = "") -> None:
        """Picture codecs take no rate control; only jpeg and webp take an image_quality."""
        if codec in IMAGE_CODECS:
            for name in ("crf", "bitrate_kbps", "preset", "profile", "level", "maxrate_kbps", "bufsize_kbps"):
                if getattr(self, name) is not None:
                    raise spec_error(
                        "video_codec", f"{name} does not apply to {codec.value} pictures", f"{prefix}{name}"
                    )
            if self.image_quality is not None and codec in (VideoCodec.png, VideoCodec.gif):
                raise spec_error(
                    "image_quality",
                    f"{codec.value} is lossless: image_quality does not apply",
                    f"{prefix}image_quality",
                )
        elif self.image_quality is not None:
            raise spec_error(
                "image_quality", "image_quality is for jpeg and webp pictures", f"{prefix}image_quality"
            )


class AudioSpec(Strict):
    codec: AudioCodec | None = None
    bitrate_kbps: Annotated[int, Field(ge=8, le=1024)] | None = None
    channels: Annotated[int, Field(ge=1, le=8)] | None = None
    sample_rate: int | None = None

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: int | None) -> int | None:
        if value is not None and value not in SAMPLE_RATES:
            raise spec_error("sample_rate", f"must be one of {sorted(SAMPLE_RATES)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.codec in (AudioCodec.copy, AudioCodec.none):
            for name in ("bitrate_kbps", "channels", "sample_rate"):
                if getattr(self, name) is not None:
                    raise spec_error(
                        "audio_codec", f"{name} cannot be set when codec is {self.codec.value}", name
                    )
        if self.codec is AudioCodec.opus and self.sample_rate and self.sample_rate not in OPUS_SAMPLE_RATES:
            raise spec_error("sample_rate", f"opus needs one of {sorted(OPUS_SAMPLE_RATES)}", "sample_rate")
        if self.codec is AudioCodec.mp3 and self.channels is not None and self.channels > 2:
            raise spec_error("channels", "mp3 carries at most 2 channels", "channels")
        if self.codec is AudioCodec.flac and self.bitrate_kbps is not None:
            raise spec_error("bitrate_kbps", "flac is lossless: bitrate_kbps does not apply", "bitrate_kbps")
        return self


ISO639_2 = re.compile(r"^[a-z]{3}$")


# The tags an output may carry: nothing else from the input or the encoders reaches a file. `language` is
# the output's sound's; the others are the file's.
OutputTag = Literal[
    "title", "comment", "description", "copyright", "artist", "album", "date", "genre", "language"
]


class QualityTargetSpec(Strict):
    """Encode at the constant-quality setting that reaches `value` with the smallest size (docs/job-spec.md).

    The worker searches the encoder's quality knob (CRF; NVENC's CQ, Quick Sync's global_quality) between
    `min_crf` and `max_crf` with short sample encodes scored against their source, then encodes with it.
    """

    metric: Literal["vmaf"] = "vmaf"
    value: Annotated[float, Field(ge=1, le=100)]
    min_crf: Annotated[int, Field(ge=0, le=63)] | None = None
    max_crf: Annotated[int, Field(ge=0, le=63)] | None = None
    # A VBV cap on the search's samples and the final encode (capped constant quality).
    max_bitrate_kbps: Annotated[int, Field(ge=50, le=500_000)] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_crf is not None and self.max_crf is not None and self.min_crf > self.max_crf:
            raise spec_error("quality_target", "min_crf must be at most max_crf", "min_crf")
        return self


# Video settings that fix the rate or the quality themselves, which a quality target chooses instead.
_TARGET_EXCLUDES = {
    "crf": "the quality target chooses the crf",
    "bitrate_kbps": "a quality target is constant quality, not a target bitrate",
    "maxrate_kbps": "cap a quality target with quality_target.max_bitrate_kbps",
    "bufsize_kbps": "a quality target's cap is quality_target.max_bitrate_kbps",
}


class OutputSpec(Strict):
    _added: ClassVar[frozenset[str]] = frozenset(
        {"overwrite", "metadata", "subtitles", "audio_tracks", "quality_target"}
    )

    name: Name | None = None
    container: Container
    video: VideoSpec = Field(default_factory=VideoSpec)
    audio: AudioSpec = Field(default_factory=AudioSpec)
    destination: Destination | None = None
    # Whether this output may replace a file already at its destination (one this job did not write).
    overwrite: bool = False
    # Tags written into the file; every tag of the input (location, device, comments...) is stripped.
    metadata: Annotated[dict[OutputTag, Annotated[str, Field(max_length=512)]], Field(max_length=16)] = Field(
        default_factory=dict
    )
    # The input's text subtitle tracks: carried where the container can hold them (keep), or left out.
    subtitles: Literal["keep", "drop"] = "keep"
    # Several sound tracks, one per input track (or mono pair) listed, in order, each tagged with its
    # input track's language; default one track, operations.audio_track's.
    audio_tracks: Annotated[list[AudioTrackSpec], Field(min_length=1, max_length=8)] | None = None
    # Search the constant-quality setting meeting a VMAF target instead of a fixed crf (docs/job-spec.md).
    quality_target: QualityTargetSpec | None = None

    @model_validator(mode="after")
    def _normalise(self) -> Self:
        check_overwrite(self.destination, self.overwrite)
        language = self.metadata.get("language")
        # MP4, MOV, MKV and TS carry ISO 639-2 codes; ffmpeg silently drops anything else.
        if language is not None and not ISO639_2.match(language):
            raise spec_error(
                "language", "must be an ISO 639-2 code such as eng, fre or deu", "metadata.language"
            )
        container = self.container
        if self.video.codec is None:
            self.video.codec = DEFAULT_VIDEO[container]
            self._check_defaulted_video()
        if self.audio.codec is None:
            self.audio.codec = DEFAULT_AUDIO[container]
            self._check_defaulted_audio()
        vcodec, acodec = self.video.codec, self.audio.codec
        if container in AUDIO_ONLY_CONTAINERS and vcodec is not VideoCodec.none:
            raise spec_error(
                "container_codec", f"{container.value} is audio only: video.codec must be none", "video.codec"
            )
        if container in PICTURE_CONTAINERS and acodec is not AudioCodec.none:
            raise spec_error(
                "container_codec",
                f"{container.value} holds no sound: audio.codec must be none",
                "audio.codec",
            )
        if container in PICTURE_CONTAINERS and vcodec in (VideoCodec.copy, VideoCodec.none):
            raise spec_error(
                "container_codec", f"{container.value} needs pictures: set a video codec", "video.codec"
            )
        if vcodec not in (VideoCodec.copy, VideoCodec.none) and vcodec not in CONTAINER_VIDEO[container]:
            raise spec_error(
                "container_codec", f"{container.value} cannot hold {vcodec.value} video", "video.codec"
            )
        if self.audio_tracks is not None and acodec in (AudioCodec.copy, AudioCodec.none):
            raise spec_error(
                "audio_tracks",
                "audio tracks are encoded: set an audio codec other than copy or none",
                "audio_tracks",
            )
        if self.audio_tracks is not None and "language" in self.metadata:
            raise spec_error(
                "audio_tracks", "each audio track is tagged with its own language", "metadata.language"
            )
        if acodec not in (AudioCodec.copy, AudioCodec.none) and acodec not in CONTAINER_AUDIO[container]:
            raise spec_error(
                "container_codec", f"{container.value} cannot hold {acodec.value} audio", "audio.codec"
            )
        video = self.video
        check_crf(vcodec, video.crf, "video.crf")
        if vcodec is VideoCodec.h264 and video.pix_fmt is PixFmt.yuv420p10le:
            # The embedded x264 is 8-bit only; refuse now rather than fail at run time.
            raise spec_error("pix_fmt", "10-bit output needs hevc, av1 or vp9", "video.pix_fmt")
        if vcodec is VideoCodec.none and acodec is AudioCodec.none:
            raise spec_error("empty_output", "an output needs video or audio", "video.codec")
        if self.quality_target is not None:
            self._check_quality_target(vcodec)
        if acodec is AudioCodec.opus and self.audio.sample_rate is None:
            self.audio.sample_rate = 48000
        subsampled = (self.video.pix_fmt or PixFmt.yuv420p) in (PixFmt.yuv420p, PixFmt.yuv420p10le)
        if subsampled and vcodec not in IMAGE_CODECS:
            for dim in ("width", "height"):
                size = getattr(self.video, dim)
                if size is not None and size % 2:
                    raise spec_error(
                        "odd_size", f"video.{dim} must be even for 4:2:0 pixel formats", f"video.{dim}"
                    )
        return self

    def _check_quality_target(self, vcodec: VideoCodec) -> None:
        """A target needs an encoder with a quality knob, and nothing else deciding the rate."""
        target = self.quality_target
        assert target is not None
        if vcodec not in MAX_CRF:
            raise spec_error(
                "quality_target",
                f"a quality target needs h264, hevc, av1 or vp9 video, not {vcodec.value}",
                "quality_target",
            )
        for name, why in _TARGET_EXCLUDES.items():
            if getattr(self.video, name) is not None:
                raise spec_error(
                    "quality_target",
                    f"video.{name} cannot be set with quality_target: {why}",
                    f"video.{name}",
                )
        for name in ("min_crf", "max_crf"):
            value = getattr(target, name)
            if value is not None and value > MAX_CRF[vcodec]:
                raise spec_error(
                    "quality_target",
                    f"{name} for {vcodec.value} must be at most {MAX_CRF[vcodec]}",
                    f"quality_target.{name}",
                )

    def _check_defaulted_video(self) -> None:
        """Checks on fields added after the first release, once the container chose the codec."""
        video = self.video
        codec = video.codec
        assert codec is not None
        if codec is VideoCodec.none:
            for name, value in video:
                if name != "codec" and value is not None:
                    raise spec_error(
                        "video_codec",
                        f"{self.container.value} has no picture: {name} cannot be set",
                        f"video.{name}",
                    )
            return
        video.check_pictures(codec, "video.")
        video.level = check_profile_level(codec, video.profile, video.level, video.pix_fmt, "video.")

    def _check_defaulted_audio(self) -> None:
        """Checks for containers added after the first release, once the container chose the codec."""
        audio = self.audio
        codec = audio.codec
        if codec is AudioCodec.none:
            for name, value in audio:
                if name != "codec" and value is not None:
                    raise spec_error(
                        "audio_codec",
                        f"{self.container.value} has no sound: {name} cannot be set",
                        f"audio.{name}",
                    )
        if codec is AudioCodec.flac and audio.bitrate_kbps is not None:
            raise spec_error(
                "bitrate_kbps", "flac is lossless: bitrate_kbps does not apply", "audio.bitrate_kbps"
            )
        if codec is AudioCodec.mp3 and audio.channels is not None and audio.channels > 2:
            raise spec_error("channels", "mp3 carries at most 2 channels", "audio.channels")


class DisplaySize(Strict):
    """The screen size scaled streams are scored at (the source's size after operations by default)."""

    width: Annotated[int, Field(ge=18, le=8192)]
    height: Annotated[int, Field(ge=18, le=8192)]


class QualitySpec(Strict):
    _added: ClassVar[frozenset[str]] = frozenset({"phone", "threads", "segment_seconds", "display"})

    metrics: Annotated[list[Metric], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: [Metric.vmaf, Metric.psnr, Metric.ssim]
    )
    vmaf_model: VmafModel = VmafModel.auto
    # Odd, and prime to the usual GOP lengths (24, 25, 30, 48, 50, 60, 100...): sampled frames walk through
    # every position of a GOP instead of landing on keyframes, as an even or GOP-dividing step would.
    subsample: Annotated[int, Field(ge=1, le=60)] = 7
    phone: bool = False
    threads: Annotated[int, Field(ge=1, le=64)] | None = None
    segment_seconds: Annotated[float, Field(ge=0.5, le=60)] | None = None
    # A scaled stream is upscaled to this size and scored against the unscaled source, as viewers see it.
    display: DisplaySize | None = None

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[Metric]) -> list[Metric]:
        if len(set(value)) != len(value):
            raise spec_error("metrics", "each metric may appear once")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.phone and Metric.vmaf not in self.metrics:
            raise spec_error("phone", "the phone model is a VMAF model: add vmaf to metrics", "phone")
        return self


MetadataKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
MetadataValue = Annotated[str, Field(max_length=512)]


WebhookEventType = Literal[
    "job.created",
    "job.started",
    "job.progress",
    "job.output_ready",
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "job.retrying",
]


def check_webhook_url(value: str) -> str:
    """An absolute http(s) URL with a host and no control characters or credentials (shape only: the
    address guard checks where it leads when a delivery is sent)."""
    if len(value) > 2048 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise spec_error("url", "a webhook URL is at most 2048 printable characters")
    scheme, sep, rest = value.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if not sep or scheme.lower() not in ("http", "https") or not authority:
        raise spec_error("url", "a webhook URL is an absolute http:// or https:// URL")
    if "@" in authority:
        raise spec_error("url", "a webhook URL must not carry credentials")
    return value


def _final_events() -> list[WebhookEventType]:
    return ["job.succeeded", "job.failed", "job.canceled"]


class NotifySpec(Strict):
    """A URL told about this job's events (signed with the tenant's notify secret)."""

    url: str
    events: Annotated[list[WebhookEventType], Field(min_length=1, max_length=8)] = Field(
        default_factory=_final_events
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_webhook_url(value)


class Condition(StrEnum):
    """When a dependant may run, judged on its parent's final state."""

    succeeded = "succeeded"
    failed = "failed"
    finished = "finished"  # any end: succeeded, failed or canceled


JOB_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]


class DependencySpec(Strict):
    """A parent job (of the same tenant) this job waits for, and the parent's end it needs."""

    job: JobId
    condition: Condition = Condition.succeeded


def _parent(value: object) -> object:
    # A bare job id stands for {"job": id} with the default condition.
    return {"job": value} if isinstance(value, str) else value


class InputRef(Strict):
    """A parent's output as this job's input, resolved to its URI when the job is released."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    from_: JobId = Field(alias="from")
    output: Annotated[str, Field(min_length=1, max_length=160)]


class RetentionSpec(Strict):
    """Days after the job ends before FrameFleet deletes its files (storage/lifecycle.py); None keeps them.

    `inputs` deletes the job's input (only where the tenant may write it); `outputs` everything the job
    published; `work` the attempt folders a killed worker left behind.
    """

    inputs: Annotated[int, Field(ge=0, le=36500)] | None = None
    outputs: Annotated[int, Field(ge=0, le=36500)] | None = None
    work: Annotated[int, Field(ge=0, le=36500)] | None = None


# Split-and-stitch (docs/job-spec.md): what chunks may carry today.
PARALLEL_CONTAINERS = (Container.mp4, Container.mov, Container.mkv)
PARALLEL_CODECS = (VideoCodec.h264, VideoCodec.hevc)
MAX_CHUNKS = 64


class ParallelSpec(Strict):
    """Encode the input in `chunks` pieces, each its own task on any worker, joined losslessly at the end.

    `chunks: "auto"` cuts one chunk per `chunk_seconds` of input (at most MAX_CHUNKS); a number asks for
    that many equal chunks (fewer when the input is too short for them).
    """

    chunks: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_CHUNKS)] = "auto"
    chunk_seconds: Annotated[float, Field(ge=0.5, le=3600)] = 60.0


def _check_parallel(spec: JobSpec) -> None:
    """Refuse, naming the field, what cannot be encoded in chunks and joined (yet)."""
    if spec.groups:
        raise spec_error("parallel", "parallel jobs cannot have groups yet", "groups")
    if not spec.outputs:
        raise spec_error("parallel", "parallel jobs need at least one output", "outputs")
    ops = spec.operations
    if ops is not None and ops.trim is not None:
        raise spec_error(
            "parallel",
            "parallel jobs cannot trim yet: chunks are cut from the whole input",
            "operations.trim",
        )
    for index, output in enumerate(spec.outputs):
        video = output.video
        if output.container not in PARALLEL_CONTAINERS:
            names = ", ".join(c.value for c in PARALLEL_CONTAINERS)
            raise spec_error("parallel", f"parallel jobs write {names} outputs", f"outputs.{index}.container")
        if video.codec not in PARALLEL_CODECS:
            names = ", ".join(c.value for c in PARALLEL_CODECS)
            raise spec_error(
                "parallel", f"parallel jobs encode {names} video", f"outputs.{index}.video.codec"
            )
        if video.bitrate_kbps is not None:
            # Each chunk would aim at the average on its own (no two-pass across chunks): refused, not faked.
            raise spec_error(
                "parallel",
                "parallel jobs encode at constant quality (crf, optionally capped by maxrate_kbps): "
                "a target bitrate (two-pass or constant bit rate) cannot be held across chunks",
                f"outputs.{index}.video.bitrate_kbps",
            )
        if video.fps is not None:
            raise spec_error(
                "parallel", "parallel jobs keep the input's frame rate", f"outputs.{index}.video.fps"
            )


class JobSpec(Strict):
    _added: ClassVar[frozenset[str]] = frozenset(
        {
            "parallel",
            "retention",
            "cache",
            "groups",
            "thumbnails",
            "sprites",
            "poster",
            "operations",
            "fallback",
            "max_run_seconds",
            "notify",
            "depends_on",
        }
    )

    version: Literal[1] = SPEC_VERSION
    # A URI, or (with depends_on) a parent's output by reference: {"from": "<job id>", "output": "hd"}.
    input: str | InputRef
    # The picture and streaming fields come first so the `outputs` check below can see them; they are left
    # out of dumps while empty, so a first-release spec still dumps its keys in their old order.
    groups: Annotated[list[GroupSpec], Field(max_length=4)] = Field(default_factory=list)
    thumbnails: Annotated[list[ThumbnailSpec], Field(max_length=8)] = Field(default_factory=list)
    sprites: Annotated[list[SpriteSpec], Field(max_length=4)] = Field(default_factory=list)
    poster: PosterSpec | None = None
    outputs: Annotated[list[OutputSpec], Field(max_length=16)] = Field(
        default_factory=list, validate_default=True
    )
    operations: OperationsSpec | None = None
    quality: QualitySpec | None = None
    priority: Priority = Priority.normal
    hardware: Hardware = Hardware.auto
    fallback: Fallback = Fallback.none
    # Run-time limit of each attempt instead of one derived from the input's duration; the upper bound is
    # the deployment's FRAMEFLEET_JOB_MAX_SECONDS, checked at submission.
    max_run_seconds: Annotated[int, Field(ge=1)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=32)] = Field(default_factory=dict)
    # Webhook URLs for this job alone, besides the tenant's endpoints (docs/workflows.md).
    notify: Annotated[list[NotifySpec], Field(max_length=4)] = Field(default_factory=list)
    # Parent jobs this one waits for in `pending` (docs/workflows.md); a bare id means condition succeeded.
    depends_on: Annotated[list[Annotated[DependencySpec, BeforeValidator(_parent)]], Field(max_length=32)] = (
        Field(default_factory=list)
    )
    # Overrides the tenant's retention for this job (docs/storage.md).
    retention: RetentionSpec | None = None
    # False: always encode, even when a job with the same input content and spec already succeeded.
    cache: bool = True
    # Split-and-stitch: encode in chunks on several workers and join them (docs/job-spec.md).
    parallel: ParallelSpec | None = None

    @field_validator("input")
    @classmethod
    def _input(cls, value: str | InputRef) -> str | InputRef:
        return value if isinstance(value, InputRef) else check_uri(value)

    @field_validator("depends_on")
    @classmethod
    def _parents(cls, parents: list[DependencySpec]) -> list[DependencySpec]:
        seen: set[str] = set()
        for index, parent in enumerate(parents):
            if parent.job in seen:
                raise spec_error("depends_on", f"job {parent.job} is listed twice", f"{index}.job")
            seen.add(parent.job)
        return parents

    @model_validator(mode="after")
    def _input_parent(self) -> Self:
        if isinstance(self.input, InputRef):
            # Only a parent that must succeed is sure to have outputs when this job is released.
            needed = {p.job for p in self.depends_on if p.condition is Condition.succeeded}
            if self.input.from_ not in needed:
                raise spec_error(
                    "input",
                    "input.from must name a job listed in depends_on with condition succeeded",
                    "input.from",
                )
        return self

    def input_uri(self) -> str:
        """The input URI; a reference to a parent's output is resolved before a job is queued."""
        if isinstance(self.input, InputRef):
            raise ValueError("the input still refers to a parent's output; the job was never released")
        return self.input

    @field_validator("outputs")
    @classmethod
    def _names(cls, outputs: list[OutputSpec], info: ValidationInfo) -> list[OutputSpec]:
        others = ("groups", "thumbnails", "sprites", "poster")
        # A field missing from info.data failed its own validation and is reported already.
        if not outputs and all(k in info.data for k in others) and not any(info.data[k] for k in others):
            raise spec_error(
                "empty_job", "a job needs at least 1 output, group, thumbnail set, sprite set or poster"
            )
        seen: set[str] = set()
        for index, output in enumerate(outputs):
            if output.name is None:
                output.name = f"output{index}"
            if output.name in seen:
                raise spec_error("name", f"output name {output.name!r} is used twice", f"{index}.name")
            seen.add(output.name)
        return outputs

    @model_validator(mode="after")
    def _deliverables(self) -> Self:
        taken = {o.name or "": "outputs" for o in self.outputs}
        named: list[tuple[str, Sequence[GroupSpec | ThumbnailSpec | SpriteSpec]]] = [
            ("groups", self.groups),
            ("thumbnails", self.thumbnails),
            ("sprites", self.sprites),
        ]
        for field, items in named:
            for index, item in enumerate(items):
                if item.name is None:
                    item.name = f"{field.rstrip('s')}{index}"
                if item.name in taken:
                    raise spec_error(
                        "name",
                        f"name {item.name!r} is already used in {taken[item.name]}",
                        f"{field}.{index}.name",
                    )
                taken[item.name] = field
        if self.poster is not None:
            self.poster.name = self.poster.name or "poster"
            if self.poster.name in taken:
                raise spec_error(
                    "name",
                    f"name {self.poster.name!r} is already used in {taken[self.poster.name]}",
                    "poster.name",
                )
        if self.parallel is not None:
            _check_parallel(self)
        return self

    def deliverable_names(self) -> list[str]:
        """Every name the job publishes under: outputs, groups, thumbnails, sprites and the poster."""
        names = [o.name or "" for o in self.outputs]
        names += [g.name or "" for g in self.groups]
        names += [t.name or "" for t in self.thumbnails]
        names += [s.name or "" for s in self.sprites]
        if self.poster is not None:
            names.append(self.poster.name or "poster")
        return names

    def canonical_json(self) -> str:
        """The normalised spec as stable JSON: same meaning, same bytes (used for idempotency)."""
        return self.model_dump_json(exclude_none=False)


def output_extension(container: Container) -> str:
    """File extension for a container's file (image sequences are folders and have none)."""
    return container.value
