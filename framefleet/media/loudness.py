"""Loudness: the measuring pass of two-pass EBU R128 normalisation, and the check of what came out.

Each output is normalised in its own final layout, since a downmix changes loudness: the first pass
reads only the sound (after the job's trim and channel mix, exactly as the encode will see it), splits it
into every channel count the job's outputs and audio renditions end up with, and prints loudnorm's
measurement of each as JSON. The encode then applies a linear correction per branch (media/filters.py),
which keeps the dynamics intact instead of compressing them as a one-pass run does, and meters the
corrected sound with ebur128, a BS.1770 meter independent of loudnorm. `check_loudness` reads those
readings back and says whether each stream is within the spec's tolerance of its target.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.ladders import AudioRenditionSpec
from framefleet.core.operations import LoudnessSpec
from framefleet.core.spec import AudioCodec, JobSpec
from framefleet.media.filters import (
    fit_audio,
    layout_name,
    linear_gain,
    loudnorm,
    peak_limited,
    pre_audio,
    remix,
)
from framefleet.media.outputs import audio_target
from framefleet.media.planning import LoudnessCheck, clock_start, video_length
from framefleet.media.probe import MediaInfo
from framefleet.media.tracks import SoundSource, SoundSources

MEASURED_KEYS = ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")
# loudnorm prints its JSON after a line naming the filter instance; ours are named
# loudnorm@s<sound source>c<channels>.
_JSON_BLOCK = re.compile(r"\[loudnorm@s(\d+)c(\d+) @ [^\]]*\][^{]*(\{[^{}]*\})", re.DOTALL)


def final_channels(spec: JobSpec, sources: SoundSources) -> dict[int, list[int]]:
    """Every channel count each sound source ends up in (outputs' tracks and audio renditions), sorted."""
    ops = spec.operations
    found: dict[int, set[int]] = {}

    def add(source: SoundSource | None, codec: AudioCodec, rate: int | None, channels: int | None) -> None:
        if source is None:
            return
        _, mixed = pre_audio(ops, source.track)
        found.setdefault(source.ordinal, set()).add(audio_target(codec, rate, channels, mixed)[1])

    for oindex, output in enumerate(spec.outputs):
        codec = output.audio.codec
        if codec is None or codec in (AudioCodec.none, AudioCodec.copy):
            continue
        for sound in sources.for_output(output, oindex):
            add(sound, codec, output.audio.sample_rate, output.audio.channels)
    for gindex, group in enumerate(spec.groups):
        renditions = group.audio if group.audio is not None else [AudioRenditionSpec(default=True)]
        for aindex, rendition in enumerate(renditions):
            picked = sources.for_rendition(rendition, f"groups.{gindex}.audio.{aindex}.track")
            add(picked, rendition.codec, rendition.sample_rate, rendition.channels)
    return {ordinal: sorted(counts) for ordinal, counts in found.items()}


def build_loudness_scan(
    spec: JobSpec, info: MediaInfo, source: Path, *, limited: dict[tuple[int, int], float] | None = None
) -> list[str]:
    """ffmpeg arguments (without the binary) measuring the loudness of each layout the encode will correct,
    for each sound source (input track or mono pair) the job uses.

    `limited` gives the layouts to measure after their gain (dB) and the true-peak limiter instead: what the
    limiter takes off, the encode puts back (see measure_loudness)."""
    ops = spec.operations
    if ops is None or ops.loudness is None or info.audio is None:
        raise ValueError("no loudness normalisation to measure")
    sources = SoundSources(spec, info)
    wanted = final_channels(spec, sources)
    if not wanted and sources.primary is not None:
        wanted = {sources.primary.ordinal: [sources.primary.track.channels]}
    chains: list[str] = []
    outputs: list[str] = []
    first_pass = loudnorm(ops.loudness, None)
    for sound in sources.sources:
        counts = wanted.get(sound.ordinal)
        if not counts:
            continue
        head_chains, start = sound.head()
        pre, mixed = pre_audio(ops, sound.track)  # what each layout's remix starts from: after the mix
        # Only the sound the outputs keep is measured: lined up with the picture and cut to its length.
        if info.video is not None:
            picture = clock_start(spec, info.video.start)
            heard = clock_start(spec, sound.track.start)
            pre = [*fit_audio(picture, video_length(spec, info), heard, sound.track.sample_rate), *pre]
        chains += head_chains
        n = sound.ordinal
        split = f"asplit={len(counts)}" + "".join(f"[s{n}m{c}]" for c in counts)
        chains.append(f"[{start}]{','.join([*pre, split])}")
        for count in counts:
            name = first_pass.replace("loudnorm=", f"loudnorm@s{n}c{count}=", 1)
            # The same remix the encode does (the explicit 5.1 downmix), so the measurement is of its sound.
            to_layout = (
                remix(mixed, count)
                if count != mixed.channels
                else f"aformat=channel_layouts={layout_name(count)}"
            )
            gain = (limited or {}).get((n, count))
            tail = (
                []
                if gain is None
                else [*peak_limited(ops.loudness, gain, mixed.sample_rate), f"aresample={mixed.sample_rate}"]
            )
            chains.append(f"[s{n}m{count}]{','.join([to_layout, *tail, name])}[s{n}l{count}]")
            outputs.append(f"s{n}l{count}")
    # loudnorm prints its JSON at the info level; -nostats keeps the rest of stderr short.
    args = ["-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1", "-loglevel", "info"]
    trim = ops.trim
    if trim is not None and trim.start > 0:
        args += ["-ss", f"{trim.start:g}"]
    if trim is not None and trim.length is not None:
        args += ["-t", f"{trim.length:g}"]
    args += ["-i", str(source), "-filter_complex", ";".join(chains)]
    for label in outputs:
        args += ["-map", f"[{label}]", "-f", "null", "-"]
    return args


def parse_loudnorm(stderr: str) -> dict[tuple[int, int], dict[str, float]]:
    """loudnorm's measurement of each (sound source, channel count) from the pass's stderr; {} for one
    that is silent."""
    blocks = _JSON_BLOCK.findall(stderr)
    if not blocks:
        raise JobFailure(FailureClass.encoder_failed, "the loudness pass printed no measurement")
    found: dict[tuple[int, int], dict[str, float]] = {}
    for ordinal, count, block in blocks:
        try:
            data = json.loads(block)
            measured = {key: float(data[key]) for key in MEASURED_KEYS}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise JobFailure(
                FailureClass.encoder_failed, f"the loudness measurement is unreadable: {exc}"
            ) from None
        # Silence measures -inf: there is nothing to correct.
        found[int(ordinal), int(count)] = measured if all(math.isfinite(v) for v in measured.values()) else {}
    return found


# The most a limited layout's gain is raised over the plain linear gain to make up for what its limiter takes
# off: past that the limiter would be flattening the sound rather than catching its peaks (the meter then
# reports the miss).
MAX_MAKEUP_DB = 10.0
# Measuring passes through gain and limiter, at most: each is an audio-only decode of the input.
LIMITED_PASSES = 3


def limited_layouts(
    spec: LoudnessSpec, measured: dict[tuple[int, int], dict[str, float]]
) -> dict[tuple[int, int], float]:
    """The layouts whose static gain would lift the true peak over the ceiling, with that gain (dB)."""
    return {
        key: linear_gain(spec, found)
        for key, found in measured.items()
        if found and found["input_tp"] + linear_gain(spec, found) > spec.true_peak
    }


def next_gain(spec: LoudnessSpec, points: list[tuple[float, float]], ceiling: float) -> float | None:
    """The gain to try next from (gain, measured loudness) points of one limited layout, the last one the
    latest; None once the last is close enough to the target.

    Loudness grows more slowly than the gain once the limiter works (each dB more is partly taken off the
    peaks), so the step uses the slope between the last two points (the secant), not 1.
    """
    gain, loudness = points[-1]
    miss = spec.integrated - loudness
    if abs(miss) <= spec.tolerance / 4:
        return None
    before_gain, before_loudness = points[-2]
    slope = (loudness - before_loudness) / (gain - before_gain) if gain != before_gain else 1.0
    return min(ceiling, gain + miss / min(1.0, max(0.25, slope)))


def measure_loudness(
    spec: JobSpec, info: MediaInfo, source: Path, run: Callable[[list[str]], str]
) -> dict[tuple[int, int], dict[str, float]]:
    """The measurement the encode corrects with: `run` runs ffmpeg with the given arguments (without the
    binary) and returns its stderr.

    One pass measures every layout. A layout whose gain would lift its true peak over the ceiling gets a
    true-peak limiter after the gain, and the limiter lowers the loudness of the peaks it catches (by 1-2 LU
    on sound with sharp transients): further passes measure such layouts through gain and limiter and raise
    the gain by what the limiter took off until they are near the target (`limited_gain_db`, the gain the
    encode applies).
    """
    loudness = spec.operations.loudness if spec.operations is not None else None
    if loudness is None:
        raise ValueError("no loudness normalisation to measure")
    measured = parse_loudnorm(run(build_loudness_scan(spec, info, source)))
    pending = limited_layouts(loudness, measured)
    points: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for key in pending:
        # Up to the gain that just lifts the peak to the ceiling the limiter does nothing: a first point.
        free = loudness.true_peak - measured[key]["input_tp"]
        points[key] = [(free, measured[key]["input_i"] + free)]
    for _ in range(LIMITED_PASSES):
        if not pending:
            break
        for key, gain in pending.items():
            measured[key] = {**measured[key], "limited_gain_db": round(gain, 2)}
        after = parse_loudnorm(run(build_loudness_scan(spec, info, source, limited=pending)))
        tried, pending = pending, {}
        for key, gain in tried.items():
            if not after.get(key):
                continue
            points[key].append((gain, after[key]["input_i"]))
            ceiling = linear_gain(loudness, measured[key]) + MAX_MAKEUP_DB
            if (step := next_gain(loudness, points[key], ceiling)) is not None and step != gain:
                pending[key] = step
    for key, gain in pending.items():  # the last step's estimate, checked by the encode's meter
        measured[key] = {**measured[key], "limited_gain_db": round(gain, 2)}
    return measured


@dataclass(frozen=True)
class LoudnessReading:
    """What ebur128 measured on one normalised stream, against what the spec asked."""

    name: str
    integrated: float  # LUFS
    true_peak: float  # dBTP
    lra: float  # LU
    target: float
    tolerance: float

    @property
    def within(self) -> bool:
        """True when the integrated loudness is within the tolerance of the target."""
        return abs(self.integrated - self.target) <= self.tolerance + 1e-9

    def summary(self) -> dict[str, object]:
        """The reading as stored with the output (metrics.loudness)."""
        return {
            "integrated_lufs": round(self.integrated, 2),
            "true_peak_dbtp": round(self.true_peak, 2),
            "lra_lu": round(self.lra, 2),
            "target_lufs": self.target,
            "tolerance_lu": self.tolerance,
            "within_tolerance": self.within,
            "meter": "ebur128",
        } | ({} if self.within else {"warning": f"{self.integrated - self.target:+.1f} LU from the target"})


def read_meter(text: str) -> tuple[float, float, float]:
    """(integrated LUFS, true peak dBTP, LRA) from ametadata's print of ebur128's frames: the last frame's
    running values are the whole stream's; true peak is the loudest channel's."""
    last: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("frame:"):
            last = {}
        elif line.startswith("lavfi.r128.") and "=" in line:
            key, value = line[len("lavfi.r128.") :].split("=", 1)
            last[key] = value
    try:
        peaks = [float(v) for k, v in last.items() if k.startswith("true_peaks_ch")]
        peak = 20 * math.log10(max(peaks)) if peaks and max(peaks) > 0 else -math.inf
        return float(last["I"]), peak, float(last["LRA"])
    except (KeyError, ValueError) as exc:
        raise JobFailure(
            FailureClass.encoder_failed, f"the loudness meter's readings are unreadable: {exc}"
        ) from None


def check_loudness(checks: list[LoudnessCheck]) -> list[LoudnessReading]:
    """Each normalised stream's reading; raises when one misses its target and the spec says to fail."""
    readings: list[LoudnessReading] = []
    for check in checks:
        try:
            text = check.meter.read_text()
        except OSError as exc:
            raise JobFailure(
                FailureClass.encoder_failed, f"no loudness readings for {check.name}: {exc}"
            ) from None
        integrated, peak, lra = read_meter(text)
        reading = LoudnessReading(
            check.name, integrated, peak, lra, check.spec.integrated, check.spec.tolerance
        )
        if not reading.within and check.spec.on_miss == "fail":
            raise JobFailure(
                FailureClass.encoder_failed,
                f"{check.name}: loudness {integrated:.1f} LUFS is more than {check.spec.tolerance:g} LU from "
                f"the {check.spec.integrated:g} LUFS target",
            )
        readings.append(reading)
    return readings
