"""Filter-graph text for the job's operations and picture fitting: pure functions of the spec and the probe.

Nothing a client typed reaches a filter graph as text. Numbers are formatted here; enums map to fixed
strings; the only free text is file paths of the attempt's own work folder (subtitles), and those go
through both escaping levels ffmpeg applies: the option parser (':' separates options) and then the
graph parser (',', ';', '[' and ']' separate filters and links).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.operations import (
    MIX_CHANNELS,
    ChannelMixSpec,
    Deinterlace,
    Denoise,
    LoudnessSpec,
    OperationsSpec,
    Position,
    ToneMapSpec,
    WatermarkSpec,
)
from framefleet.core.specbase import Fit
from framefleet.media.probe import AudioInfo, VideoInfo

_OPTION_SPECIAL = frozenset("\\':")
_GRAPH_SPECIAL = frozenset("\\'[],;")

DENOISE: dict[Denoise, str] = {
    Denoise.light: "hqdn3d=2:1.5:3:2.25",
    Denoise.medium: "hqdn3d=4:3:6:4.5",
    Denoise.strong: "hqdn3d=8:6:12:9",
}
MIX_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
# The filters each kind of operation needs from the ffmpeg build.
TONEMAP_FILTERS = frozenset({"zscale", "tonemap", "sidedata"})
# HDR static metadata the decoder attaches to every frame: left on tone-mapped frames, encoders would write
# it (SEI, mdcv/clli boxes) on SDR pictures.
HDR_SIDE_DATA = ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")


def escape_option_value(value: str) -> str:
    """Escape a filter option value (first level: the option parser splits on ':' and strips blanks)."""
    return "".join(f"\\{c}" if c in _OPTION_SPECIAL or c.isspace() else c for c in value)


def escape_graph_text(text: str) -> str:
    """Escape a filter's argument string for the filtergraph parser (second level)."""
    return "".join(f"\\{c}" if c in _GRAPH_SPECIAL else c for c in text)


def filter_text(name: str, options: list[tuple[str, str]]) -> str:
    """`name=k=v:k=v` with every value escaped for both levels: safe for any value."""
    if not options:
        return name
    joined = ":".join(f"{key}={escape_option_value(value)}" for key, value in options)
    return f"{name}={escape_graph_text(joined)}"


