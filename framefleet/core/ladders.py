"""Adaptive-streaming output groups in the job spec: HLS, DASH and CMAF ladders with audio renditions.

A ladder may be named (`"standard"`), listed by rung name (`["1080p", "720p"]`) or spelled out; whatever
the client sends is normalised into explicit renditions, so the stored spec says exactly what will run.
Rungs above the source picture are dropped at run time (the source is not known here) and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from framefleet.core.encoding import (
    OPUS_SAMPLE_RATES,
    SAMPLE_RATES,
    Crf,
    check_crf,
    check_profile_level,
    check_rate_control,
)
from framefleet.core.operations import AudioTrackSpec
from framefleet.core.specbase import (
    LANGUAGE_PATTERN,
    AudioCodec,
    Destination,
    Name,
    PixFmt,
    Preset,
    Profile,
    Strict,
    VideoCodec,
    check_overwrite,
    spec_error,
)


class GroupType(StrEnum):
    hls = "hls"
    dash = "dash"
    cmaf = "cmaf"  # one set of fMP4 segments, announced by both an HLS master playlist and a DASH MPD


class SegmentType(StrEnum):
    ts = "ts"
    fmp4 = "fmp4"


class LadderPreset(StrEnum):
    standard = "standard"
    mobile = "mobile"
    uhd = "uhd"


@dataclass(frozen=True)
class Rung:
    """A named rung: picture height (the short side of a landscape picture), H.264 bitrate and profile.

    No level is written: x264 derives it from the real size and frame rate, so a 60 fps source is
    never labelled with a level meant for 30 fps.
    """

    height: int
    kbps: int
    profile: Profile


RUNGS: dict[str, Rung] = {
    "2160p": Rung(2160, 14000, Profile.high),
    "1440p": Rung(1440, 9000, Profile.high),
    "1080p": Rung(1080, 5000, Profile.high),
    "720p": Rung(720, 2800, Profile.high),
    "540p": Rung(540, 1800, Profile.main),
    "480p": Rung(480, 1200, Profile.main),
    "360p": Rung(360, 700, Profile.main),
    "240p": Rung(240, 400, Profile.main),
}
LADDERS: dict[LadderPreset, tuple[str, ...]] = {
    LadderPreset.standard: ("1080p", "720p", "480p", "360p"),
    LadderPreset.mobile: ("720p", "480p", "360p", "240p"),
    LadderPreset.uhd: ("2160p", "1440p", "1080p", "720p", "480p", "360p"),
}
# Newer codecs reach the same quality with fewer bits; named rungs scale their H.264 bitrate by this.
RATE_FACTOR: dict[VideoCodec, float] = {
    VideoCodec.h264: 1.0,
    VideoCodec.hevc: 0.65,
    VideoCodec.vp9: 0.65,
    VideoCodec.av1: 0.55,
}
PEAK_FACTOR = 1.5  # named rungs: maxrate = 1.5 x target, VBV buffer = 2 x target
VIDEO_CODECS: dict[tuple[GroupType, SegmentType], frozenset[VideoCodec]] = {
    # HEVC in MPEG-TS is not part of HLS for Apple's players (they need fMP4 with an hvc1 sample entry).
    (GroupType.hls, SegmentType.ts): frozenset({VideoCodec.h264}),
    (GroupType.hls, SegmentType.fmp4): frozenset({VideoCodec.h264, VideoCodec.hevc, VideoCodec.av1}),
    (GroupType.dash, SegmentType.fmp4): frozenset(
        {VideoCodec.h264, VideoCodec.hevc, VideoCodec.av1, VideoCodec.vp9}
    ),
    (GroupType.cmaf, SegmentType.fmp4): frozenset({VideoCodec.h264, VideoCodec.hevc, VideoCodec.av1}),
}
AUDIO_CODECS: dict[tuple[GroupType, SegmentType], frozenset[AudioCodec]] = {
    (GroupType.hls, SegmentType.ts): frozenset({AudioCodec.aac}),
    (GroupType.hls, SegmentType.fmp4): frozenset({AudioCodec.aac}),
    (GroupType.dash, SegmentType.fmp4): frozenset({AudioCodec.aac, AudioCodec.opus}),
    (GroupType.cmaf, SegmentType.fmp4): frozenset({AudioCodec.aac, AudioCodec.opus}),
}
MAX_RUNGS = 8
MAX_AUDIO = 4
# `ladder: "auto"`: the sizes sampled for a per-title ladder (those above the source are dropped at run time).
AUTO_CANDIDATES = ("2160p", "1440p", "1080p", "720p", "540p", "360p", "240p")
AUTO = "auto"


class RenditionSpec(Strict):
    """One video rung of a ladder."""

    name: Name | None = None
    width: Annotated[int, Field(ge=16, le=8192)] | None = None
    height: Annotated[int, Field(ge=16, le=8192)] | None = None
    codec: VideoCodec | None = None
    bitrate_kbps: Annotated[int, Field(ge=50, le=500_000)] | None = None
    crf: Crf | None = None
    maxrate_kbps: Annotated[int, Field(ge=50, le=500_000)] | None = None
    bufsize_kbps: Annotated[int, Field(ge=50, le=1_000_000)] | None = None
    profile: Profile | None = None
    level: str | None = None
    preset: Preset | None = None
    pix_fmt: PixFmt | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.width is None and self.height is None:
            raise spec_error("rung_size", "a rung needs a height or a width", "height")
        for dim in ("width", "height"):
            size = getattr(self, dim)
            if size is not None and size % 2:
                raise spec_error("odd_size", f"{dim} must be even for 4:2:0 pixel formats", dim)
        if self.pix_fmt not in (None, PixFmt.yuv420p, PixFmt.yuv420p10le):
            raise spec_error("pix_fmt", "streaming rungs are 4:2:0: yuv420p or yuv420p10le", "pix_fmt")
        check_rate_control(self.crf, self.bitrate_kbps, self.maxrate_kbps, self.bufsize_kbps)
        if self.name is None:
            self.name = f"{self.height}p" if self.height is not None else f"w{self.width}"
        return self


class AudioRenditionSpec(Strict):
    """One audio rendition of a group (HLS EXT-X-MEDIA, DASH audio AdaptationSet)."""

    _added: ClassVar[frozenset[str]] = frozenset({"track"})

    name: Name | None = None
    codec: AudioCodec = AudioCodec.aac
    bitrate_kbps: Annotated[int, Field(ge=8, le=1024)] | None = None
    channels: Annotated[int, Field(ge=1, le=8)] = 2
    sample_rate: int | None = None
    language: str | None = None
    default: bool = False
    # The input track (or mono pair) this rendition is made from; default operations.audio_track's.
    track: AudioTrackSpec | None = None

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and not LANGUAGE_PATTERN.match(value):
            raise spec_error("language", "must be a language tag such as en, pt-BR or zh-Hant")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.sample_rate is not None and self.sample_rate not in SAMPLE_RATES:
            raise spec_error("sample_rate", f"must be one of {sorted(SAMPLE_RATES)}", "sample_rate")
        if self.codec is AudioCodec.opus:
            if self.sample_rate is None:
                self.sample_rate = 48000
            elif self.sample_rate not in OPUS_SAMPLE_RATES:
                raise spec_error(
                    "sample_rate", f"opus needs one of {sorted(OPUS_SAMPLE_RATES)}", "sample_rate"
                )
        if self.bitrate_kbps is None:
            per_pair = 128 if self.codec is AudioCodec.aac else 96
            self.bitrate_kbps = per_pair * max(1, self.channels // 2)
        if self.name is None:
            self.name = f"{self.codec.value}_{self.bitrate_kbps}k"
        return self


def default_cap(codec: VideoCodec, short_side: int) -> tuple[int, int]:
    """(maxrate, bufsize) in kb/s for a constant-quality rung that names no cap: the cap of the named rung
    of that size (the next larger one in between), so a rung never bursts past what its size would get."""
    fitting = [r for r in RUNGS.values() if r.height >= short_side]
    rung = min(fitting, key=lambda r: r.height) if fitting else max(RUNGS.values(), key=lambda r: r.height)
    kbps = rung.kbps * RATE_FACTOR.get(codec, 1.0) * max(1.0, (short_side / rung.height) ** 2)
    return round(kbps * PEAK_FACTOR), round(2 * kbps)


def _expand_rung(name: str, codec: VideoCodec) -> dict[str, Any]:
    rung = RUNGS.get(name)
    if rung is None:
        raise spec_error("rung", f"unknown rung {name!r}; named rungs are: {', '.join(RUNGS)}")
    kbps = round(rung.kbps * RATE_FACTOR.get(codec, 1.0))
    expanded: dict[str, Any] = {
        "name": name,
        "height": rung.height,
        "bitrate_kbps": kbps,
        "maxrate_kbps": round(kbps * PEAK_FACTOR),
        "bufsize_kbps": 2 * kbps,
    }
    if codec is VideoCodec.h264:
        expanded["profile"] = rung.profile.value
    return expanded


class AutoLadderSpec(Strict):
    """A per-title ladder (`ladder: "auto"`): the worker measures each candidate size's bitrate/quality curve
    on samples of the input and keeps the rungs on their upper envelope (docs/job-spec.md)."""

    max_rungs: Annotated[int, Field(ge=1, le=MAX_RUNGS)] = 4
    min_bitrate_kbps: Annotated[int, Field(ge=50, le=500_000)] = 200
    max_bitrate_kbps: Annotated[int, Field(ge=50, le=500_000)] | None = None
    # The VMAF (at display size) the top rung should reach with the fewest bits.
    top_vmaf: Annotated[float, Field(ge=1, le=100)] = 95.0

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.max_bitrate_kbps is not None and self.max_bitrate_kbps < self.min_bitrate_kbps:
            raise spec_error(
                "auto_ladder", "max_bitrate_kbps must be at least min_bitrate_kbps", "max_bitrate_kbps"
            )
        return self


class GroupSpec(Strict):
    """An adaptive-streaming package: a ladder of video rungs plus audio renditions and manifests."""

    _added: ClassVar[frozenset[str]] = frozenset({"overwrite", "auto_ladder"})

    name: Name | None = None
    type: GroupType
    ladder: Annotated[list[RenditionSpec], Field(min_length=1, max_length=MAX_RUNGS)]
    # Set (from `ladder: "auto"`) while `ladder` holds the candidate sizes the worker chooses rungs from.
    auto_ladder: AutoLadderSpec | None = None
    video_codec: VideoCodec = VideoCodec.h264
    preset: Preset | None = None
    fps: Annotated[float, Field(gt=0, le=120)] | None = None
    segment_seconds: Annotated[float, Field(ge=1, le=30)] = 4.0
    segment_type: SegmentType | None = None
    audio: Annotated[list[AudioRenditionSpec], Field(max_length=MAX_AUDIO)] | None = None
    destination: Destination | None = None
    overwrite: bool = False

    @model_validator(mode="before")
    @classmethod
    def _expand_ladder(cls, data: Any) -> Any:
        """A preset name or rung names become explicit renditions, with bitrates for the group's codec."""
        if not isinstance(data, dict) or "ladder" not in data:
            return data
        try:
            codec = VideoCodec(data.get("video_codec") or VideoCodec.h264)
        except ValueError:
            return data  # the field check reports the bad codec
        ladder = data["ladder"]
        if data.get("auto_ladder") is not None and isinstance(ladder, str) and ladder != AUTO:
            # With a list, auto_ladder chooses among those sizes (as a stored "auto" spec reads back).
            raise spec_error("auto_ladder", 'auto_ladder goes with ladder "auto" or a list', "auto_ladder")
        if ladder == AUTO:
            if codec not in RATE_FACTOR:
                return data  # the codec check reports it
            auto = data.get("auto_ladder")
            candidates = [_expand_rung(name, codec) for name in AUTO_CANDIDATES]
            return {**data, "ladder": candidates, "auto_ladder": {} if auto is None else auto}
        if isinstance(ladder, str):
            try:
                ladder = list(LADDERS[LadderPreset(ladder)])
            except ValueError:
                raise spec_error(
                    "ladder",
                    f"unknown ladder {ladder!r}; presets are: {', '.join(p.value for p in LadderPreset)}, "
                    "or auto",
                    "ladder",
                ) from None
        if isinstance(ladder, list):
            ladder = [_expand_rung(item, codec) if isinstance(item, str) else item for item in ladder]
        return {**data, "ladder": ladder}

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_overwrite(self.destination, self.overwrite)
        if self.type is GroupType.hls:
            self.segment_type = self.segment_type or SegmentType.ts
        elif self.segment_type is SegmentType.ts:
            raise spec_error("segment_type", f"{self.type.value} segments are fmp4", "segment_type")
        else:
            self.segment_type = SegmentType.fmp4
        key = (self.type, self.segment_type)
        if self.video_codec not in VIDEO_CODECS[key]:
            raise spec_error("group_codec", self._codec_message(self.video_codec.value), "video_codec")
        names: set[str] = set()
        for index, rung in enumerate(self.ladder):
            rung.codec = rung.codec or self.video_codec
            rung.preset = rung.preset or self.preset
            if rung.codec not in VIDEO_CODECS[key]:
                raise spec_error(
                    "group_codec", self._codec_message(rung.codec.value), f"ladder.{index}.codec"
                )
            check_crf(rung.codec, rung.crf, f"ladder.{index}.crf")
            if rung.codec is VideoCodec.h264 and rung.pix_fmt is PixFmt.yuv420p10le:
                raise spec_error("pix_fmt", "10-bit output needs hevc, av1 or vp9", f"ladder.{index}.pix_fmt")
            rung.level = check_profile_level(
                rung.codec, rung.profile, rung.level, rung.pix_fmt, f"ladder.{index}."
            )
            if rung.name in names:
                raise spec_error("name", f"rung name {rung.name!r} is used twice", f"ladder.{index}.name")
            names.add(rung.name or "")
        self._check_audio(names)
        return self

    def _codec_message(self, codec: str) -> str:
        key = (self.type, self.segment_type or SegmentType.fmp4)
        allowed = ", ".join(sorted(c.value for c in VIDEO_CODECS[key]))
        kind = f"{self.type.value} ({key[1].value} segments)"
        hint = "; or set segment_type fmp4" if key == (GroupType.hls, SegmentType.ts) else ""
        return f"{kind} cannot carry {codec} video; use one of {allowed}{hint}"

    def _check_audio(self, taken: set[str]) -> None:
        if self.audio is None:
            return
        key = (self.type, self.segment_type or SegmentType.fmp4)
        for index, rendition in enumerate(self.audio):
            if rendition.codec not in AUDIO_CODECS[key]:
                allowed = ", ".join(sorted(c.value for c in AUDIO_CODECS[key]))
                raise spec_error(
                    "group_codec",
                    f"{self.type.value} audio must be one of {allowed}, not {rendition.codec.value}",
                    f"audio.{index}.codec",
                )
            if rendition.name in taken:
                raise spec_error("name", f"name {rendition.name!r} is used twice", f"audio.{index}.name")
            taken.add(rendition.name or "")
        defaults = [r for r in self.audio if r.default]
        if len(defaults) > 1:
            raise spec_error("default", "at most one audio rendition can be the default", "audio")
        if self.audio and not defaults:
            self.audio[0].default = True
