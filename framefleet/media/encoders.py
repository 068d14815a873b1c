"""Encoder arguments: which ffmpeg encoder runs a codec on which hardware, and with which options.

CPU encoders (x264, x265, SVT-AV1, libvpx, image encoders) and the hardware families NVENC, Quick Sync
and VA-API. Speed presets map onto each encoder's own scale. What an encoder cannot do (10-bit H.264,
VP9 on NVENC, 4:4:4 on Quick Sync...) is refused here with a reason, so the planner can route that
output to the CPU when the spec's fallback allows it, or refuse the job before ffmpeg starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from framefleet.core.specbase import PixFmt, Preset, Profile, VideoCodec
from framefleet.media.probe import Hdr10

DEFAULT_CRF: dict[VideoCodec, int] = {
    VideoCodec.h264: 23,
    VideoCodec.hevc: 28,
    VideoCodec.vp9: 32,
    VideoCodec.av1: 35,
}
DEFAULT_PRESET = Preset.medium
DEFAULT_PIX_FMT = PixFmt.yuv420p


class Family(StrEnum):
    cpu = "cpu"
    nvenc = "nvenc"
    qsv = "qsv"
    vaapi = "vaapi"


CPU_VIDEO: dict[VideoCodec, str] = {
    VideoCodec.h264: "libx264",
    VideoCodec.hevc: "libx265",
    VideoCodec.av1: "libsvtav1",
    VideoCodec.vp9: "libvpx-vp9",
    VideoCodec.gif: "gif",
    VideoCodec.webp: "libwebp_anim",
    VideoCodec.png: "png",
    VideoCodec.jpeg: "mjpeg",
}
HW_VIDEO: dict[Family, dict[VideoCodec, str]] = {
    Family.nvenc: {VideoCodec.h264: "h264_nvenc", VideoCodec.hevc: "hevc_nvenc", VideoCodec.av1: "av1_nvenc"},
    Family.qsv: {
        VideoCodec.h264: "h264_qsv",
        VideoCodec.hevc: "hevc_qsv",
        VideoCodec.av1: "av1_qsv",
        VideoCodec.vp9: "vp9_qsv",
    },
    Family.vaapi: {
        VideoCodec.h264: "h264_vaapi",
        VideoCodec.hevc: "hevc_vaapi",
        VideoCodec.av1: "av1_vaapi",
        VideoCodec.vp9: "vp9_vaapi",
    },
}
# Pixel formats each hardware encoder takes for a codec (4:2:2 is missing from most consumer silicon).
HW_PIX_FMTS: dict[Family, dict[VideoCodec, frozenset[PixFmt]]] = {
    Family.nvenc: {
        VideoCodec.h264: frozenset({PixFmt.yuv420p, PixFmt.yuv444p}),
        VideoCodec.hevc: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le, PixFmt.yuv444p}),
        VideoCodec.av1: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
    },
    Family.qsv: {
        VideoCodec.h264: frozenset({PixFmt.yuv420p}),
        VideoCodec.hevc: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
        VideoCodec.av1: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
        VideoCodec.vp9: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
    },
    Family.vaapi: {
        VideoCodec.h264: frozenset({PixFmt.yuv420p}),
        VideoCodec.hevc: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
        VideoCodec.av1: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
        VideoCodec.vp9: frozenset({PixFmt.yuv420p, PixFmt.yuv420p10le}),
    },
}
# Largest picture side each family encodes per codec.
HW_MAX_SIDE: dict[VideoCodec, int] = {VideoCodec.h264: 4096, VideoCodec.hevc: 8192, VideoCodec.av1: 8192}
HW_MAX_SIDE_DEFAULT = 8192
# What the hardware wants in system memory: NV12 for 8-bit, P010 for 10-bit.
HW_SW_FORMAT: dict[PixFmt, str] = {
    PixFmt.yuv420p: "nv12",
    PixFmt.yuv420p10le: "p010le",
    PixFmt.yuv444p: "yuv444p",
}

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
# NVENC p1 (fastest) .. p7 (best); x264's medium is about p4-p5 in quality per bit.
NVENC_PRESET: dict[Preset, str] = {
    Preset.ultrafast: "p1",
    Preset.superfast: "p2",
    Preset.veryfast: "p3",
    Preset.faster: "p3",
    Preset.fast: "p4",
    Preset.medium: "p5",
    Preset.slow: "p6",
    Preset.slower: "p7",
    Preset.veryslow: "p7",
}
# Quick Sync target usages, by name.
QSV_PRESET: dict[Preset, str] = {
    Preset.ultrafast: "veryfast",
    Preset.superfast: "veryfast",
    Preset.veryfast: "veryfast",
    Preset.faster: "faster",
    Preset.fast: "fast",
    Preset.medium: "medium",
    Preset.slow: "slow",
    Preset.slower: "slower",
    Preset.veryslow: "veryslow",
}
# VA-API has no presets; its compression level runs 1 (fastest) .. 7 on most drivers.
VAAPI_LEVEL: dict[Preset, int] = {
    Preset.ultrafast: 1,
    Preset.superfast: 1,
    Preset.veryfast: 2,
    Preset.faster: 3,
    Preset.fast: 3,
    Preset.medium: 4,
    Preset.slow: 5,
    Preset.slower: 6,
    Preset.veryslow: 7,
}
# Constant-quality scales differ: NVENC's -cq and QSV's global_quality sit close to x264's crf for H.264/HEVC.
HW_QUALITY_OFFSET: dict[VideoCodec, int] = {VideoCodec.h264: 0, VideoCodec.hevc: 0, VideoCodec.av1: 0}
# The finest constant-quality step used where an encoder takes fractional values (the spec's crf steps too).
FRACTIONAL_STEP = 0.25
# JPEG quality 1..100 onto mjpeg's qscale 31..2 (2 is best).
JPEG_QSCALE_RANGE = (2, 31)


@dataclass(frozen=True)
class QualityKnob:
    """An encoder's constant-quality option and its range; lower values mean better pictures."""

    option: str
    low: int
    high: int
    step: float = 1.0  # the finest change the encoder takes (x264, x265 and NVENC take fractional values)

    def value(self, crf: float) -> str:
        """`crf` as this knob's argument: rounded to the knob's step, without a trailing `.0`."""
        return f"{round(crf / self.step) * self.step:g}"


