"""A group's ladder against the real source: rung sizes, rungs dropped above the source, frame rate and GOP.

Rung heights name the short side of the picture (a 720p rung of a portrait video is 720 wide), so a
ladder fits landscape and portrait sources alike. A rung larger than the source would only upscale:
it is dropped and reported. If every rung is larger, the smallest one is kept at the source's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from framefleet.core.ladders import GroupSpec, RenditionSpec
from framefleet.media.filters import even
from framefleet.media.probe import VideoInfo

# Frame rates a variable-rate source is snapped to when close (exact broadcast fractions as floats).
STANDARD_RATES = (24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 48.0, 50.0, 60000 / 1001, 60.0)
SNAP_TOLERANCE = 0.03
KEYFRAME_SECONDS = 2.0  # the longest keyframe interval of a ladder


@dataclass(frozen=True)
class ResolvedRung:
    spec: RenditionSpec
    width: int
    height: int


@dataclass
class ResolvedLadder:
    rungs: list[ResolvedRung]
    fps: float
    gop: int
    segment_seconds: float  # the real segment length: gop / fps
    dropped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    needs_fps_filter: bool = False


def constant_rate(video: VideoInfo) -> float:
    """The standard frame rate a variable-rate source is made constant at: its declared rate when that is
    (close to) a standard one, else the standard rate nearest its average. Never the average itself: a
    phone clip averaging 27.204 fps would give 1.985 s segments and an odd rate no screen runs at."""
    average = video.fps or 25.0
    for rate in (video.nominal_fps, average):
        if rate:
            near = min(STANDARD_RATES, key=lambda r: abs(r - rate))
            if abs(near - rate) / near <= SNAP_TOLERANCE:
                return near
    return min(STANDARD_RATES, key=lambda r: abs(r - average))


def group_fps(group: GroupSpec, video: VideoInfo) -> tuple[float, list[str]]:
    """The ladder's constant frame rate: the group's, else the source's (snapped when it varies)."""
    notes: list[str] = []
    source = video.fps or 25.0
    if video.vfr:
        source = constant_rate(video)
        notes.append(f"variable frame rate source made constant at {source:.3f} fps")
    if group.fps is None:
        return source, notes
    if group.fps > source + 1e-3:
        notes.append(f"fps {group.fps:g} is above the source's {source:.3f}: kept at the source's rate")
        return source, notes
    return group.fps, notes


def keyframe_interval(segment_frames: int, fps: float) -> int:
    """Frames between keyframes: the longest even split of a segment that is at most KEYFRAME_SECONDS.

    Players join, switch and seek at keyframes, so 2 s keeps start-up and switching quick even with long
    segments; the interval divides the segment exactly, so every segment still starts on one.
    """
    longest = max(1, round(KEYFRAME_SECONDS * fps))  # whole frames: 60 at 29.97 fps, not 59.94
    parts = max(1, math.ceil(segment_frames / longest))
    while segment_frames % parts:
        parts += 1
    return segment_frames // parts


def rung_size(rung: RenditionSpec, src_w: int, src_h: int) -> tuple[int, int]:
    """The rung's picture size for a src_w x src_h (upright, square-pixel) source."""
    if rung.width is not None and rung.height is not None:
        return rung.width, rung.height
    aspect = src_w / src_h
    if rung.height is not None:
        short = rung.height
        if src_w >= src_h:
            return even(short * aspect), short
        return short, even(short / aspect)
    assert rung.width is not None
    return rung.width, even(rung.width / aspect)


def _above(size: tuple[int, int], src_w: int, src_h: int) -> bool:
    return size[0] > src_w or size[1] > src_h


def resolve_ladder(group: GroupSpec, video: VideoInfo) -> ResolvedLadder:
    """Sizes for each rung of `group` from `video` (as the operations leave it), dropping upscales."""
    src_w = even(video.width * video.sample_aspect_ratio) if video.sample_aspect_ratio != 1 else video.width
    src_h = video.height
    kept: list[ResolvedRung] = []
    dropped: list[dict[str, str]] = []
    for rung in group.ladder:
        size = rung_size(rung, src_w, src_h)
        if _above(size, src_w, src_h):
            dropped.append(
                {
                    "name": rung.name or "",
                    "reason": f"{size[0]}x{size[1]} is above the {src_w}x{src_h} source",
                }
            )
            continue
        kept.append(ResolvedRung(rung, *size))
    notes: list[str] = []
    if not kept:
        smallest = min(group.ladder, key=lambda r: math.prod(rung_size(r, src_w, src_h)))
        width, height = src_w - src_w % 2, src_h - src_h % 2
        kept.append(ResolvedRung(smallest, width, height))
        dropped = [d for d in dropped if d["name"] != smallest.name]
        notes.append(f"every rung is above the source: {smallest.name} kept at the source's {width}x{height}")
    fps, fps_notes = group_fps(group, video)
    segment_frames = max(1, round(group.segment_seconds * fps))
    gop = keyframe_interval(segment_frames, fps)
    needs_fps = video.vfr or video.fps is None or abs((video.fps or 0) - fps) > 1e-3
    return ResolvedLadder(
        rungs=kept,
        fps=fps,
        gop=gop,
        segment_seconds=segment_frames / fps,
        dropped=dropped,
        notes=notes + fps_notes,
        needs_fps_filter=needs_fps,
    )
