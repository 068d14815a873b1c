"""Editing operations in the job spec: applied once to the decoded input, before any output is cut from it.

Order of application (see media/filters.py): trim → deinterlace → crop → rotate → tone-map → denoise →
watermark → subtitles for the picture; channel mix → loudness for the sound. Crop coordinates refer to
the picture as displayed (after the rotation recorded in the file), before an explicit `rotate`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from framefleet.core.specbase import Strict, check_uri, spec_error

MAX_SECONDS = 7 * 24 * 3600.0


class Deinterlace(StrEnum):
    off = "off"
    auto = "auto"  # when the probe finds interlacing: only frames the decoder marks as interlaced
    on = "on"  # every frame
    field_rate = "field_rate"  # when the probe finds interlacing: one frame per field (50i -> 50p)


class Denoise(StrEnum):
    light = "light"
    medium = "medium"
    strong = "strong"


class Position(StrEnum):
    top_left = "top_left"
    top_right = "top_right"
    bottom_left = "bottom_left"
    bottom_right = "bottom_right"
    middle = "center"


class MixLayout(StrEnum):
    mono = "mono"
    stereo = "stereo"
    surround51 = "5.1"


MIX_CHANNELS: dict[MixLayout, int] = {MixLayout.mono: 1, MixLayout.stereo: 2, MixLayout.surround51: 6}


class ToneMapAlgorithm(StrEnum):
    hable = "hable"
    mobius = "mobius"
    reinhard = "reinhard"
    clip = "clip"


class TrimSpec(Strict):
    """Keep [start, end) of the input, in seconds; `duration` instead of `end` counts from start."""

    start: Annotated[float, Field(ge=0, le=MAX_SECONDS)] = 0.0
    end: Annotated[float, Field(gt=0, le=MAX_SECONDS)] | None = None
    duration: Annotated[float, Field(gt=0, le=MAX_SECONDS)] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end is not None and self.duration is not None:
            raise spec_error("trim", "set end or duration, not both", "end")
        if self.end is not None and self.end <= self.start:
            raise spec_error("trim", "end must be after start", "end")
        if self.start == 0 and self.end is None and self.duration is None:
            raise spec_error("trim", "a trim needs a start, an end or a duration", "start")
        return self

    @property
    def length(self) -> float | None:
        """Seconds kept, when bounded."""
        if self.duration is not None:
            return self.duration
        if self.end is not None:
            return self.end - self.start
        return None


class CropSpec(Strict):
    """The rectangle to keep, in pixels of the displayed picture."""

    x: Annotated[int, Field(ge=0, le=16384)] = 0
    y: Annotated[int, Field(ge=0, le=16384)] = 0
    width: Annotated[int, Field(ge=16, le=16384)]
    height: Annotated[int, Field(ge=16, le=16384)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        for dim in ("x", "y", "width", "height"):
            if getattr(self, dim) % 2:
                raise spec_error("odd_size", f"crop {dim} must be even (4:2:0 chroma)", dim)
        return self


class WatermarkSpec(Strict):
    """An image (PNG with alpha works best) laid over the picture."""

    uri: str
    position: Position = Position.bottom_right
    margin: Annotated[int, Field(ge=0, le=4096)] = 16
    opacity: Annotated[float, Field(gt=0, le=1)] = 1.0
    # Width of the watermark as a fraction of the picture's width; None keeps the image's own size.
    scale: Annotated[float, Field(gt=0, le=1)] | None = 0.15

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_uri(value)


class SubtitlesSpec(Strict):
    """Subtitles burned into the picture, from an SRT or WebVTT file."""

    uri: str
    format: Literal["srt", "vtt"] | None = None
    font_size: Annotated[int, Field(ge=8, le=96)] | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_uri(value)

    @model_validator(mode="after")
    def _format(self) -> Self:
        if self.format is None:
            suffix = self.uri.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
            if suffix not in ("srt", "vtt"):
                raise spec_error("subtitles", "cannot tell srt from vtt by the URI: set format", "format")
            self.format = "srt" if suffix == "srt" else "vtt"
        return self


class LoudnessSpec(Strict):
    """Two-pass EBU R128 normalisation (ffmpeg loudnorm) of each output's own layout: measure, then correct
    linearly; every normalised stream is measured again (ebur128) and checked against `tolerance`."""

    _added: ClassVar[frozenset[str]] = frozenset({"tolerance", "on_miss"})

    integrated: Annotated[float, Field(ge=-70, le=-5)] = -23.0
    true_peak: Annotated[float, Field(ge=-9, le=0)] = -1.0
    # The least loudness range asked of loudnorm; a wider source's own range is used instead, since loudnorm
    # gives up its linear correction (and compresses, missing the target) when the source's range is wider.
    lra: Annotated[float, Field(ge=1, le=50)] = 7.0
    tolerance: Annotated[float, Field(ge=0.1, le=5)] = 0.5  # LU either side of `integrated`
    on_miss: Literal["warn", "fail"] = "warn"


class ChannelMixSpec(Strict):
    """Remix to a layout; `gains[out][in]` gives each output channel as a weighted sum of input channels."""

    layout: MixLayout
    gains: (
        list[Annotated[list[Annotated[float, Field(ge=-8, le=8)]], Field(min_length=1, max_length=8)]] | None
    ) = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.gains is not None and len(self.gains) != MIX_CHANNELS[self.layout]:
            raise spec_error(
                "channel_mix",
                f"{self.layout.value} has {MIX_CHANNELS[self.layout]} channels: gains needs that many rows",
                "gains",
            )
        return self


class ToneMapSpec(Strict):
    """HDR (PQ or HLG) to SDR BT.709.

    `hdr` (the default, also without this section): an HDR source is tone-mapped on each SDR target's own
    branch (8-bit, H.264 or a picture) while HDR targets stay HDR; `always`: the shared picture is
    tone-mapped for every output; `never`: a job with an SDR target is refused rather than writing HDR on SDR.
    """

    algorithm: ToneMapAlgorithm = ToneMapAlgorithm.hable
    when: Literal["hdr", "always", "never"] = "hdr"


class AudioTrackSpec(Strict):
    """One input audio track (by position among the audio streams, or by language), or two mono tracks
    paired into one stereo track: `pair` lists the left and the right track's positions."""

    _added: ClassVar[frozenset[str]] = frozenset({"pair"})

    index: Annotated[int, Field(ge=0, le=63)] | None = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}$")] | None = None
    pair: Annotated[list[Annotated[int, Field(ge=0, le=63)]], Field(min_length=2, max_length=2)] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        given = [f for f in ("index", "language", "pair") if getattr(self, f) is not None]
        if len(given) != 1:
            raise spec_error(
                "audio_track", "give one of index, language or pair", given[-1] if given else None
            )
        if self.pair is not None and self.pair[0] == self.pair[1]:
            raise spec_error("audio_track", "pair needs two different tracks (left, right)", "pair")
        return self


class OperationsSpec(Strict):
    trim: TrimSpec | None = None
    crop: CropSpec | None = None
    rotate: Literal[0, 90, 180, 270] = 0
    auto_rotate: bool = True
    # Interlaced sources are deinterlaced unless asked not to: every output is progressive.
    deinterlace: Deinterlace = Deinterlace.auto
    denoise: Denoise | None = None
    watermark: WatermarkSpec | None = None
    subtitles: SubtitlesSpec | None = None
    loudness: LoudnessSpec | None = None
    channel_mix: ChannelMixSpec | None = None
    strip_audio: bool = False
    tonemap: ToneMapSpec | None = None
    # Default: the input's first audio track; the others are listed as unused in each output's details.
    audio_track: AudioTrackSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.strip_audio and (self.loudness is not None or self.channel_mix is not None):
            field = "loudness" if self.loudness is not None else "channel_mix"
            raise spec_error("strip_audio", f"{field} has no sound to work on when strip_audio is set", field)
        return self
