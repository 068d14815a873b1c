"""Target-quality search, the pure part: where to sample the input, which quality value to try next, and
which one to keep (the process edge that encodes and scores the samples is worker/quality_search.py).

The search walks the encoder's constant-quality knob (CRF and its hardware cousins, see
encoders.quality_knob), where a higher value means a smaller, worse picture. It looks for the highest value
whose samples still score at least the target: the smallest stream that meets it. Scores fall roughly
linearly with the value near the target, so each next value is interpolated between the closest probes on
either side of the target (or extrapolated from one side), kept inside the middle of the open interval so
the interval always shrinks: a bisection that usually lands next to the answer at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# A passing probe this close above the target ends the search: one more step down the knob would cost a
# sample encode to save a fraction of a VMAF point.
CLOSE_ENOUGH = 0.5
# Largest jump when extrapolating from one side: x264's CRF + 6 roughly halves the bitrate.
MAX_STEP = 8
# The first jump when a single probe lies on one side (about a bitrate factor of 1.6 for x264).
FIRST_STEP = 4
MAX_PROBES = 6

# Sampling: a few short windows spread over the input; a short input is searched whole.
SAMPLE_SECONDS = 2.0
SAMPLE_SHARE = 0.05  # of the input's duration, over all windows
MAX_SAMPLES = 6


@dataclass(frozen=True)
class Probe:
    """One sample encode at `value`: its pooled score and its size."""

    value: int
    score: float
    size_bytes: int
    seconds: float  # media seconds the sample holds

    @property
    def kbps(self) -> float:
        """The sample's bitrate."""
        return self.size_bytes * 8 / self.seconds / 1000 if self.seconds > 0 else 0.0

    def view(self) -> dict[str, Any]:
        """The probe as recorded on the output."""
        return {**asdict(self), "score": round(self.score, 3), "kbps": round(self.kbps, 1)}


@dataclass(frozen=True)
class Bounds:
    """The target and the knob's range the search may use."""

    target: float
    low: int
    high: int
    start: int  # the first value tried (the encoder's default, inside the range)


def sample_windows(
    duration: float,
    *,
    sample_seconds: float = SAMPLE_SECONDS,
    share: float = SAMPLE_SHARE,
    max_samples: int = MAX_SAMPLES,
) -> list[tuple[float, float]]:
    """(start, seconds) windows spread evenly over `duration` seconds, centred in equal slices.

    They cover `share` of the input (at least two windows); an input shorter than four windows' worth
    is one window over all of it, since sampling it would save little and cost accuracy.
    """
    if duration <= 0:
        raise ValueError("the input has no duration to sample")
    if duration <= 4 * sample_seconds:
        return [(0.0, duration)]
    count = min(max_samples, max(2, math.ceil(duration * share / sample_seconds)))
    slice_seconds = duration / count
    return [
        (round(i * slice_seconds + (slice_seconds - sample_seconds) / 2, 3), sample_seconds)
        for i in range(count)
    ]


def _interpolate(a: Probe, b: Probe, target: float) -> float:
    """The value where the line through a and b reaches `target` (a and b at different values)."""
    if a.score == b.score:
        return math.inf if a.score >= target else -math.inf
    return a.value + (target - a.score) * (b.value - a.value) / (b.score - a.score)


def next_value(probes: list[Probe], bounds: Bounds) -> int | None:
    """The next value to probe, or None when the search is over (then `choose` says what was found)."""
    if not probes:
        return bounds.start
    if len(probes) >= MAX_PROBES:
        return None
    tried = {p.value for p in probes}
    passing = [p for p in probes if p.score >= bounds.target]
    failing = [p for p in probes if p.score < bounds.target]
    best = max(passing, key=lambda p: p.value) if passing else None
    # Only failures above the best pass bound the answer (a noisy score below it says nothing new).
    above = [p for p in failing if best is None or p.value > best.value]
    worst = min(above, key=lambda p: p.value) if above else None
    if best is not None and best.score < bounds.target + CLOSE_ENOUGH:
        return None
    lo = best.value if best is not None else bounds.low - 1  # highest value known to pass
    hi = worst.value if worst is not None else bounds.high + 1  # lowest value known to fail
    failed_at_low = best is None and bounds.low in tried
    passed_at_high = worst is None and bounds.high in tried
    if failed_at_low or passed_at_high or hi - lo <= 1:
        return None
    if best is not None and worst is not None:
        guess = _interpolate(best, worst, bounds.target)
        # Stay in the middle half of the interval, so a bad line still halves it.
        margin = (hi - lo) / 4
        guess = min(max(guess, lo + margin), hi - margin)
    else:
        side = sorted(passing if best is not None else failing, key=lambda p: p.value)
        near = side[-1] if best is not None else side[0]
        step = FIRST_STEP if best is not None else -FIRST_STEP
        guess = near.value + step
        if len(side) >= 2:
            other = side[-2] if best is not None else side[1]
            line = _interpolate(near, other, bounds.target)
            if math.isfinite(line):
                guess = min(max(line, near.value - MAX_STEP), near.value + MAX_STEP)
    value = min(max(round(guess), lo + 1), hi - 1)
    return value if value not in tried else None


@dataclass(frozen=True)
class Choice:
    """What the search settled on."""

    value: int
    met: bool  # whether its samples reached the target
    probe: Probe | None  # the probe at that value (None if the bound chosen was never sampled)


def choose(probes: list[Probe], bounds: Bounds) -> Choice:
    """The highest value that met the target; when none did, the best-scoring (lowest) value tried."""
    if not probes:
        raise ValueError("no probes to choose from")
    passing = [p for p in probes if p.score >= bounds.target]
    if passing:
        best = max(passing, key=lambda p: p.value)
        return Choice(best.value, True, best)
    lowest = min(probes, key=lambda p: p.value)
    return Choice(lowest.value, False, lowest)


def predicted_size(probe: Probe, duration: float) -> int:
    """The video size a whole `duration`-second encode at the probe's value should have."""
    return round(probe.size_bytes / probe.seconds * duration) if probe.seconds > 0 else 0


def reel_args(
    source: Path, windows: list[tuple[float, float]], reel: Path, *, threads: int, keep_rotation: bool
) -> list[str]:
    """ffmpeg arguments (without the binary) cutting `windows` of the source's picture into one lossless
    file, the samples every probe encodes; `keep_rotation` False ignores a recorded rotation.

    Each window is an exactly seeked input (decoded from the keyframe before it, frames dropped up to its
    start), joined with the concat filter; FFV1 keeps every pixel and any pixel format.
    """
    args = ["-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", "-loglevel", "error"]
    for start, seconds in windows:
        if threads > 0:
            args += ["-threads", str(threads)]
        if not keep_rotation:
            args += ["-display_rotation", "0"]
        args += [*(["-ss", f"{start:.3f}"] if start > 0 else []), "-t", f"{seconds:.3f}", "-i", str(source)]
    if len(windows) == 1:
        args += ["-map", "0:V:0"]
    else:
        heads = "".join(f"[{index}:V:0]" for index in range(len(windows)))
        args += ["-filter_complex", f"{heads}concat=n={len(windows)}:v=1:a=0[reel]", "-map", "[reel]"]
    args += ["-an", "-sn", "-dn", "-c:v", "ffv1", "-level", "3", "-g", "1"]
    if threads > 0:
        args += ["-threads", str(threads)]
    return [*args, str(reel)]
