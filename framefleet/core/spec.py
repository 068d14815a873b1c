"""Job spec v1: what a client may ask for, validated strictly (unknown fields are refused).

Every check raises with the name of the field at fault, so the API can answer 422 pointing at it.
After validation the spec is *normalised*: defaults chosen from the container are written in, so the
stored spec says exactly what will run.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

SPEC_VERSION: Literal[1] = 1
URI_SCHEMES = ("file", "s3", "http", "https")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Priority(StrEnum):
    live = "live"
    high = "high"
    normal = "normal"
    low = "low"
    batch = "batch"


PRIORITY_ORDER: tuple[Priority, ...] = tuple(Priority)


class Hardware(StrEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


class Container(StrEnum):
    mp4 = "mp4"
    mkv = "mkv"
    mov = "mov"
    webm = "webm"
    ts = "ts"


class VideoCodec(StrEnum):
    h264 = "h264"
    hevc = "hevc"
    av1 = "av1"
    vp9 = "vp9"
    copy = "copy"
    none = "none"


class AudioCodec(StrEnum):
    aac = "aac"
    opus = "opus"
    mp3 = "mp3"
    copy = "copy"
    none = "none"


class Preset(StrEnum):
    ultrafast = "ultrafast"
    superfast = "superfast"
    veryfast = "veryfast"
    faster = "faster"
    fast = "fast"
    medium = "medium"
    slow = "slow"
    slower = "slower"
    veryslow = "veryslow"


class PixFmt(StrEnum):
    yuv420p = "yuv420p"
    yuv422p = "yuv422p"
    yuv444p = "yuv444p"
    yuv420p10le = "yuv420p10le"


class Metric(StrEnum):
    vmaf = "vmaf"
    psnr = "psnr"
    ssim = "ssim"


class VmafModel(StrEnum):
    default = "vmaf_v0.6.1"
    uhd = "vmaf_4k_v0.6.1"
    neg = "vmaf_v0.6.1neg"


# What each container can hold. `copy` is checked against the probed input at run time.
CONTAINER_VIDEO: dict[Container, frozenset[VideoCodec]] = {
    Container.mp4: frozenset({VideoCodec.h264, VideoCodec.hevc, VideoCodec.av1, VideoCodec.vp9}),
    Container.mkv: frozenset({VideoCodec.h264, VideoCodec.hevc, VideoCodec.av1, VideoCodec.vp9}),
    Container.mov: frozenset({VideoCodec.h264, VideoCodec.hevc}),
    Container.webm: frozenset({VideoCodec.vp9, VideoCodec.av1}),
    Container.ts: frozenset({VideoCodec.h264, VideoCodec.hevc}),
}
CONTAINER_AUDIO: dict[Container, frozenset[AudioCodec]] = {
    Container.mp4: frozenset({AudioCodec.aac, AudioCodec.mp3, AudioCodec.opus}),
    Container.mkv: frozenset({AudioCodec.aac, AudioCodec.mp3, AudioCodec.opus}),
    Container.mov: frozenset({AudioCodec.aac, AudioCodec.mp3}),
    Container.webm: frozenset({AudioCodec.opus}),
    Container.ts: frozenset({AudioCodec.aac, AudioCodec.mp3}),
}
DEFAULT_VIDEO: dict[Container, VideoCodec] = {
    Container.mp4: VideoCodec.h264,
    Container.mkv: VideoCodec.h264,
    Container.mov: VideoCodec.h264,
    Container.webm: VideoCodec.vp9,
    Container.ts: VideoCodec.h264,
}
DEFAULT_AUDIO: dict[Container, AudioCodec] = {
    Container.mp4: AudioCodec.aac,
    Container.mkv: AudioCodec.aac,
    Container.mov: AudioCodec.aac,
    Container.webm: AudioCodec.opus,
    Container.ts: AudioCodec.aac,
}
MAX_CRF: dict[VideoCodec, int] = {
    VideoCodec.h264: 51,
    VideoCodec.hevc: 51,
    VideoCodec.av1: 63,
    VideoCodec.vp9: 63,
}
OPUS_SAMPLE_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 96000})


def spec_error(kind: str, message: str, field: str | None = None) -> PydanticCustomError:
    """A validation error; `field` names the sub-field at fault when raised from a whole-model check."""
    return PydanticCustomError(kind, message, {"field": field} if field else None)


def check_uri(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in URI_SCHEMES or not rest:
        raise spec_error("uri", f"must be a URI with one of the schemes {', '.join(URI_SCHEMES)}")
    if any(ord(c) < 0x20 for c in value):
        raise spec_error("uri", "must not contain control characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, use_enum_values=False)


class VideoSpec(_Strict):
    codec: VideoCodec | None = None
    width: Annotated[int, Field(ge=16, le=8192)] | None = None
    height: Annotated[int, Field(ge=16, le=8192)] | None = None
    fps: Annotated[float, Field(gt=0, le=240)] | None = None
    crf: Annotated[int, Field(ge=0, le=63)] | None = None
    bitrate_kbps: Annotated[int, Field(ge=50, le=500_000)] | None = None
    preset: Preset | None = None
    pix_fmt: PixFmt | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        codec = self.codec
        tuning = ("width", "height", "fps", "crf", "bitrate_kbps", "preset", "pix_fmt")
        if codec in (VideoCodec.copy, VideoCodec.none):
            for name in tuning:
                if getattr(self, name) is not None:
                    raise spec_error("video_codec", f"{name} cannot be set when codec is {codec.value}", name)
            return self
        if self.crf is not None and self.bitrate_kbps is not None:
            raise spec_error("rate_control", "set crf or bitrate_kbps, not both", "crf")
        return self


class AudioSpec(_Strict):
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
        return self


class OutputSpec(_Strict):
    name: str | None = None
    container: Container
    video: VideoSpec = Field(default_factory=VideoSpec)
    audio: AudioSpec = Field(default_factory=AudioSpec)
    destination: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise spec_error("name", "must be 1-64 letters, digits, '_', '-' or '.', starting alphanumeric")
        return value

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value)

    @model_validator(mode="after")
    def _normalise(self) -> Self:
        if self.video.codec is None:
            self.video.codec = DEFAULT_VIDEO[self.container]
        if self.audio.codec is None:
            self.audio.codec = DEFAULT_AUDIO[self.container]
        vcodec, acodec = self.video.codec, self.audio.codec
        if vcodec not in (VideoCodec.copy, VideoCodec.none) and vcodec not in CONTAINER_VIDEO[self.container]:
            raise spec_error(
                "container_codec", f"{self.container.value} cannot hold {vcodec.value} video", "video.codec"
            )
        if acodec not in (AudioCodec.copy, AudioCodec.none) and acodec not in CONTAINER_AUDIO[self.container]:
            raise spec_error(
                "container_codec", f"{self.container.value} cannot hold {acodec.value} audio", "audio.codec"
            )
        video = self.video
        if vcodec in MAX_CRF and video.crf is not None and video.crf > MAX_CRF[vcodec]:
            raise spec_error("crf", f"crf for {vcodec.value} must be at most {MAX_CRF[vcodec]}", "video.crf")
        if vcodec is VideoCodec.h264 and video.pix_fmt is PixFmt.yuv420p10le:
            # The embedded x264 is 8-bit only; refuse now rather than fail at run time.
            raise spec_error("pix_fmt", "10-bit output needs hevc, av1 or vp9", "video.pix_fmt")
        if vcodec is VideoCodec.none and acodec is AudioCodec.none:
            raise spec_error("empty_output", "an output needs video or audio", "video.codec")
        if acodec is AudioCodec.opus and self.audio.sample_rate is None:
            self.audio.sample_rate = 48000
        subsampled = (self.video.pix_fmt or PixFmt.yuv420p) in (PixFmt.yuv420p, PixFmt.yuv420p10le)
        if subsampled:
            for dim in ("width", "height"):
                size = getattr(self.video, dim)
                if size is not None and size % 2:
                    raise spec_error(
                        "odd_size", f"video.{dim} must be even for 4:2:0 pixel formats", f"video.{dim}"
                    )
        return self


class QualitySpec(_Strict):
    metrics: Annotated[list[Metric], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: [Metric.vmaf, Metric.psnr, Metric.ssim]
    )
    vmaf_model: VmafModel = VmafModel.default
    subsample: Annotated[int, Field(ge=1, le=60)] = 1

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[Metric]) -> list[Metric]:
        if len(set(value)) != len(value):
            raise spec_error("metrics", "each metric may appear once")
        return value


MetadataKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
MetadataValue = Annotated[str, Field(max_length=512)]


class JobSpec(_Strict):
    version: Literal[1] = SPEC_VERSION
    input: str
    outputs: Annotated[list[OutputSpec], Field(min_length=1, max_length=16)]
    quality: QualitySpec | None = None
    priority: Priority = Priority.normal
    hardware: Hardware = Hardware.auto
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=32)] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _input(cls, value: str) -> str:
        return check_uri(value)

    @field_validator("outputs")
    @classmethod
    def _names(cls, outputs: list[OutputSpec]) -> list[OutputSpec]:
        seen: set[str] = set()
        for index, output in enumerate(outputs):
            if output.name is None:
                output.name = f"output{index}"
            if output.name in seen:
                raise spec_error("name", f"output name {output.name!r} is used twice", f"{index}.name")
            seen.add(output.name)
        return outputs



def output_extension(container: Container) -> str:
    return container.value
