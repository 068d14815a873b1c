"""A per-title ladder (`ladder: "auto"`), the pure part: from each candidate size's bitrate/quality curve,
measured on sample encodes, the rungs to encode (the process edge is worker/quality_search.py).

Every candidate size is encoded at a few crf values and scored at display size, so the sizes' curves share
one quality scale: at a low bitrate a small picture upscaled scores higher than a large one starved of bits,
at a high bitrate the large one wins. Their upper envelope (the convex hull of the measured points, in
practice) says which size to use at each bitrate. The top rung is the cheapest point of the envelope that
reaches `top_vmaf` (or the best one under `max_bitrate_kbps`), the bottom rung sits at `min_bitrate_kbps`
(or the cheapest point measured), and the rungs between are spaced evenly in log bitrate, each at the size
the envelope picks there and the crf that size's curve needs for that bitrate. Rungs closer than
MIN_RATIO in bitrate are not worth a rendition, so easy titles get fewer rungs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

from framefleet.core.ladders import AutoLadderSpec

# Sample crf values on the 0-51 scale (x264, x265; stretched for the 0-63 scales), from near-transparent
# to starved: the span a ladder's rungs use.
SAMPLE_CRFS = (20.0, 26.0, 32.0, 38.0)
# Neighbouring rungs at least this far apart in bitrate (1.5x: players switch in steps of about that).
MIN_RATIO = 1.5
GRID = 240  # bitrates tried along the envelope, evenly in log bitrate


@dataclass(frozen=True)
class Point:
    """One sample encode: a candidate size at one crf, its bitrate and its VMAF at display size."""

    rung: str
    width: int
    height: int
    crf: float
    kbps: float
    vmaf: float

    def view(self) -> dict[str, Any]:
        """The point as recorded on the group."""
        return {**asdict(self), "kbps": round(self.kbps, 1), "vmaf": round(self.vmaf, 3)}


@dataclass(frozen=True)
class Chosen:
    """A rung of the per-title ladder: the candidate size, the crf, and what the samples predict."""

    name: str
    rung: str  # the candidate it was made from
    crf: float
    kbps: float
    vmaf: float

    def view(self) -> dict[str, Any]:
        """The rung as recorded on the group."""
        return {**asdict(self), "kbps": round(self.kbps, 1), "vmaf": round(self.vmaf, 3)}


def sample_crfs(high: int) -> list[float]:
    """The crf values each candidate is sampled at, on a knob whose scale ends at `high` (51 or 63)."""
    return [round(crf * high / 51) for crf in SAMPLE_CRFS]


def curves(points: list[Point]) -> dict[str, list[Point]]:
    """Each candidate's points by rising bitrate, keeping only those that score above every cheaper one
    (a point that costs more and scores less is noise, not part of the curve)."""
    found: dict[str, list[Point]] = {}
    for point in sorted(points, key=lambda p: (p.rung, p.kbps)):
        curve = found.setdefault(point.rung, [])
        if not curve or point.vmaf > curve[-1].vmaf:
            curve.append(point)
    return found


def _between(curve: list[Point], kbps: float) -> tuple[Point, Point, float] | None:
    """The two points around `kbps` on `curve` and where it lies between them (0..1, in log bitrate)."""
    if not curve or kbps < curve[0].kbps or kbps > curve[-1].kbps:
        return None
    if len(curve) == 1:
        return curve[0], curve[0], 0.0
    for a, b in itertools.pairwise(curve):
        if kbps <= b.kbps:
            span = math.log(b.kbps / a.kbps)
            return a, b, (math.log(kbps / a.kbps) / span if span > 0 else 0.0)
    return None


def quality_at(curve: list[Point], kbps: float) -> float | None:
    """The curve's VMAF at `kbps` (linear in log bitrate between points); None outside what was measured."""
    found = _between(curve, kbps)
    if found is None:
        return None
    a, b, t = found
    return a.vmaf + (b.vmaf - a.vmaf) * t


