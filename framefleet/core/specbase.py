"""Building blocks of the job spec: the strict base model, errors that name their field, shared enums.

The spec grows by adding optional fields. A field added after the first release is listed in its model's
`_added` set and left out of dumps while it holds its default, so a spec written for the first release
dumps (and hashes) exactly as it did then: existing specs keep their meaning and their idempotency digest.
"""

from __future__ import annotations

import functools
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from urllib.parse import unquote

from pydantic import AfterValidator, BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer
from pydantic_core import PydanticCustomError

URI_SCHEMES = ("file", "s3", "azure", "az", "gs", "storage", "http", "https")
# Where outputs can be written: http(s) is read-only.
DESTINATION_SCHEMES = ("file", "s3", "azure", "az", "gs", "storage")
# Object stores: the whole rest of the URI is bucket (or container) and key, with no host.
OBJECT_SCHEMES = ("s3", "azure", "az", "gs", "storage")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Language tags as HLS and DASH carry them (BCP 47 shapes such as en, pt-BR, zh-Hant).
LANGUAGE_PATTERN = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")


class Priority(StrEnum):
    live = "live"
    high = "high"
    normal = "normal"
    low = "low"
    batch = "batch"


class Hardware(StrEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


class Fallback(StrEnum):
    """What a GPU job does when its GPU cannot do something: fail, or run that part on the CPU."""

    none = "none"
    cpu = "cpu"


class Container(StrEnum):
    mp4 = "mp4"
    mkv = "mkv"
    mov = "mov"
    webm = "webm"
    ts = "ts"
    # Audio only.
    m4a = "m4a"
    mp3 = "mp3"
    opus = "opus"
    flac = "flac"
    # Pictures: animations and numbered image files.
    gif = "gif"
    webp = "webp"
    images = "images"


class VideoCodec(StrEnum):
    h264 = "h264"
    hevc = "hevc"
    av1 = "av1"
    vp9 = "vp9"
    copy = "copy"
    none = "none"
    gif = "gif"
    webp = "webp"
    png = "png"
    jpeg = "jpeg"


class AudioCodec(StrEnum):
    aac = "aac"
    opus = "opus"
    mp3 = "mp3"
    flac = "flac"
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


class Profile(StrEnum):
    baseline = "baseline"
    main = "main"
    high = "high"
    main10 = "main10"


class Fit(StrEnum):
    """How a picture goes into a width x height box."""

    fit = "fit"  # scaled down to fit inside, aspect kept: the output may be smaller than the box
    fill = "fill"  # scaled to cover the box, aspect kept, the overflow cropped from the centre
    stretch = "stretch"  # exactly the box, aspect ignored
    pad = "pad"  # fit inside, then black bars up to the box


class ImageFormat(StrEnum):
    jpeg = "jpeg"
    webp = "webp"
    png = "png"


IMAGE_EXTENSIONS: dict[ImageFormat, str] = {
    ImageFormat.jpeg: "jpg",
    ImageFormat.webp: "webp",
    ImageFormat.png: "png",
}


def spec_error(kind: str, message: str, field: str | None = None) -> PydanticCustomError:
    """A validation error; `field` names the sub-field at fault when raised from a whole-model check."""
    return PydanticCustomError(kind, message, {"field": field} if field else None)


def check_uri(value: str) -> str:
    """A storage URI with a known scheme and no control characters."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in URI_SCHEMES or not rest:
        raise spec_error("uri", f"must be a URI with one of the schemes {', '.join(URI_SCHEMES)}")
    if any(ord(c) < 0x20 for c in value):
        raise spec_error("uri", "must not contain control characters")
    if scheme.lower() in DESTINATION_SCHEMES:
        # A '.' or '..' segment would make the path mean something else once normalised (S3 keeps it as a
        # literal key, a filesystem walks up): refused rather than normalised, so a URI names one place.
        path = rest if scheme.lower() in OBJECT_SCHEMES else rest.partition("/")[2]
        if any(unquote(segment) in (".", "..") for segment in path.split("/")):
            raise spec_error("uri", "must not contain '.' or '..' path segments")
    return value


def check_destination(value: str) -> str:
    """A URI outputs can be written to: file://, s3://, azure:// (az://) or gs:// (http(s) only reads)."""
    value = check_uri(value)
    if value.partition("://")[0].lower() not in DESTINATION_SCHEMES:
        raise spec_error("uri", f"a destination must use one of the schemes {', '.join(DESTINATION_SCHEMES)}")
    return value


def check_name(value: str | None) -> str | None:
    """A name usable in file names and manifests: 1-64 letters, digits, '_', '-' or '.'."""
    if value is not None and not NAME_PATTERN.match(value):
        raise spec_error("name", "must be 1-64 letters, digits, '_', '-' or '.', starting alphanumeric")
    return value


def check_overwrite(destination: str | None, overwrite: bool) -> None:
    """`overwrite` is an opt-in for an explicit destination; the job's own folder needs none."""
    if overwrite and destination is None:
        raise spec_error(
            "overwrite",
            "overwrite applies to an explicit destination (the job's own folder is always new)",
            "overwrite",
        )


# Field types that validate themselves, so each model need not repeat the same validators.
Name = Annotated[str, AfterValidator(check_name)]
Uri = Annotated[str, AfterValidator(check_uri)]
Destination = Annotated[str, AfterValidator(check_destination)]


class Strict(BaseModel):
    """Unknown fields are refused; fields added after the first release vanish from dumps at their default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, use_enum_values=False)
    _added: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_added_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._added:
            if name in data and getattr(self, name) == _default_of(type(self), name):
                del data[name]
        return data


@functools.cache
def _default_of(model: type[BaseModel], name: str) -> Any:
    # Cached: building a default (often a whole sub-model) on every dump made serialising a spec 20x slower.
    # The cached value is only ever compared with, never handed out, so sharing it is safe.
    return model.model_fields[name].get_default(call_default_factory=True)