def quality_knob(family: Family, codec: VideoCodec) -> QualityKnob:
    """The constant-quality knob a spec's crf (or a quality target's search) sets on `family`'s encoder.

    CRF for x264, x265, SVT-AV1 and libvpx-vp9; CQ for NVENC; global_quality (ICQ) for Quick Sync; the
    QP of constant-QP mode for VA-API. Ranges are those the encoders accept.
    """
    if codec not in DEFAULT_CRF:
        raise ValueError(f"{codec.value} has no constant-quality knob")
    top = 63 if codec in (VideoCodec.av1, VideoCodec.vp9) else 51
    # x264's and x265's crf and NVENC's cq are floating-point options; SVT-AV1, libvpx, Quick Sync and
    # VA-API take whole numbers.
    fine = FRACTIONAL_STEP if codec in (VideoCodec.h264, VideoCodec.hevc) else 1.0
    if family is Family.cpu:
        # SVT-AV1's crf starts at 1; x264, x265 and libvpx take 0 (lossless for x264 8-bit).
        return QualityKnob("crf", 1 if codec is VideoCodec.av1 else 0, top, fine)
    if family is Family.nvenc:
        return QualityKnob("cq", 0, top, FRACTIONAL_STEP)
    if family is Family.qsv:
        return QualityKnob("global_quality", 1, 51)
    return QualityKnob("qp", 0, top)


@dataclass(frozen=True)
class VideoEncode:
    """What one encoded video stream asks for, whatever runs it."""

    codec: VideoCodec
    crf: float | None = None
    bitrate_kbps: int | None = None
    maxrate_kbps: int | None = None
    bufsize_kbps: int | None = None
    preset: Preset | None = None
    profile: Profile | None = None
    level: str | None = None
    pix_fmt: PixFmt | None = None
    gop: int | None = None  # fixed keyframe interval in frames, no scene-cut keyframes (ladders)
    image_quality: int | None = None
    width: int = 0
    height: int = 0
    b_frames: int | None = None  # pinned B-frame count; None leaves it to the preset (or the driver)
    fps: float | None = None  # the stream's frame rate, for the level
    # HDR10 static metadata to write (HEVC SEI or AV1 metadata OBUs, and the muxer's mdcv/clli): set only for
    # a picture that stays HDR.
    hdr10: Hdr10 | None = None


