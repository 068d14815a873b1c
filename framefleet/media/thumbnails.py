"""Thumbnails, sprite sheets with their WebVTT map, and the poster frame: graph branches and the VTT text.

Each is a branch of the job's one graph. Frames are picked by timestamp, not by counting, so variable
frame rates and trims pick the same moments: "the first frame at or after T", and for "every N seconds"
the first frame of each N-second bucket, which never drifts however long the video is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from framefleet.core.artifacts import PosterSpec, SpriteSpec, ThumbnailSpec
from framefleet.core.specbase import IMAGE_EXTENSIONS, ImageFormat, VideoCodec
from framefleet.media.encoders import Family, VideoEncode, video_encoder_args
from framefleet.media.filters import even, filter_text, num

IMAGE_CODECS: dict[ImageFormat, VideoCodec] = {
    ImageFormat.jpeg: VideoCodec.jpeg,
    ImageFormat.webp: VideoCodec.webp,
    ImageFormat.png: VideoCodec.png,
}
# Encoders of single pictures (libwebp_anim is for animations).
PICTURE_ENCODERS: dict[ImageFormat, str] = {
    ImageFormat.jpeg: "mjpeg",
    ImageFormat.webp: "libwebp",
    ImageFormat.png: "png",
}
# The pixels (format, range) of a sprite sheet's tiles, set in the graph rather than left to ffmpeg's choice
# for the encoder (the same for 4:2:0 sources): tiles staged raw by a split job's chunks and tiled at the
# join are then the very pixels an unsplit job tiles, and the sheets the same bytes.
TILE_PIXELS: dict[ImageFormat, tuple[str, str]] = {
    ImageFormat.jpeg: ("yuvj420p", "pc"),
    ImageFormat.webp: ("yuv420p", "tv"),
    ImageFormat.png: ("rgb24", "pc"),
}
POSTER_WINDOW_FRAMES = 30  # frames the thumbnail filter compares when it picks the poster
POSTER_AT = 0.10  # the automatic poster looks from 10 % in
EPSILON = 1e-6  # seconds; far below a frame, above float rounding of timestamps


def at_times(times: list[float]) -> str:
    """`select` keeping the first frame at or after each time."""
    # Times are nudged back by a microsecond: t = pts x time_base can land a hair under an exact time.
    marks = [num(round(max(0.0, t - EPSILON), 9)) for t in times]
    terms = [f"gte(t,{m})*(isnan(prev_t)+lt(prev_t,{m}))" for m in marks]
    return filter_text("select", [("expr", "+".join(terms))])


def every(seconds: float) -> str:
    """`select` keeping the first frame of each `seconds`-long bucket."""
    n = num(seconds)
    bucket = f"floor(t/{n}+{EPSILON})"
    previous = f"floor(prev_t/{n}+{EPSILON})"
    return filter_text("select", [("expr", f"isnan(prev_t)+gt({bucket},{previous})")])


def picture_size(spec_w: int | None, spec_h: int | None, src_w: int, src_h: int) -> tuple[int, int]:
    """Asked size, or the source's, keeping the aspect when one side is given; always even."""
    if spec_w is not None and spec_h is not None:
        return even(spec_w), even(spec_h)
    if spec_w is not None:
        return even(spec_w), even(spec_w * src_h / src_w)
    if spec_h is not None:
        return even(spec_h * src_w / src_h), even(spec_h)
    return even(src_w), even(src_h)


def picture_args(fmt: ImageFormat, quality: int) -> list[str]:
    """Encoder options for single pictures (not animations)."""
    enc = VideoEncode(codec=IMAGE_CODECS[fmt], image_quality=None if fmt is ImageFormat.png else quality)
    args = video_encoder_args(enc, Family.cpu)
    if fmt is ImageFormat.webp:
        args = ["-c:v", PICTURE_ENCODERS[fmt], "-quality", str(quality)]
    return args


@dataclass
class PicturePlan:
    """One picture deliverable: its branch filters, where ffmpeg writes, and what each file shows."""

    kind: str  # thumbnails | sprites | poster
    name: str
    folder: Path
    pattern: str  # file name pattern inside the folder (ffmpeg's %05d for sequences)
    filters: list[str]
    output_args: list[str]
    width: int
    height: int
    fmt: ImageFormat
    times: list[float] = field(default_factory=list)  # nominal time of each picture (tile, for sprites)
    columns: int = 0
    rows: int = 0
    every_seconds: float = 0.0
    dropped_times: list[float] = field(default_factory=list)
    label: str = ""  # the graph label its output maps (set by the planner)

    @property
    def extension(self) -> str:
        """File extension of the pictures."""
        return IMAGE_EXTENSIONS[self.fmt]


def bucket_times(every_seconds: float, duration: float | None) -> list[float]:
    """Nominal time of each `every_seconds` bucket of the video (one bucket when the duration is unknown)."""
    count = max(1, math.ceil((duration or every_seconds) / every_seconds))
    return [round(i * every_seconds, 6) for i in range(count)]


def scale_filters(width: int, height: int) -> list[str]:
    """Scale to the picture size, with square pixels."""
    return [f"scale={width}:{height}:flags=bicubic", "setsar=1"]