def num(value: float) -> str:
    """A number as ffmpeg reads it: integers without '.0', others to six significant digits."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


# Broadcast rates written as the exact fractions encoders expect.
NTSC_RATES: dict[float, str] = {
    23.976: "24000/1001",
    29.97: "30000/1001",
    59.94: "60000/1001",
    119.88: "120000/1001",
}


def fps_value(fps: float) -> str:
    """A frame rate for an fps= filter; broadcast rates become their exact fractions."""
    for rate, fraction in NTSC_RATES.items():
        if abs(fps - rate) < 0.0005:
            return fraction
    return num(fps)


def even(value: float) -> int:
    """Nearest even integer, halves rounding up, at least 2."""
    return max(2, math.floor(value / 2 + 0.5) * 2)


def _unsupported(message: str) -> JobFailure:
    return JobFailure(FailureClass.spec_unsupported, message)


@dataclass(frozen=True)
class Fitted:
    """Filters that put a picture into a box, and the size they produce."""

    filters: list[str]
    width: int
    height: int


def fit_picture(
    src_w: int, src_h: int, box_w: int, box_h: int, fit: Fit | None, *, even_sizes: bool
) -> Fitted:
    """Scale (and crop or pad) a src_w x src_h square-pixel picture into box_w x box_h by `fit`.

    `None` and `stretch` give exactly the box. Sizes stay even when the pixel format needs it.
    """
    rnd = even if even_sizes else (lambda v: max(1, math.floor(v + 0.5)))
    if fit in (None, Fit.stretch):
        return Fitted([f"scale={box_w}:{box_h}:flags=bicubic", "setsar=1"], box_w, box_h)
    down = min(box_w / src_w, box_h / src_h)
    if fit is Fit.fit:
        w, h = min(box_w, rnd(src_w * down)), min(box_h, rnd(src_h * down))
        return Fitted([f"scale={w}:{h}:flags=bicubic", "setsar=1"], w, h)
    if fit is Fit.pad:
        w, h = min(box_w, rnd(src_w * down)), min(box_h, rnd(src_h * down))
        x, y = (box_w - w) // 2, (box_h - h) // 2
        if even_sizes:
            x, y = x - x % 2, y - y % 2
        pad = f"pad={box_w}:{box_h}:{x}:{y}:color=black"
        return Fitted([f"scale={w}:{h}:flags=bicubic", pad, "setsar=1"], box_w, box_h)
    # fill: cover the box, then cut the centre.
    up = max(box_w / src_w, box_h / src_h)
    w, h = max(box_w, rnd(src_w * up)), max(box_h, rnd(src_h * up))
    x, y = (w - box_w) // 2, (h - box_h) // 2
    if even_sizes:
        x, y = x - x % 2, y - y % 2
    crop = f"crop={box_w}:{box_h}:{x}:{y}"
    return Fitted([f"scale={w}:{h}:flags=bicubic", crop, "setsar=1"], box_w, box_h)


@dataclass(frozen=True)
class Assets:
    """Files an operation needs, fetched into the work folder before planning (see worker/pipeline.py)."""

    watermark: Path | None = None
    watermark_size: tuple[int, int] | None = None
    subtitles: Path | None = None
    # loudnorm's first-pass measurement for each final channel count ({} for one that is silent)
    loudness: dict[tuple[int, int], dict[str, float]] | None = None  # (sound source, channels)


@dataclass
class PreVideo:
    """The shared picture chain: graph chains ending at `label`, the extra inputs they read, the result."""

    chains: list[str] = field(default_factory=list)
    label: str = ""
    inputs: list[list[str]] = field(default_factory=list)  # argv pieces, each ending in `-i path`
    video: VideoInfo | None = None  # the picture after the operations (what every output starts from)
    notes: dict[str, object] = field(default_factory=dict)
    filters: set[str] = field(default_factory=set)
    edited: bool = False  # an operation changes the picture (so the video cannot be copied)


def _deinterlace(mode: Deinterlace, video: VideoInfo) -> str | None:
    # Fields the probe found by looking (idet) are in frames that say nothing: bwdif would take them as
    # progressive (deint=interlaced) and as bottom field first (parity=auto), so both are stated.
    parity = video.field_parity or "auto"
    if mode is Deinterlace.on:
        return f"bwdif=mode=send_frame:parity={parity}:deint=all"
    if mode is Deinterlace.auto and video.interlaced:
        # Only the frames flagged interlaced are touched: mixed sources keep their progressive parts.
        which = "all" if video.field_parity else "interlaced"
        return f"bwdif=mode=send_frame:parity={parity}:deint={which}"
    if mode is Deinterlace.field_rate and video.interlaced:
        # Every frame gives two, so the rate stays constant (50i -> 50p) even where frames are progressive.
        return f"bwdif=mode=send_field:parity={parity}:deint=all"
    return None


def _crop(ops: OperationsSpec, width: int, height: int) -> tuple[str | None, int, int]:
    crop = ops.crop
    if crop is None:
        return None, width, height
    if crop.x + crop.width > width or crop.y + crop.height > height:
        raise _unsupported(
            f"crop {crop.width}x{crop.height} at {crop.x},{crop.y} does not fit the {width}x{height} picture"
        )
    return f"crop={crop.width}:{crop.height}:{crop.x}:{crop.y}:exact=1", crop.width, crop.height


ROTATE: dict[int, list[str]] = {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}


def tonemap_chain(spec: ToneMapSpec, out_pix_fmt: str = "yuv420p") -> list[str]:
    """HDR (PQ/HLG, BT.2020) to SDR BT.709 through linear light (zimg), as the ffmpeg docs describe."""
    return [
        "zscale=t=linear:npl=100",
        "format=gbrpf32le",
        "zscale=p=bt709",
        f"tonemap=tonemap={spec.algorithm.value}:desat=0",
        "zscale=t=bt709:m=bt709:r=tv",
        f"format={out_pix_fmt}",
        *(f"sidedata=mode=delete:type={kind}" for kind in HDR_SIDE_DATA),
    ]


def _watermark_xy(position: Position, margin: int) -> str:
    m = str(margin)
    x = {"left": m, "right": f"main_w-overlay_w-{m}", "mid": "(main_w-overlay_w)/2"}
    y = {"top": m, "bottom": f"main_h-overlay_h-{m}", "mid": "(main_h-overlay_h)/2"}
    place = {
        Position.top_left: (x["left"], y["top"]),
        Position.top_right: (x["right"], y["top"]),
        Position.bottom_left: (x["left"], y["bottom"]),
        Position.bottom_right: (x["right"], y["bottom"]),
        Position.middle: (x["mid"], y["mid"]),
    }[position]
    return f"x={place[0]}:y={place[1]}"


def watermark_size(spec: WatermarkSpec, image: tuple[int, int], frame_width: int) -> tuple[int, int]:
    """The watermark's drawn size: `scale` x the picture's width, aspect kept (the image's own without)."""
    if spec.scale is None:
        return image
    width = max(2, round(frame_width * spec.scale))
    return width, max(2, round(image[1] * width / image[0]))


def pre_video(
    ops: OperationsSpec | None,
    video: VideoInfo,
    source: str,
    assets: Assets,
    *,
    input_index: int,
) -> PreVideo:
    """The chain every picture output shares; `input_index` is the argv index the watermark input gets."""
    pre = PreVideo(label=source)
    width, height = video.display_width, video.display_height
    if ops is not None and not ops.auto_rotate:
        width, height = video.width, video.height  # the recorded rotation is ignored
    if ops is None:
        ops = OperationsSpec()  # the defaults, deinterlacing included
    filters: list[str] = []
    fps = video.fps
    if (deint := _deinterlace(ops.deinterlace, video)) is not None:
        filters.append(deint)
        pre.notes["deinterlaced"] = ops.deinterlace.value
        if ops.deinterlace is Deinterlace.field_rate and fps is not None:
            fps *= 2
    crop, width, height = _crop(ops, width, height)
    if crop is not None:
        filters.append(crop)
    if ops.rotate:
        filters += ROTATE[ops.rotate]
        if ops.rotate in (90, 270):
            width, height = height, width
    pix_fmt = video.pix_fmt
    tonemapped = False
    # `always` tone-maps the shared picture, for every output. HDR sources are otherwise tone-mapped on
    # each SDR branch only (planning.JobBuilder.picture_for), so 10-bit HEVC/AV1/VP9 outputs stay HDR.
    if ops.tonemap is not None and ops.tonemap.when == "always":
        filters += tonemap_chain(ops.tonemap)
        pix_fmt = "yuv420p"
        pre.notes["tonemapped"] = True
        tonemapped = True
    if ops.denoise is not None:
        filters.append(DENOISE[ops.denoise])
    chains: list[str] = []
    heads = f"[{source}]"
    if ops.watermark is not None:
        if assets.watermark is None or assets.watermark_size is None:
            raise ValueError("the watermark operation needs its image fetched first")
        wm_w, wm_h = watermark_size(ops.watermark, assets.watermark_size, width)
        if wm_w > width or wm_h > height:
            raise _unsupported(f"the watermark ({wm_w}x{wm_h}) is larger than the {width}x{height} picture")
        chains.append(f"{heads}{','.join(filters) if filters else 'null'}[vops]")
        wm_filters = [f"scale={wm_w}:{wm_h}:flags=bicubic", "format=rgba"]
        if ops.watermark.opacity < 1:
            wm_filters.append(f"colorchannelmixer=aa={num(ops.watermark.opacity)}")
        chains.append(f"[{input_index}:v]{','.join(wm_filters)}[wmark]")
        filters = [f"overlay={_watermark_xy(ops.watermark.position, ops.watermark.margin)}:format=auto"]
        heads = "[vops][wmark]"
        pre.inputs.append(["-i", str(assets.watermark)])
    if ops.subtitles is not None:
        if assets.subtitles is None:
            raise ValueError("the subtitles operation needs its file fetched first")
        style = [("filename", str(assets.subtitles))]
        if ops.subtitles.font_size is not None:
            style.append(("force_style", f"Fontsize={ops.subtitles.font_size}"))
        filters.append(filter_text("subtitles", style))
    label = source
    if filters:
        chains.append(f"{heads}{','.join(filters)}[vpre]")
        label = "vpre"
    pre.chains = chains
    pre.label = label
    pre.video = replace(
        _as_shown(video, width, height),
        pix_fmt=pix_fmt,
        fps=fps,
        interlaced=video.interlaced and deint is None,
    )
    if tonemapped:  # SDR BT.709 from here on: every tag written downstream says so
        pre.video = tonemapped_video(pre.video)
    # Only automatic deinterlacing leaves a stream copy possible: the copy keeps the source's fields.
    only_auto = ops.deinterlace is Deinterlace.auto and chains == [f"[{source}]{deint}[vpre]"]
    pre.edited = bool(chains) and not only_auto
    pre.filters = filter_names(";".join(chains))
    return pre


def tonemapped_video(video: VideoInfo) -> VideoInfo:
    """The picture as tonemap_chain leaves it: 8-bit BT.709, limited range, no HDR10 metadata."""
    return replace(
        video,
        color_primaries="bt709",
        color_transfer="bt709",
        color_matrix="bt709",
        color_range="tv",
        bit_depth=8,
        pix_fmt="yuv420p",
        hdr10=None,
    )


def _as_shown(video: VideoInfo, width: int, height: int) -> VideoInfo:
    """The probed video as the planner sees it after operations: upright, at its new size."""
    return replace(video, width=width, height=height, rotation=0)


def filter_names(graph: str) -> set[str]:
    """Names of the filters in a graph, reading escapes and quotes as ffmpeg does."""
    names: set[str] = set()
    token: list[str] = []
    depth_label = False
    quoted = False
    escaped = False

    def close() -> None:
        text = "".join(token).strip()
        if text:
            names.add(text.split("=", 1)[0].strip())
        token.clear()

    for char in graph:
        if escaped:
            escaped = False
            token.append("x")
            continue
        if char == "\\":
            escaped = True
            continue
        if quoted:
            quoted = char != "'"
            continue
        if char == "'":
            quoted = True
        elif depth_label:
            depth_label = char != "]"
        elif char == "[":
            depth_label = True
        elif char in ",;":
            close()
        else:
            token.append(char)
    close()
    return names


# 5.1 -> stereo (ITU-R BS.775 weights 1 : 0.707 : 0.707 for front, centre and surround), scaled so that a
# row sums to 1: full-scale sound in every channel at once cannot clip (7.7 dB of headroom against an
# unscaled mix). The LFE channel is left out, as BS.775 does: its content is meant to be redundant.
DOWNMIX_5_1_STEREO = "pan=stereo|c0=0.4142*c0+0.2929*c2+0.2929*c4|c1=0.4142*c1+0.2929*c2+0.2929*c5"
FIVE_ONE_LAYOUTS = frozenset({"5.1", "5.1(side)"})


def remix(audio: AudioInfo, channels: int) -> str:
    """The filter bringing `audio` to `channels`: the explicit 5.1 downmix, else the standard layout."""
    # Six channels without a named layout ("6 channels") are taken in 5.1 order, as ffmpeg's default is.
    unnamed = audio.layout is None or audio.layout.endswith("channels")
    if channels == 2 and audio.channels == 6 and (audio.layout in FIVE_ONE_LAYOUTS or unnamed):
        return DOWNMIX_5_1_STEREO
    return f"aformat=channel_layouts={layout_name(channels)}"


def channel_mix(spec: ChannelMixSpec, audio: AudioInfo) -> str:
    """`pan` with explicit gains, or a standard down/up-mix to the layout when no gains are given."""
    layout = MIX_LAYOUTS[MIX_CHANNELS[spec.layout]]
    if spec.gains is None:
        return remix(audio, MIX_CHANNELS[spec.layout])
    terms = []
    for out, row in enumerate(spec.gains):
        if len(row) > audio.channels:
            raise _unsupported(
                f"channel_mix gains row {out} has {len(row)} values; the input has {audio.channels} channels"
            )
        parts = [f"{num(g)}*c{i}" for i, g in enumerate(row) if g != 0] or ["0*c0"]
        terms.append(f"c{out}=" + "+".join(parts))
    return f"pan={layout}|" + "|".join(terms)


def lra_target(spec: LoudnessSpec, measured: dict[str, float]) -> float:
    """The range asked of loudnorm's second pass: the spec's, or the source's own when wider (capped at
    loudnorm's maximum, 50)."""
    # loudnorm only corrects linearly when the source's range fits the target range; otherwise it falls back
    # to dynamic compression and misses the target (a -27.9 LUFS, LRA 17.9 source stayed at -27.8).
    return min(50.0, max(spec.lra, math.ceil(measured["input_lra"] * 10 + 1) / 10))


def loudnorm(spec: LoudnessSpec, measured: dict[str, float] | None) -> str:
    """loudnorm's first (measuring) pass without `measured`, its second (linear) pass with it."""
    lra = spec.lra if measured is None else lra_target(spec, measured)
    options = [("I", num(spec.integrated)), ("TP", num(spec.true_peak)), ("LRA", num(lra))]
    if measured is None:
        options.append(("print_format", "json"))
    else:
        options += [
            ("measured_I", num(measured["input_i"])),
            ("measured_TP", num(measured["input_tp"])),
            ("measured_LRA", num(measured["input_lra"])),
            ("measured_thresh", num(measured["input_thresh"])),
            ("offset", num(measured["target_offset"])),
            ("linear", "true"),
        ]
    return filter_text("loudnorm", options)


def linear_gain(spec: LoudnessSpec, measured: dict[str, float]) -> float:
    """The static gain (dB) that brings the measured loudness to the target."""
    return spec.integrated - measured["input_i"]


def loudnorm_is_linear(spec: LoudnessSpec, measured: dict[str, float]) -> bool:
    """Whether loudnorm's second pass will really be a static gain, by the conditions loudnorm itself checks
    (af_loudnorm.c init): otherwise it silently switches to dynamic mode, which compresses and misses the
    target. A range of 0 (a steady sound, or under 3 s of it) is one of them; so is a gain that would lift
    the true peak over the ceiling."""
    return (
        measured["input_lra"] != 0
        and measured["input_lra"] <= lra_target(spec, measured)
        and measured["input_tp"] + linear_gain(spec, measured) <= spec.true_peak
    )


def peak_limited(spec: LoudnessSpec, gain: float, rate: int) -> list[str]:
    """A static `gain` (dB) followed by a true-peak limiter at the spec's ceiling, at four times `rate`
    (the caller brings the sound back to its rate).

    The limiter runs at the oversampling BS.1770 measures true peak with, so the peaks between samples are
    held under the ceiling too; `level=false` keeps alimiter from raising the level back up, and `latency`
    removes its look-ahead delay (the sound stays in sync).
    """
    limit = 10 ** (spec.true_peak / 20)
    return [
        f"volume={num(round(gain, 2))}dB",
        f"aresample={4 * rate}",
        f"alimiter=limit={num(round(limit, 4))}:attack=5:release=50:level=false:latency=true",
    ]


def correction(spec: LoudnessSpec, measured: dict[str, float], rate: int) -> list[str]:
    """The second pass for one layout: loudnorm's linear correction where loudnorm will apply it, the same
    static gain by `volume` where loudnorm would fall back to dynamic mode for its range alone, and the
    gain the measuring pass settled (`limited_gain_db`) plus a true-peak limiter where the gain would push
    the peak over the ceiling."""
    if "limited_gain_db" in measured:
        return peak_limited(spec, measured["limited_gain_db"], rate)
    if loudnorm_is_linear(spec, measured):
        return [loudnorm(spec, measured)]
    return [f"volume={num(round(linear_gain(spec, measured), 2))}dB"]


def layout_name(channels: int) -> str:
    """The standard layout of a channel count, in words ffmpeg reads (`6c` for one without a name)."""
    return MIX_LAYOUTS.get(channels) or f"{channels}c"


def loudness_chain(
    spec: LoudnessSpec,
    measured: dict[tuple[int, int], dict[str, float]],
    source: int,
    channels: int,
    rate: int,
    meter: Path,
) -> list[str]:
    """The tail of one sound branch: the correction for its final layout, then an ebur128 meter whose
    readings go to `meter` (the last frame's integrated loudness, range and true peaks are the stream's)."""
    found = measured.get((source, channels))
    if not found:  # {}: this layout measured silent, nothing to correct or to check
        return []
    layout = layout_name(channels)
    return [
        # loudnorm works at 192 kHz, the limiter at four times the rate; bring the sound back to the rate
        # and layout the encoder gets.
        *correction(spec, found, rate),
        f"aresample={rate}",
        f"aformat=channel_layouts={layout}",
        "ebur128=peak=true:metadata=1",
        filter_text("ametadata", [("mode", "print"), ("file", str(meter))]),
    ]


def fit_audio(picture_start: float, seconds: float | None, sound_start: float, rate: int) -> list[str]:
    """Line the sound up with the picture: start where the picture starts and last exactly `seconds` (the
    picture's length), so a 4.0 s picture with 4.6 s of sound neither ends in a still frame nor a blank.

    Both starts are on ffmpeg's clock (seconds after the file's earliest stream, after the trim). A sound
    that starts later gets silence before it, one that starts earlier loses its head: aresample fills or
    cuts to `first_pts` (async=1 also fills gaps of over 0.1 s inside the sound, keeping it in sync), then
    apad and atrim make the length.
    """
    if seconds is None or seconds <= 0:
        return []
    head = []
    if abs(sound_start - picture_start) > 0.001:
        head = [f"aresample=async=1:first_pts={round(picture_start * rate)}"]
    return [*head, f"apad=whole_dur={num(seconds)}", f"atrim=duration={num(seconds)}"]


def pre_audio(ops: OperationsSpec | None, audio: AudioInfo) -> tuple[list[str], AudioInfo]:
    """Filters every sound output shares, and the sound they produce.

    Loudness is not among them: a downmix changes loudness (by several LU either way, with the
    headroom-scaled 5.1 downmix), so each output's branch normalises its own final layout (loudness_chain).
    """
    if ops is None:
        return [], audio
    filters: list[str] = []
    if ops.channel_mix is not None:
        filters.append(channel_mix(ops.channel_mix, audio))
        channels = MIX_CHANNELS[ops.channel_mix.layout]
        audio = replace(audio, channels=channels, layout=MIX_LAYOUTS[channels])
    if filters:
        # Pin the shared chain's layout: the `asplit` after it is negotiated as one, so a branch asking for
        # stereo could otherwise make every branch stereo, 5.1 included.
        filters.append(filter_text("aformat", [("channel_layouts", audio.layout or f"{audio.channels}c")]))
    return filters, audio