# H.264 levels (ITU-T H.264 Table A-1): (level, max macroblocks/s, max frame size in macroblocks, max bit
# rate in kb/s for Main; High may use 1.25x). Without a level x264 picks one from its own settings: `slow`
# keeps 5 reference frames at 1080p, which only level 5.0 allows, and many TVs and phones refuse 5.0.
H264_LEVELS: tuple[tuple[str, int, int, int], ...] = (
    ("1.0", 1485, 99, 64),
    ("1.1", 3000, 396, 192),
    ("1.2", 6000, 396, 384),
    ("1.3", 11880, 396, 768),
    ("2.0", 11880, 396, 2000),
    ("2.1", 19800, 792, 4000),
    ("2.2", 20250, 1620, 4000),
    ("3.0", 40500, 1620, 10000),
    ("3.1", 108000, 3600, 14000),
    ("3.2", 216000, 5120, 20000),
    ("4.0", 245760, 8192, 20000),
    ("4.1", 245760, 8192, 50000),
    ("4.2", 522240, 8704, 50000),
    ("5.0", 589824, 22080, 135000),
    ("5.1", 983040, 36864, 240000),
    ("5.2", 2073600, 36864, 240000),
    ("6.0", 4177920, 139264, 240000),
    ("6.1", 8355840, 139264, 480000),
    ("6.2", 16711680, 139264, 800000),
)
# Each H.264 level's largest coded picture buffer (MaxCPB, Table A-1, kb for Baseline/Main; High 1.25x).
H264_MAX_CPB: dict[str, int] = {
    "1.0": 175,
    "1b": 350,
    "1.1": 500,
    "1.2": 1000,
    "1.3": 2000,
    "2.0": 2000,
    "2.1": 4000,
    "2.2": 4000,
    "3.0": 10000,
    "3.1": 14000,
    "3.2": 20000,
    "4.0": 25000,
    "4.1": 62500,
    "4.2": 62500,
    "5.0": 135000,
    "5.1": 240000,
    "5.2": 240000,
    "6.0": 240000,
    "6.1": 480000,
    "6.2": 800000,
}
H264_MAX_BR: dict[str, int] = {name: kbps for name, _, _, kbps in H264_LEVELS} | {"1b": 128}
# HEVC Main tier levels (ITU-T H.265 Table A.8): (level, max luma picture size, max luma samples/s, max
# bit rate in kb/s).
HEVC_LEVELS: tuple[tuple[str, int, int, int], ...] = (
    ("1", 36864, 552960, 128),
    ("2", 122880, 3686400, 1500),
    ("2.1", 245760, 7372800, 3000),
    ("3", 552960, 16588800, 6000),
    ("3.1", 983040, 33177600, 10000),
    ("4", 2228224, 66846720, 12000),
    ("4.1", 2228224, 133693440, 20000),
    ("5", 8912896, 267386880, 25000),
    ("5.1", 8912896, 534773760, 40000),
    ("5.2", 8912896, 1069547520, 60000),
    ("6", 35651584, 1069547520, 60000),
    ("6.1", 35651584, 2139095040, 120000),
    ("6.2", 35651584, 4278190080, 240000),
)


