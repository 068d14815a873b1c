"""Codec and container rules shared by plain outputs and ladder rungs (pure, no ffmpeg involved)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PlainSerializer

from framefleet.core.specbase import AudioCodec, Container, PixFmt, Profile, VideoCodec, spec_error


def _whole_as_int(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# x264 and x265 take a fractional crf (quarter steps here); a whole one is written back as typed (23).
Crf = Annotated[float, Field(ge=0, le=63, multiple_of=0.25), PlainSerializer(_whole_as_int)]

IMAGE_CODECS = frozenset({VideoCodec.gif, VideoCodec.webp, VideoCodec.png, VideoCodec.jpeg})
AUDIO_ONLY_CONTAINERS = frozenset({Container.m4a, Container.mp3, Container.opus, Container.flac})
PICTURE_CONTAINERS = frozenset({Container.gif, Container.webp, Container.images})

# What each container can hold. `copy` is checked against the probed input at run time.
_AV = frozenset({VideoCodec.h264, VideoCodec.hevc, VideoCodec.av1, VideoCodec.vp9})
CONTAINER_VIDEO: dict[Container, frozenset[VideoCodec]] = {
    Container.mp4: _AV,
    Container.mkv: _AV,
    Container.mov: frozenset({VideoCodec.h264, VideoCodec.hevc}),
    Container.webm: frozenset({VideoCodec.vp9, VideoCodec.av1}),
    Container.ts: frozenset({VideoCodec.h264, VideoCodec.hevc}),
    Container.m4a: frozenset(),
    Container.mp3: frozenset(),
    Container.opus: frozenset(),
    Container.flac: frozenset(),
    Container.gif: frozenset({VideoCodec.gif}),
    Container.webp: frozenset({VideoCodec.webp}),
    Container.images: frozenset({VideoCodec.jpeg, VideoCodec.png, VideoCodec.webp}),
}
CONTAINER_AUDIO: dict[Container, frozenset[AudioCodec]] = {
    Container.mp4: frozenset({AudioCodec.aac, AudioCodec.mp3, AudioCodec.opus}),
    Container.mkv: frozenset({AudioCodec.aac, AudioCodec.mp3, AudioCodec.opus, AudioCodec.flac}),
    Container.mov: frozenset({AudioCodec.aac, AudioCodec.mp3}),
    Container.webm: frozenset({AudioCodec.opus}),
    Container.ts: frozenset({AudioCodec.aac, AudioCodec.mp3}),
    Container.m4a: frozenset({AudioCodec.aac}),
    Container.mp3: frozenset({AudioCodec.mp3}),
    Container.opus: frozenset({AudioCodec.opus}),
    Container.flac: frozenset({AudioCodec.flac}),
    Container.gif: frozenset(),
    Container.webp: frozenset(),
    Container.images: frozenset(),
}
DEFAULT_VIDEO: dict[Container, VideoCodec] = {
    Container.mp4: VideoCodec.h264,
    Container.mkv: VideoCodec.h264,
    Container.mov: VideoCodec.h264,
    Container.webm: VideoCodec.vp9,
    Container.ts: VideoCodec.h264,
    Container.m4a: VideoCodec.none,
    Container.mp3: VideoCodec.none,
    Container.opus: VideoCodec.none,
    Container.flac: VideoCodec.none,
    Container.gif: VideoCodec.gif,
    Container.webp: VideoCodec.webp,
    Container.images: VideoCodec.jpeg,
}
DEFAULT_AUDIO: dict[Container, AudioCodec] = {
    Container.mp4: AudioCodec.aac,
    Container.mkv: AudioCodec.aac,
    Container.mov: AudioCodec.aac,
    Container.webm: AudioCodec.opus,
    Container.ts: AudioCodec.aac,
    Container.m4a: AudioCodec.aac,
    Container.mp3: AudioCodec.mp3,
    Container.opus: AudioCodec.opus,
    Container.flac: AudioCodec.flac,
    Container.gif: AudioCodec.none,
    Container.webp: AudioCodec.none,
    Container.images: AudioCodec.none,
}
MAX_CRF: dict[VideoCodec, int] = {
    VideoCodec.h264: 51,
    VideoCodec.hevc: 51,
    VideoCodec.av1: 63,
    VideoCodec.vp9: 63,
}
OPUS_SAMPLE_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 96000})

PROFILES: dict[VideoCodec, frozenset[Profile]] = {
    VideoCodec.h264: frozenset({Profile.baseline, Profile.main, Profile.high}),
    VideoCodec.hevc: frozenset({Profile.main, Profile.main10}),
    VideoCodec.av1: frozenset({Profile.main}),
}
_H264_LEVELS: tuple[str, ...] = (
    "1.0",
    "1b",
    "1.1",
    "1.2",
    "1.3",
    "2.0",
    "2.1",
    "2.2",
    "3.0",
    "3.1",
    "3.2",
    "4.0",
    "4.1",
    "4.2",
)
_H264_LEVELS += ("5.0", "5.1", "5.2", "6.0", "6.1", "6.2")
LEVELS: dict[VideoCodec, tuple[str, ...]] = {
    VideoCodec.h264: _H264_LEVELS,
    VideoCodec.hevc: (
        "1.0",
        "2.0",
        "2.1",
        "3.0",
        "3.1",
        "4.0",
        "4.1",
        "5.0",
        "5.1",
        "5.2",
        "6.0",
        "6.1",
        "6.2",
    ),
}


def normalise_level(text: str) -> str:
    """'4' and '4.0' both become '4.0'; '1b' stays as it is."""
    text = text.strip()
    if text.isdigit():
        return f"{int(text)}.0"
    return text


def check_rate_control(
    crf: float | None, bitrate: int | None, maxrate: int | None, bufsize: int | None
) -> None:
    """crf or bitrate (not both); a VBV cap (maxrate, bufsize) goes with either and is at least the target."""
    if crf is not None and bitrate is not None:
        raise spec_error("rate_control", "set crf or bitrate_kbps, not both", "crf")
    if maxrate is not None and crf is None and bitrate is None:
        raise spec_error(
            "rate_control", "maxrate_kbps caps crf or bitrate_kbps: set one of them", "maxrate_kbps"
        )
    if maxrate is not None and bitrate is not None and maxrate < bitrate:
        raise spec_error("rate_control", "maxrate_kbps must be at least bitrate_kbps", "maxrate_kbps")
    if bufsize is not None and maxrate is None and bitrate is None:
        raise spec_error("rate_control", "bufsize_kbps needs maxrate_kbps or bitrate_kbps", "bufsize_kbps")


def check_profile_level(
    codec: VideoCodec, profile: Profile | None, level: str | None, pix_fmt: PixFmt | None, prefix: str = ""
) -> str | None:
    """Refuse a profile or level the codec does not have, or one that contradicts the pixel format.

    Returns the level in its normal spelling. `prefix` places the error's field (e.g. 'ladder.2.').
    """
    if profile is not None:
        allowed = PROFILES.get(codec, frozenset())
        if profile not in allowed:
            names = ", ".join(sorted(p.value for p in allowed)) or "none"
            raise spec_error("profile", f"{codec.value} profiles are: {names}", f"{prefix}profile")
        pix = pix_fmt or PixFmt.yuv420p
        if codec is VideoCodec.h264 and pix is not PixFmt.yuv420p:
            raise spec_error(
                "profile", f"h264 {profile.value} profile carries only yuv420p", f"{prefix}profile"
            )
        if codec is VideoCodec.hevc and profile is Profile.main and pix is not PixFmt.yuv420p:
            raise spec_error(
                "profile", f"hevc main profile carries only yuv420p, not {pix.value}", f"{prefix}profile"
            )
        if profile is Profile.main10 and pix not in (PixFmt.yuv420p, PixFmt.yuv420p10le):
            raise spec_error("profile", f"main10 carries 4:2:0 only, not {pix.value}", f"{prefix}profile")
    if level is None:
        return None
    if codec not in LEVELS:
        raise spec_error("level", f"level can be set for h264 and hevc, not {codec.value}", f"{prefix}level")
    normal = normalise_level(level)
    if normal not in LEVELS[codec]:
        raise spec_error("level", f"{codec.value} levels are: {', '.join(LEVELS[codec])}", f"{prefix}level")
    return normal


def check_crf(codec: VideoCodec, crf: float | None, field: str) -> None:
    """crf within the codec's scale, and whole where the encoder takes no fraction (SVT-AV1, libvpx)."""
    if crf is None or codec not in MAX_CRF:
        return
    if crf > MAX_CRF[codec]:
        raise spec_error("crf", f"crf for {codec.value} must be at most {MAX_CRF[codec]}", field)
    if codec in (VideoCodec.av1, VideoCodec.vp9) and not float(crf).is_integer():
        raise spec_error("crf", f"crf for {codec.value} must be a whole number", field)