def crf_at(curve: list[Point], kbps: float) -> float:
    """The crf giving `kbps` on the curve (linear in log bitrate); the curve's ends outside it."""
    if kbps <= curve[0].kbps:
        return curve[0].crf
    if kbps >= curve[-1].kbps:
        return curve[-1].crf
    found = _between(curve, kbps)
    assert found is not None
    a, b, t = found
    return a.crf + (b.crf - a.crf) * t


def envelope_at(found: dict[str, list[Point]], kbps: float) -> tuple[str, float] | None:
    """The candidate scoring best at `kbps`, and its score (None where no curve reaches)."""
    best: tuple[str, float] | None = None
    for rung, curve in found.items():
        score = quality_at(curve, kbps)
        if score is not None and (best is None or score > best[1]):
            best = (rung, score)
    return best


def plan_ladder(points: list[Point], auto: AutoLadderSpec, *, order: list[str], step: float) -> list[Chosen]:
    """The rungs to encode, lowest first. `order` names the candidates from largest to smallest picture;
    `step` is the knob's resolution (crf values are rounded to it)."""
    found = curves(points)
    if not found:
        raise ValueError("no sample points to build a ladder from")
    low = min(c[0].kbps for c in found.values())
    high = max(c[-1].kbps for c in found.values())
    cap = float(auto.max_bitrate_kbps) if auto.max_bitrate_kbps is not None else math.inf
    if cap < low:
        # Every sample costs more than the cap: one rung at the cap (its crf the cheapest measured, the
        # encode held to the cap by its VBV).
        top = cap
    else:
        high = min(high, cap)
        grid = [low * (high / low) ** (i / (GRID - 1)) for i in range(GRID)] if high > low else [low]
        scored = [(kbps, envelope_at(found, kbps)) for kbps in grid]
        reach = [(kbps, best) for kbps, best in scored if best is not None]
        meets = [kbps for kbps, best in reach if best[1] >= auto.top_vmaf]
        # The cheapest that meets top_vmaf; out of reach under the cap, the best the envelope offers.
        top = meets[0] if meets else max(reach, key=lambda item: item[1][1])[0]
    bottom = min(max(float(auto.min_bitrate_kbps), low), top)
    count = 1
    if top > bottom:
        fits = 1 + math.floor(math.log(top / bottom) / math.log(MIN_RATIO) + 1e-9)
        count = max(1, min(auto.max_rungs, fits))
    rates = [bottom * (top / bottom) ** (i / (count - 1)) for i in range(count)] if count > 1 else [top]
    rank = {name: index for index, name in enumerate(order)}  # 0 = the largest picture
    sizes: list[str] = []
    for kbps in rates:
        best = envelope_at(found, kbps)
        sizes.append(best[0] if best is not None else min(found, key=lambda r: abs(found[r][0].kbps - kbps)))
    # A higher rung never gets a smaller picture than a lower one (players expect sizes to rise).
    for index in range(len(sizes) - 2, -1, -1):
        if rank[sizes[index]] < rank[sizes[index + 1]]:
            sizes[index] = sizes[index + 1]
    chosen: list[Chosen] = []
    for kbps, rung in zip(rates, sizes, strict=True):
        curve = found[rung]
        crf = round(crf_at(curve, kbps) / step) * step
        crf = int(crf) if float(crf).is_integer() else crf
        if chosen and chosen[-1].rung == rung and chosen[-1].crf == crf:
            continue
        score = quality_at(curve, min(max(kbps, curve[0].kbps), curve[-1].kbps))
        chosen.append(Chosen(rung, rung, crf, kbps, score if score is not None else curve[0].vmaf))
    taken = [c.rung for c in chosen]
    return [
        c if taken.count(c.rung) == 1 else Chosen(f"{c.rung}-{round(c.kbps)}k", c.rung, c.crf, c.kbps, c.vmaf)
        for c in chosen
    ]