def level_for(enc: VideoEncode) -> str | None:
    """The lowest H.264/HEVC level that holds the stream's size, frame rate and VBV cap; None for other
    codecs or an unknown size. An uncapped constant-quality stream is sized by picture and rate alone.
    """
    if enc.width <= 0 or enc.height <= 0 or enc.codec not in (VideoCodec.h264, VideoCodec.hevc):
        return None
    fps = enc.fps or 30.0
    peak = enc.maxrate_kbps or enc.bitrate_kbps or 0
    if enc.codec is VideoCodec.h264:
        mbs = -(-enc.width // 16) * -(-enc.height // 16)
        high = 1.25 if _h264_high(enc) else 1.0
        for name, mbps, frame, kbps in H264_LEVELS:
            # A side may not exceed sqrt(8 x max frame size) macroblocks (Annex A.3.1).
            side_ok = max(-(-enc.width // 16), -(-enc.height // 16)) ** 2 <= 8 * frame
            if mbs <= frame and side_ok and mbs * fps <= mbps * 1.0001 and peak <= kbps * high:
                return name
        return H264_LEVELS[-1][0]
    luma = enc.width * enc.height
    for name, size, rate, kbps in HEVC_LEVELS:
        side_ok = max(enc.width, enc.height) ** 2 <= 8 * size
        if luma <= size and side_ok and luma * fps <= rate * 1.0001 and peak <= kbps:
            return name
    return HEVC_LEVELS[-1][0]


def _h264_high(enc: VideoEncode) -> bool:
    """Whether an H.264 stream is High profile (whose levels allow 1.25x the bit rate and buffer): named so,
    or left to the encoder, which writes High unless x264's ultrafast makes it Constrained Baseline."""
    if enc.profile is not None:
        return enc.profile is Profile.high
    return enc.preset is not Preset.ultrafast


def level_vbv(enc: VideoEncode) -> tuple[int, int] | None:
    """The VBV cap (maxrate kb/s, bufsize kb) of an uncapped constant-quality H.264 stream: its level's
    MaxBR and MaxCPB. x264 writes the level it is given but, unlike x265, enforces none of its rate limits
    without a VBV: a noisy 240p CRF stream ran at 10 Mb/s under a level 1.3 (768 kb/s) label."""
    if enc.codec is not VideoCodec.h264 or enc.bitrate_kbps is not None or enc.maxrate_kbps is not None:
        return None
    level = enc.level or level_for(enc)
    if level is None:
        return None
    factor = 1.25 if _h264_high(enc) else 1.0
    return round(H264_MAX_BR[level] * factor), round(H264_MAX_CPB[level] * factor)


# x264 and x265 put the first frame's decode time this many frames before its presentation time when
# they use B-frames: with B-pyramid (every x264 preset but ultrafast, every x265 preset) a B-frame is itself
# a reference, so two frames wait. x264 keeps fewer B-frames than keyint-1, and a pyramid needs two.
PYRAMID_DELAY = 2


def reorder_delay_frames(enc: VideoEncode, family: Family) -> int:
    """How many frames before its presentation time the encoder stamps the first frame's decode time.

    Known at plan time, so a group can line its sound up with the first decode time (HLS TS). A pure
    function of the settings this module writes; tests/media/test_reorder.py checks it against real encodes.
    Hardware encoders take their B-frame layout from the driver's preset tables unless `b_frames` pins it,
    so for them only a pinned zero is known.
    """
    if enc.b_frames == 0 or enc.gop == 1:
        return 0
    if family is Family.cpu and enc.codec is VideoCodec.h264:
        if enc.preset is Preset.ultrafast or enc.profile is Profile.baseline:
            return 0  # no B-frames at all
        return 1 if enc.gop == 2 else PYRAMID_DELAY  # keyint 2: one B-frame, no pyramid
    if family is Family.cpu and enc.codec is VideoCodec.hevc:
        return PYRAMID_DELAY
    raise ValueError(f"the reorder delay of {encoder_name(family, enc.codec)} is unknown here")


def hw_refusal(family: Family, enc: VideoEncode) -> str | None:
    """Why `family` cannot encode `enc`, or None when it can."""
    encoders = HW_VIDEO.get(family, {})
    if enc.codec not in encoders:
        return f"{family.value} has no {enc.codec.value} encoder"
    pix = enc.pix_fmt or DEFAULT_PIX_FMT
    if pix not in HW_PIX_FMTS[family][enc.codec]:
        return f"{encoders[enc.codec]} cannot encode {pix.value}"
    if enc.codec is VideoCodec.h264 and enc.profile is Profile.baseline and family is Family.vaapi:
        return "h264_vaapi has no baseline profile (constrained baseline only)"
    side = HW_MAX_SIDE.get(enc.codec, HW_MAX_SIDE_DEFAULT)
    if max(enc.width, enc.height) > side:
        return f"{encoders[enc.codec]} encodes at most {side} pixels a side"
    return None


def encoder_name(family: Family, codec: VideoCodec) -> str:
    """The ffmpeg encoder for `codec` on `family`."""
    return CPU_VIDEO[codec] if family is Family.cpu else HW_VIDEO[family][codec]


class _Opts:
    """Option names for one stream: `-crf` for a file's only video stream, `-crf:v:2` inside a DASH output."""

    def __init__(self, stream: str | None) -> None:
        self.stream = stream

    def __call__(self, name: str, *, typed: bool = False) -> str:
        if self.stream is not None:
            return f"-{name}:{self.stream}"
        return f"-{name}:v" if typed else f"-{name}"


def _gop_args(opt: _Opts, enc: VideoEncode, family: Family) -> list[str]:
    if enc.gop is None:
        return []
    gop = str(enc.gop)
    args = [opt("g"), gop]
    # Forced keyframes on frame numbers: every rung gets the same frames, so keyframes align exactly.
    args += [opt("force_key_frames"), f"expr:eq(mod(n,{gop}),0)"]
    if family is Family.cpu:
        if enc.codec is VideoCodec.h264:
            args += [opt("keyint_min"), gop, opt("sc_threshold"), "0"]
        elif enc.codec is VideoCodec.vp9:
            args += [opt("keyint_min"), gop]
    elif family is Family.nvenc:
        args += [opt("forced-idr"), "1", opt("no-scenecut"), "1", opt("strict_gop"), "1"]
    elif family is Family.qsv:
        args += [opt("forced_idr"), "1", opt("idr_interval"), "0"]
    elif family is Family.vaapi:
        args += [opt("idr_interval"), "0"]
    return args


def _x265_params(enc: VideoEncode) -> str:
    # info=0: no user-data SEI naming x265's version and every option (it would sit in hvcC and the first
    # picture); the HDR10 SEI are separate messages and stay.
    params = ["log-level=error", "info=0"]
    if enc.gop is not None:
        params += [f"keyint={enc.gop}", f"min-keyint={enc.gop}", "scenecut=0", "open-gop=0"]
    level = enc.level or level_for(enc)
    if level is not None:
        params.append(f"level-idc={level}")
    if enc.hdr10 is not None:
        # Stated to x265 rather than left to frame side data: any filter that drops the side data would
        # otherwise lose the HDR10 SEI (and the mdcv/clli boxes the muxer derives from the encoder).
        params += enc.hdr10.x265_params()
    return ":".join(params)


def _svtav1_params(enc: VideoEncode) -> str:
    params: list[str] = []
    if enc.gop is not None:
        # Closed GOPs (key frames, not intra-only refreshes), no scene-change keyframes.
        params += ["irefresh-type=2", "scd=0"]
    if enc.hdr10 is not None:
        # Metadata OBUs in the bitstream itself: MP4 gets mdcv/clli from the frames' side data anyway, but
        # Matroska/WebM would carry no HDR10 metadata at all.
        params += enc.hdr10.svtav1_params()
    return ":".join(params)


def _rate_args(opt: _Opts, enc: VideoEncode, family: Family) -> list[str]:
    """Rate control: constant quality (optionally capped) or a target bitrate with a VBV cap."""
    args: list[str] = []
    codec = enc.codec
    if enc.bitrate_kbps is not None and family is Family.cpu and codec is VideoCodec.av1:
        if enc.gop is None and enc.maxrate_kbps is None:
            return [opt("b", typed=True), f"{enc.bitrate_kbps}k"]
        # SVT-AV1 takes a VBV cap only in CRF mode (capped CRF), so a capped or ladder AV1 stream is
        # constant quality under its cap (at least the target bitrate) rather than an uncapped target.
        maxrate = enc.maxrate_kbps or enc.bitrate_kbps
        crf = quality_knob(family, codec).value(enc.crf if enc.crf is not None else DEFAULT_CRF[codec])
        bufsize = enc.bufsize_kbps or 2 * enc.bitrate_kbps
        return [opt("crf"), crf, opt("maxrate"), f"{maxrate}k", opt("bufsize"), f"{bufsize}k"]
    if enc.bitrate_kbps is not None:
        kbps = enc.bitrate_kbps
        maxrate = enc.maxrate_kbps or kbps
        bufsize = enc.bufsize_kbps or 2 * kbps
        args += [opt("b", typed=True), f"{kbps}k"]
        if family is Family.nvenc:
            args = [opt("rc"), "vbr", *args]
        if family is Family.vaapi:
            args = [opt("rc_mode"), "VBR", *args]
        args += [opt("maxrate"), f"{maxrate}k", opt("bufsize"), f"{bufsize}k"]
        return args
    quality = enc.crf if enc.crf is not None else DEFAULT_CRF[codec]
    knob = quality_knob(family, codec)
    value = knob.value(quality + HW_QUALITY_OFFSET.get(codec, 0) if family is Family.nvenc else quality)
    if family is Family.cpu:
        args += [opt(knob.option), value]
        if codec is VideoCodec.vp9 and enc.maxrate_kbps is None:
            # Constant quality: without -b:v 0 libvpx treats crf as a cap on a default bitrate.
            args += [opt("b", typed=True), "0"]
        elif codec is VideoCodec.vp9:
            args += [opt("b", typed=True), f"{enc.maxrate_kbps}k"]  # constrained quality
    elif family is Family.nvenc:
        args += [opt("rc"), "vbr", opt(knob.option), value, opt("b", typed=True), "0"]
    elif family is Family.qsv:
        args += [opt(knob.option), value]
    elif family is Family.vaapi:
        args += [opt("rc_mode"), "QVBR" if enc.maxrate_kbps else "CQP", opt(knob.option), value]
    if enc.maxrate_kbps is not None and codec is not VideoCodec.vp9:
        bufsize = enc.bufsize_kbps or 2 * enc.maxrate_kbps
        args += [opt("maxrate"), f"{enc.maxrate_kbps}k", opt("bufsize"), f"{bufsize}k"]
    elif family is Family.cpu and (cap := level_vbv(enc)) is not None:
        args += [opt("maxrate"), f"{cap[0]}k", opt("bufsize"), f"{cap[1]}k"]
    return args


def _preset_args(opt: _Opts, enc: VideoEncode, family: Family) -> list[str]:
    preset = enc.preset or DEFAULT_PRESET
    codec = enc.codec
    if family is Family.nvenc:
        return [opt("preset"), NVENC_PRESET[preset], opt("tune"), "hq"]
    if family is Family.qsv:
        return [opt("preset"), QSV_PRESET[preset]]
    if family is Family.vaapi:
        return [opt("compression_level"), str(VAAPI_LEVEL[preset])]
    if codec in (VideoCodec.h264, VideoCodec.hevc):
        return [opt("preset"), preset.value]
    if codec is VideoCodec.vp9:
        deadline, cpu_used = VP9_SPEED[preset]
        return [opt("deadline"), deadline, opt("cpu-used"), str(cpu_used), opt("row-mt"), "1"]
    if codec is VideoCodec.av1:
        return [opt("preset"), str(SVTAV1_PRESET[preset])]
    return []


def _profile_args(opt: _Opts, enc: VideoEncode, family: Family) -> list[str]:
    args: list[str] = []
    if enc.profile is not None:
        args += [opt("profile", typed=True), enc.profile.value]
    level = enc.level or level_for(enc)
    if level is not None and not (family is Family.cpu and enc.codec is VideoCodec.hevc):
        args += [opt("level", typed=True), level]
    return args


def _image_args(opt: _Opts, enc: VideoEncode) -> list[str]:
    quality = enc.image_quality
    if enc.codec is VideoCodec.jpeg:
        low, high = JPEG_QSCALE_RANGE
        q = 80 if quality is None else quality
        qscale = round(high - (high - low) * (q - 1) / 99)
        return [opt("q", typed=True), str(qscale), opt("pix_fmt"), "yuvj420p", opt("color_range"), "pc"]
    if enc.codec is VideoCodec.webp:
        return [opt("quality"), str(80 if quality is None else quality), opt("loop"), "0"]
    if enc.codec is VideoCodec.gif:
        return [opt("loop"), "0"]
    return []


# What the hardware encoders would write on their own: the captions (CEA-608/708) decoded with the source's
# frames, and on VA-API H.264 an SEI naming the driver and library versions. x264's SEI is removed and x265
# copies no captions, so without these no output of any family carries captions (HLS masters say
# CLOSED-CAPTIONS=NONE) or an encoder version. VA-API keeps the SEI players and HDR need.
HW_SEI: dict[tuple[Family, VideoCodec], tuple[str, str]] = {
    (Family.nvenc, VideoCodec.h264): ("a53cc", "0"),
    (Family.nvenc, VideoCodec.hevc): ("a53cc", "0"),
    (Family.nvenc, VideoCodec.av1): ("a53cc", "0"),
    (Family.qsv, VideoCodec.h264): ("a53cc", "0"),
    (Family.vaapi, VideoCodec.h264): ("sei", "timing+recovery_point"),
    (Family.vaapi, VideoCodec.hevc): ("sei", "hdr"),
}


def _sei_args(opt: _Opts, enc: VideoEncode, family: Family) -> list[str]:
    option = HW_SEI.get((family, enc.codec))
    return [] if option is None else [opt(option[0]), option[1]]


def video_encoder_args(
    enc: VideoEncode, family: Family, *, threads: int = 0, stream: str | None = None, hw_frames: bool = False
) -> list[str]:
    """Options after `-map` for one video stream: encoder, rate control, speed, profile, GOP, pixel format.

    `stream` is the stream specifier inside a multi-stream output ('v:2'); None for a file's only video.
    `hw_frames`: the frames already sit in GPU memory in the encoder's format (CUDA decode + scale_cuda).
    """
    opt = _Opts(stream)
    name = encoder_name(family, enc.codec)
    args = [opt("c", typed=True), name]
    if enc.codec in (VideoCodec.gif, VideoCodec.webp, VideoCodec.png, VideoCodec.jpeg):
        return args + _image_args(opt, enc)
    args += _rate_args(opt, enc, family)
    args += _preset_args(opt, enc, family)
    if enc.b_frames is not None:
        args += [opt("bf", typed=True), str(enc.b_frames)]
    if family is Family.cpu and enc.codec is VideoCodec.hevc:
        args += [opt("x265-params"), _x265_params(enc)]
        if enc.gop is not None:
            args += [opt("forced-idr"), "1"]
    if family is Family.cpu and enc.codec is VideoCodec.h264:
        # x264 has no switch for the user-data SEI naming its version and every option: drop the SEI NAL
        # units (type 6). x264 writes no other SEI with these settings (no HRD, no intra refresh, no open
        # GOP), and AVC outputs carry no HDR or caption SEI (HDR sources are tone-mapped for them).
        args += [opt("bsf", typed=True), "filter_units=remove_types=6"]
    args += _sei_args(opt, enc, family)
    if family is Family.cpu and enc.codec is VideoCodec.av1 and (svt := _svtav1_params(enc)):
        args += [opt("svtav1-params"), svt]
    args += _profile_args(opt, enc, family)
    args += _gop_args(opt, enc, family)
    pix = enc.pix_fmt or DEFAULT_PIX_FMT
    if family is Family.cpu:
        args += [opt("pix_fmt"), pix.value]
    elif family is not Family.vaapi and not hw_frames:
        # VA-API frames arrive as hardware surfaces (uploaded in the graph); the others take system memory.
        args += [opt("pix_fmt"), HW_SW_FORMAT[pix]]
    if threads > 0 and family is Family.cpu:
        args += [opt("threads", typed=True), str(threads)]
    return args


@dataclass(frozen=True)
class HardwareSetup:
    """Process-wide options and graph tails a hardware family needs."""

    family: Family
    device: str | None = None  # /dev/dri/renderD128 for VA-API and Quick Sync

    def global_args(self) -> list[str]:
        """Device set-up before the first input."""
        if self.family is Family.vaapi:
            return [
                "-init_hw_device",
                f"vaapi=va:{self.device or '/dev/dri/renderD128'}",
                "-filter_hw_device",
                "va",
            ]
        if self.family is Family.qsv:
            device = f"qsv=qs:{self.device}" if self.device else "qsv=qs"
            return ["-init_hw_device", device, "-filter_hw_device", "qs"]
        return []

    def branch_tail(self, pix: PixFmt) -> list[str]:
        """Filters ending an encoder's branch: VA-API encoders need frames uploaded to the device."""
        if self.family is Family.vaapi:
            return [f"format={'p010le' if pix is PixFmt.yuv420p10le else 'nv12'}", "hwupload"]
        return []


# Decoders NVDEC runs (ffmpeg's codec names), for CUDA decoding straight into GPU memory.
NVDEC_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "vp8", "mpeg2video", "mpeg4", "vc1", "mjpeg"})
