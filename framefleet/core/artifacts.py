"""Still pictures in the job spec: thumbnails, sprite sheets with their WebVTT map, and a poster frame.

Times are seconds on the output timeline, i.e. after any trim. Every picture comes from the same
ffmpeg process as the job's videos.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Self

from pydantic import Field, model_validator

from framefleet.core.specbase import Destination, ImageFormat, Name, Strict, check_overwrite, spec_error

MAX_TIMES = 200
Seconds = Annotated[float, Field(ge=0, le=7 * 24 * 3600)]
Side = Annotated[int, Field(ge=16, le=4096)]
Quality = Annotated[int, Field(ge=1, le=100)]


class _Pictures(Strict):
    _added: ClassVar[frozenset[str]] = frozenset({"overwrite"})

    name: Name | None = None
    format: ImageFormat = ImageFormat.jpeg
    width: Side | None = None
    height: Side | None = None
    quality: Quality = 80
    destination: Destination | None = None
    overwrite: bool = False

    @model_validator(mode="after")
    def _check_overwrite(self) -> Self:
        check_overwrite(self.destination, self.overwrite)
        return self


class ThumbnailSpec(_Pictures):
    """Pictures at given times, or every N seconds."""

    times: Annotated[list[Seconds], Field(min_length=1, max_length=MAX_TIMES)] | None = None
    every_seconds: Annotated[float, Field(ge=0.1, le=3600)] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.times is None) == (self.every_seconds is None):
            raise spec_error("thumbnails", "set times or every_seconds (one of them)", "times")
        if self.times is not None:
            self.times = sorted(set(self.times))
        return self


class SpriteSpec(_Pictures):
    """Tiles every N seconds packed into sheets of columns x rows, with a WebVTT file mapping time to tile."""

    every_seconds: Annotated[float, Field(ge=0.1, le=600)] = 5.0
    columns: Annotated[int, Field(ge=1, le=20)] = 5
    rows: Annotated[int, Field(ge=1, le=20)] = 5
    width: Side | None = 160


class PosterSpec(_Pictures):
    """One representative picture: at `time`, or, without one, the most typical frame near 10 % in."""

    time: Seconds | None = None
    quality: Quality = 85
