"""Colour of every encoded picture: what the source is, what an output should be, and the filters between.

An untagged source is taken to be what players assume from its size: BT.709 from 1280 columns or 577
lines up, else BT.601: 625-line (PAL) primaries for 576- or 288-line pictures and 25/50 Hz ones, 525-line
(NTSC) primaries for the rest. A full-range source (yuvj,
or tagged `pc`) is brought to limited range, which is what video players and broadcast chains expect.
An HD-size output of a BT.601 source is converted to BT.709 (players shown an untagged HD picture assume
709); other outputs keep the source's colour, HDR included. Every encoded picture is tagged explicitly,
and so is every H.264/HEVC stream copy (in its parameter sets), so no player has to guess. Pure functions
of the probe and the output's size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from framefleet.media.probe import MATRICES, PRIMARIES, TRANSFERS, VideoInfo

HD_MIN_WIDTH, HD_MIN_HEIGHT = 1280, 577
# Matrix each primaries family is coded with.
MATRIX_FOR_PRIMARIES = {
    "bt709": "bt709",
    "smpte170m": "smpte170m",
    "bt470bg": "bt470bg",
    "bt2020": "bt2020nc",
    "smpte432": "bt709",  # Display P3 video keeps the BT.709 matrix
}
SD_MATRICES = frozenset({"smpte170m", "bt470bg"})
# What marks an SD picture as coming from a 625-line (PAL/SECAM) system: its line count or its field rate.
PAL_HEIGHTS = frozenset({576, 288})
PAL_RATES = (25.0, 50.0)
# swscale's names for the matrices above.
SWS_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "bt2020nc": "bt2020"}
# Bitstream filters rewriting the colour fields of a copied stream's parameter sets (VUI), pixels untouched.
TAGGING_BSF = {"h264": "h264_metadata", "hevc": "hevc_metadata"}
# ITU-T H.273 code points, by ffmpeg's names.
PRIMARIES_CODE = {name: code for code, name in PRIMARIES.items()}
TRANSFER_CODE = {name: code for code, name in TRANSFERS.items()}
MATRIX_CODE = {name: code for code, name in MATRICES.items()}
# Resampling for every scale of an encoded picture: lanczos, with exact rounding and full chroma
# interpolation (swscale's default, bicubic without them, softens and shifts chroma).
SCALE_FLAGS = "lanczos+accurate_rnd+full_chroma_int"


@dataclass(frozen=True)
class Colour:
    primaries: str
    transfer: str
    matrix: str
    full_range: bool


def is_hd(width: int, height: int) -> bool:
    """An HD-size picture, as players judge an untagged one."""
    return width >= HD_MIN_WIDTH or height >= HD_MIN_HEIGHT


def is_pal(video: VideoInfo) -> bool:
    """Whether an SD picture comes from a 625-line system: 576 or 288 lines, or 25/50 frames a second
    (a 640x480 or 352x240 picture at 25 Hz was made for PAL equipment, whatever its size)."""
    rate = video.nominal_fps or video.fps
    return video.height in PAL_HEIGHTS or (rate is not None and any(abs(rate - r) < 0.01 for r in PAL_RATES))


def source_colour(video: VideoInfo) -> Colour:
    """The source's colour: its tags, or what its size implies where it has none."""
    hd = is_hd(video.width, video.height)
    guessed = "bt709" if hd else "bt470bg" if is_pal(video) else "smpte170m"
    primaries = video.color_primaries if video.color_primaries in MATRIX_FOR_PRIMARIES else guessed
    matrix = video.color_matrix if video.color_matrix in SWS_MATRIX else MATRIX_FOR_PRIMARIES[primaries]
    transfer = video.color_transfer or ("bt709" if primaries in ("bt709", "smpte432") else "smpte170m")
    full = video.color_range == "pc" or (video.pix_fmt or "").startswith("yuvj")
    return Colour(primaries, transfer, matrix, full)


def target_colour(source: Colour, width: int, height: int) -> Colour:
    """The colour a width x height encoded picture of `source` is written in (always limited range)."""
    if source.matrix in SD_MATRICES and is_hd(width, height):
        return Colour("bt709", "bt709", "bt709", False)
    return replace(source, full_range=False)


def scale_options(source: Colour, target: Colour) -> str:
    """swscale options converting `source`'s range and matrix to `target`'s, written out in full."""
    return (
        f"flags={SCALE_FLAGS}"
        f":in_range={'full' if source.full_range else 'limited'}:out_range=limited"
        f":in_color_matrix={SWS_MATRIX[source.matrix]}:out_color_matrix={SWS_MATRIX[target.matrix]}"
    )


def tag_filter(colour: Colour) -> str:
    """`setparams` tagging frames with `colour` (metadata only): encoders and muxers write these tags."""
    return (
        f"setparams=color_primaries={colour.primaries}:color_trc={colour.transfer}"
        f":colorspace={colour.matrix}:range={'pc' if colour.full_range else 'tv'}"
    )


def encode_filters(video: VideoInfo, filters: list[str], width: int, height: int) -> list[str]:
    """An encoded picture's branch `filters` with its colour made right: every `scale` converts range and
    matrix explicitly, one is added when only the colour changes, and the frames end tagged."""
    source = source_colour(video)
    target = target_colour(source, width, height)
    options = scale_options(source, target)
    out = [f"{f.split(':flags=')[0]}:{options}" if f.startswith("scale=") else f for f in filters]
    if not any(f.startswith("scale=") for f in out) and (source.full_range or source.matrix != target.matrix):
        at = next((i for i, f in enumerate(out) if f.startswith(("pad=", "crop=", "setsar="))), len(out))
        out.insert(at, f"scale={width}:{height}:{options}")
    if fully_tagged(video) and target == source:
        return out  # the frames already say what they are, and encoders write it
    return [*out, tag_filter(target)]


def fully_tagged(video: VideoInfo) -> bool:
    """Whether the source states primaries, transfer, matrix and range itself."""
    return None not in (video.color_primaries, video.color_transfer, video.color_matrix, video.color_range)


def converts(scale: str) -> bool:
    """Whether a `scale` filter written by encode_filters changes range or matrix (not only the size)."""
    options = dict(part.split("=", 1) for part in scale.split(":") if "=" in part)
    return options.get("in_range") == "full" or options.get("in_color_matrix") != options.get(
        "out_color_matrix"
    )


def copy_tag_args(video: VideoInfo) -> list[str]:
    """`-bsf:v` writing the colour a copied H.264/HEVC stream is taken to be into its VUI, when the source
    does not say it all itself: the pixels stay as they are (full range stays full, and says so)."""
    bsf = TAGGING_BSF.get(video.codec)
    if bsf is None or fully_tagged(video):
        return []
    colour = source_colour(video)
    codes = (
        PRIMARIES_CODE.get(colour.primaries),
        TRANSFER_CODE.get(colour.transfer),
        MATRIX_CODE.get(colour.matrix),
    )
    if None in codes:
        return []  # a colour H.273 numbers differently from ffmpeg's names: leave the stream as it is
    primaries, transfer, matrix = codes
    return [
        "-bsf:v",
        f"{bsf}=colour_primaries={primaries}:transfer_characteristics={transfer}"
        f":matrix_coefficients={matrix}:video_full_range_flag={int(colour.full_range)}",
    ]
