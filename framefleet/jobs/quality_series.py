"""Per-frame quality logs thinned for a chart (pure)."""

from __future__ import annotations

import math
from typing import Any

# The order a chart prefers its headline metric in.
METRICS = ("vmaf", "vmaf_phone", "psnr", "psnr_yuv", "ssim")


def thin(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most `limit` points: each span of frames keeps its lowest score (a dip never vanishes)."""
    if len(points) <= limit:
        return points
    span = math.ceil(len(points) / limit)
    return [min(points[i : i + span], key=lambda p: p[1]) for i in range(0, len(points), span)]


def series(document: dict[str, Any], *, points: int) -> dict[str, Any]:
    """The metrics of a unified quality log (media/quality.py write_log) as [time, score] lists."""
    frames = document.get("frames") or []
    found = [m for m in METRICS if any(f.get(m) is not None for f in frames)]
    lines = {
        metric: thin(
            [(round(f["time"], 3), round(f[metric], 3)) for f in frames if f.get(metric) is not None], points
        )
        for metric in found
    }
    return {
        "fps": document.get("fps"),
        "metric": found[0] if found else None,
        "summary": document.get("summary") or {},
        "series": {metric: [list(p) for p in line] for metric, line in lines.items()},
    }
