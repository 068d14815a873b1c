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
from dataclasses import dataclass, replace
from pathlib import Path

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.ladders import AudioRenditionSpec
from framefleet.core.operations import MIX_CHANNELS
from framefleet.core.spec import AudioCodec, JobSpec
from framefleet.media.filters import channel_mix, layout_name, loudnorm, remix
from framefleet.media.outputs import audio_target
from framefleet.media.planning import LoudnessCheck
from framefleet.media.probe import AudioInfo, MediaInfo, with_audio_track

MEASURED_KEYS = ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")
# loudnorm prints its JSON after a line naming the filter instance; ours are named loudnorm@c<channels>.
_JSON_BLOCK = re.compile(r"\[loudnorm@c(\d+) @ [^\]]*\][^{]*(\{[^{}]*\})", re.DOTALL)


def final_channels(spec: JobSpec, info: MediaInfo) -> list[int]:
    """Every channel count the job's encoded sound ends up in (outputs and audio renditions), sorted."""
    ops = spec.operations
    audio = info.audio
    if audio is None:
        return []
    if ops is not None and ops.channel_mix is not None:
        mixed = {"mono": 1, "stereo": 2, "5.1": 6}[ops.channel_mix.layout.value]
        audio = AudioInfo(audio.codec, mixed, audio.sample_rate, audio.bit_rate)
    found: set[int] = set()
    for output in spec.outputs:
        codec = output.audio.codec
        if codec is None or codec in (AudioCodec.none, AudioCodec.copy):
            continue
        found.add(audio_target(codec, output.audio.sample_rate, output.audio.channels, audio)[1])
    for group in spec.groups:
        for rendition in group.audio if group.audio is not None else [AudioRenditionSpec(default=True)]:
            found.add(audio_target(rendition.codec, rendition.sample_rate, rendition.channels, audio)[1])
    return sorted(found)


def build_loudness_scan(spec: JobSpec, info: MediaInfo, source: Path) -> list[str]:
    """ffmpeg arguments (without the binary) measuring the loudness of each layout the encode will correct."""
    ops = spec.operations
    if ops is None or ops.loudness is None or info.audio is None:
        raise ValueError("no loudness normalisation to measure")
    info = with_audio_track(info, ops.audio_track)
    assert info.audio is not None
    counts = final_channels(spec, info) or [info.audio.channels]
    head = [channel_mix(ops.channel_mix, info.audio)] if ops.channel_mix is not None else []
    mixed = info.audio  # what each layout's remix starts from: the sound after the channel mix
    if ops.channel_mix is not None:
        count = MIX_CHANNELS[ops.channel_mix.layout]
        mixed = replace(info.audio, channels=count, layout=layout_name(count))
    head.append(f"asplit={len(counts)}" + "".join(f"[m{c}]" for c in counts))
    chains = [f"[0:a:{info.audio.index}]{','.join(head)}"]
    first_pass = loudnorm(ops.loudness, None)
    for count in counts:
        name = first_pass.replace("loudnorm=", f"loudnorm@c{count}=", 1)
        # The same remix the encode does (the explicit 5.1 downmix), so the measurement is of its sound.
        to_layout = (
            remix(mixed, count)
            if count != mixed.channels
            else f"aformat=channel_layouts={layout_name(count)}"
        )
        chains.append(f"[m{count}]{to_layout},{name}[l{count}]")
    # loudnorm prints its JSON at the info level; -nostats keeps the rest of stderr short.
    args = ["-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1", "-loglevel", "info"]
    trim = ops.trim
    if trim is not None and trim.start > 0:
        args += ["-ss", f"{trim.start:g}"]
    if trim is not None and trim.length is not None:
        args += ["-t", f"{trim.length:g}"]
    args += ["-i", str(source), "-filter_complex", ";".join(chains)]
    for count in counts:
        args += ["-map", f"[l{count}]", "-f", "null", "-"]
    return args


def parse_loudnorm(stderr: str) -> dict[int, dict[str, float]]:
    """loudnorm's measurement of each channel count from the pass's stderr; {} for one that is silent."""
    blocks = _JSON_BLOCK.findall(stderr)
    if not blocks:
        raise JobFailure(FailureClass.encoder_failed, "the loudness pass printed no measurement")
    found: dict[int, dict[str, float]] = {}
    for count, block in blocks:
        try:
            data = json.loads(block)
            measured = {key: float(data[key]) for key in MEASURED_KEYS}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise JobFailure(
                FailureClass.encoder_failed, f"the loudness measurement is unreadable: {exc}"
            ) from None
        # Silence measures -inf: there is nothing to correct.
        found[int(count)] = measured if all(math.isfinite(v) for v in measured.values()) else {}
    return found


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