def plan_picture_sequence(
    kind: str,
    spec: ThumbnailSpec | SpriteSpec,
    folder: Path,
    src: tuple[int, int],
    *,
    select: str,
    times: list[float],
    digits: int,
    tile: tuple[int, int] | None = None,
) -> PicturePlan:
    """Branch and output for numbered pictures: the `select`ed frames, scaled, optionally tiled into sheets.

    `tile` is (columns, rows) for sprite sheets; `digits` pads the file number.
    """
    width, height = picture_size(spec.width, spec.height, *src)
    name = spec.name or kind
    columns, rows = tile or (0, 0)
    filters = [select, *scale_filters(width, height)]
    if tile is not None:
        filters += [f"format={TILE_PIXELS[spec.format][0]}", f"tile={columns}x{rows}"]
    args = ["-fps_mode", "passthrough", *picture_args(spec.format, spec.quality), "-f", "image2"]
    return PicturePlan(
        kind=kind,
        name=name,
        folder=folder,
        pattern=f"{name}_%0{digits}d.{IMAGE_EXTENSIONS[spec.format]}",
        filters=filters,
        output_args=args,
        width=width,
        height=height,
        fmt=spec.format,
        times=times,
        columns=columns,
        rows=rows,
        every_seconds=spec.every_seconds or 0.0,
    )


def plan_thumbnails(
    spec: ThumbnailSpec, folder: Path, duration: float | None, src: tuple[int, int]
) -> PicturePlan:
    """Branch and output for a set of thumbnails."""
    if spec.times is not None:
        times = [t for t in spec.times if duration is None or t < duration]
        select = at_times(times or [0.0])
    else:
        assert spec.every_seconds is not None
        times = bucket_times(spec.every_seconds, duration)
        select = every(spec.every_seconds)
    plan = plan_picture_sequence("thumbnails", spec, folder, src, select=select, times=times, digits=5)
    plan.dropped_times = [t for t in spec.times or [] if duration is not None and t >= duration]
    return plan


def plan_sprites(spec: SpriteSpec, folder: Path, duration: float | None, src: tuple[int, int]) -> PicturePlan:
    """Branch and output for sprite sheets: tiles every N seconds, `columns` x `rows` per sheet."""
    return plan_picture_sequence(
        "sprites",
        spec,
        folder,
        src,
        select=every(spec.every_seconds),
        times=bucket_times(spec.every_seconds, duration),
        digits=3,
        tile=(spec.columns, spec.rows),
    )


def plan_sprite_tiles(
    spec: SpriteSpec, folder: Path, times: list[float], src: tuple[int, int]
) -> PicturePlan:
    """A split job's chunk: the tiles of a sprite set at `times` (its own), raw in the sheet's pixels, for
    the join to tile (chunks.sheet_argv)."""
    plan = plan_sprites(spec, folder, None, src)
    plan.kind = "tiles"
    plan.pattern = f"{plan.name}.nut"
    plan.filters = [at_times(times), *plan.filters[1:-1]]  # no `every` and no tiling: picked and scaled
    plan.output_args = ["-fps_mode", "passthrough", "-c:v", "rawvideo", "-f", "nut"]
    plan.times = times
    return plan


def poster_at(spec: PosterSpec, duration: float | None) -> float:
    """Where the poster is taken (`time`), or where its look for the most typical frame starts."""
    if spec.time is not None:
        return spec.time if duration is None else min(spec.time, max(0.0, duration - 0.001))
    return round((duration or 0.0) * POSTER_AT, 3)


def plan_poster(
    spec: PosterSpec,
    folder: Path,
    duration: float | None,
    src: tuple[int, int],
    *,
    start: float | None = None,
) -> PicturePlan:
    """Branch and output for the poster: at `time`, or the most typical of a few frames 10 % in.

    `start`: a split job's chunk holding the poster's frames: the time (its own) to look from instead.
    """
    width, height = picture_size(spec.width, spec.height, *src)
    name = spec.name or "poster"
    scale = scale_filters(width, height)
    at = poster_at(spec, duration) if start is None else start
    if spec.time is not None:
        filters = [at_times([at]), *scale]
    else:
        look = filter_text("select", [("expr", f"gte(t,{num(at)})")])
        filters = [look, *scale, f"thumbnail=n={POSTER_WINDOW_FRAMES}"]
    args = ["-frames:v", "1", *picture_args(spec.format, spec.quality), "-f", "image2", "-update", "1"]
    return PicturePlan(
        kind="poster",
        name=name,
        folder=folder,
        pattern=f"{name}.{IMAGE_EXTENSIONS[spec.format]}",
        filters=filters,
        output_args=args,
        width=width,
        height=height,
        fmt=spec.format,
        times=[at],
    )


def vtt_time(seconds: float) -> str:
    """WebVTT timestamp hh:mm:ss.ttt."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def sprite_vtt(plan: PicturePlan, sheet_names: list[str], tiles: int, duration: float | None) -> str:
    """The WebVTT map: one cue per tile, `sheet#xywh=x,y,w,h`, for hover previews."""
    per_sheet = plan.columns * plan.rows
    lines = ["WEBVTT", ""]
    for index in range(tiles):
        sheet = index // per_sheet
        if sheet >= len(sheet_names):
            break
        start = index * plan.every_seconds
        end = (index + 1) * plan.every_seconds
        if duration is not None:
            end = min(end, duration)
        if end <= start:
            break
        cell = index % per_sheet
        x, y = (cell % plan.columns) * plan.width, (cell // plan.columns) * plan.height
        lines += [
            f"{vtt_time(start)} --> {vtt_time(end)}",
            f"{sheet_names[sheet]}#xywh={x},{y},{plan.width},{plan.height}",
            "",
        ]
    return "\n".join(lines)
