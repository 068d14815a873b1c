"""Target-quality search, the pure part: where to sample the input, which quality value to try next, and
which one to keep (the process edge that encodes and scores the samples is worker/quality_search.py).

The search walks the encoder's constant-quality knob (CRF and its hardware cousins, see
encoders.quality_knob), where a higher value means a smaller, worse picture. It looks for the highest value
whose samples still score at least the target: the smallest stream that meets it. The model: the distance
of VMAF from 100 grows about exponentially with the knob (x264's crf + 6 halves the bitrate, and each
halving costs a similar share of what quality is left), so ln(100 - score) is close to a straight line in
the value. Each next value comes from that line: through the closest probes on either side of the target,
through two probes on one side, or from one probe with a typical slope. It is kept off the ends of the
open interval so the interval always shrinks, and rounded to the knob's step (a quarter for x264, x265 and
NVENC, which take fractional values; whole steps elsewhere).
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
MAX_STEP = 8.0
# The typical slope of ln(100 - VMAF) per knob step, for a jump from a single probe: measured with x264 on
# the benchmark's sources, 0.13-0.2 between crf 23 and 38 (less on the 0-63 scales of AV1 and VP9).
SLOPE = 0.15
# What the encoders' default crf typically scores (x264 crf 23 on the benchmark's sources: 96.5-98.5): the
# first probe starts where the typical slope says the target lies from there, not at the default itself.
TYPICAL_DEFAULT_SCORE = 97.0
# A probe scoring 100 still leaves this much room, so its logarithm stays finite.
HEADROOM = 0.25
MAX_PROBES = 6

# Sampling: a few short windows spread over the input; a short input is searched whole.
SAMPLE_SECONDS = 2.0
SAMPLE_SHARE = 0.05  # of the input's duration, over all windows
MAX_SAMPLES = 6


@dataclass(frozen=True)
class Probe:
    """One sample encode at `value`: its pooled score and its size."""

    value: float
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
    low: float
    high: float
    start: float  # the first value tried (see first_value)
    step: float = 1.0  # the knob's resolution: 0.25 where the encoder takes fractional values
    slope: float = SLOPE  # the typical slope of ln(100 - score) per unit of the knob


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


def _room(score: float) -> float:
    """ln(100 - score): close to a straight line in the knob's value."""
    return math.log(max(100.0 - score, HEADROOM))


def _line(a: Probe, b: Probe, target: float) -> float | None:
    """The value where the line through a and b (in ln(100 - score)) reaches `target`; None when the
    probes do not rise with the value (noise, or a flat stretch of the curve)."""
    rise = _room(b.score) - _room(a.score)
    if b.value == a.value or rise / (b.value - a.value) <= 0:
        return None
    return a.value + (_room(target) - _room(a.score)) * (b.value - a.value) / rise


def _snap(value: float, step: float) -> float:
    """`value` on the knob's grid (whole numbers stay ints, so a recorded value reads as typed)."""
    snapped = round(round(value / step) * step, 4)
    return int(snapped) if float(snapped).is_integer() else snapped


def first_value(
    *, target: float, default: float, low: float, high: float, step: float, slope: float
) -> float:
    """Where the search starts: the value that typically meets `target`, reckoned from what the encoder's
    default value typically scores, inside [low, high] and on the knob's grid."""
    guess = default + (_room(target) - _room(TYPICAL_DEFAULT_SCORE)) / slope
    return min(max(_snap(guess, step), low), high)


def next_value(probes: list[Probe], bounds: Bounds) -> float | None:
    """The next value to probe, or None when the search is over (then `choose` says what was found)."""
    if not probes:
        return bounds.start
    if len(probes) >= MAX_PROBES:
        return None
    step = bounds.step
    tried = {p.value for p in probes}
    passing = [p for p in probes if p.score >= bounds.target]
    failing = [p for p in probes if p.score < bounds.target]
    best = max(passing, key=lambda p: p.value) if passing else None
    # Only failures above the best pass bound the answer (a noisy score below it says nothing new).
    above = [p for p in failing if best is None or p.value > best.value]
    worst = min(above, key=lambda p: p.value) if above else None
    if best is not None and best.score < bounds.target + CLOSE_ENOUGH:
        return None
    lo = best.value if best is not None else bounds.low - step  # highest value known to pass
    hi = worst.value if worst is not None else bounds.high + step  # lowest value known to fail
    failed_at_low = best is None and bounds.low in tried
    passed_at_high = worst is None and bounds.high in tried
    if failed_at_low or passed_at_high or hi - lo <= step + 1e-9:
        return None
    if best is not None and worst is not None:
        guess = _line(best, worst, bounds.target)
        middle = (lo + hi) / 2
        # Stay off the ends of the interval, so a bad line still shrinks it by an eighth. Not the middle
        # half: where the line is right, that clamp costs a probe (4 instead of 3 on the unit test's curve).
        margin = (hi - lo) / 8
        guess = middle if guess is None else min(max(guess, lo + margin), hi - margin)
    else:
        side = sorted(passing if best is not None else failing, key=lambda p: p.value)
        near = side[-1] if best is not None else side[0]
        # From one probe, the typical slope says how far the target is.
        guess = near.value + (_room(bounds.target) - _room(near.score)) / bounds.slope
        if len(side) >= 2:
            other = side[-2] if best is not None else side[1]
            line = _line(other, near, bounds.target)
            if line is not None:
                guess = line
        # At least one step outwards, at most MAX_STEP.
        if best is not None:
            guess = min(max(guess, near.value + 1), near.value + MAX_STEP)
        else:
            guess = max(min(guess, near.value - 1), near.value - MAX_STEP)
    value = _snap(min(max(guess, lo + step), hi - step), step)
    value = min(max(value, bounds.low), bounds.high)
    return value if value not in tried else None


@dataclass(frozen=True)
class Choice:
    """What the search settled on."""

    value: float
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


# A reel up to this size is kept as raw pictures: every probe reads it, and decoding FFV1 cost as much as
# encoding the probe on grainy sources (0.8 s of a 1.1 s probe, 4 s at 384x216). Larger reels stay FFV1.
RAW_REEL_BYTES = 512 * 1024 * 1024


def reel_name(*, width: int, height: int, bit_depth: int, fps: float | None, seconds: float) -> str:
    """The reel's file name, whose container says how it is stored: raw pictures in NUT while they fit
    RAW_REEL_BYTES (counted as 4:4:4 at the source's depth, an upper bound), else FFV1 in Matroska."""
    frame_bytes = width * height * 3 * (2 if bit_depth > 8 else 1)
    frames = math.ceil(seconds * (fps or 60.0))
    return "reel.nut" if frame_bytes * frames <= RAW_REEL_BYTES else "reel.mkv"


def reel_args(
    source: Path, windows: list[tuple[float, float]], reel: Path, *, threads: int, keep_rotation: bool
) -> list[str]:
    """ffmpeg arguments (without the binary) cutting `windows` of the source's picture into one lossless
    file, the samples every probe encodes; `keep_rotation` False ignores a recorded rotation.

    Each window is an exactly seeked input (decoded from the keyframe before it, frames dropped up to its
    start), joined with the concat filter. A `.nut` reel holds raw pictures (nothing to decode per
    probe), any other FFV1; both keep every pixel and any pixel format.
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
    args += ["-an", "-sn", "-dn"]
    if reel.suffix == ".nut":
        args += ["-c:v", "rawvideo"]
    else:
        args += ["-c:v", "ffv1", "-level", "3", "-g", "1"]
        if threads > 0:
            args += ["-threads", str(threads)]
    return [*args, str(reel)]
