"""The measuring pass of two-pass EBU R128 loudness normalisation (ffmpeg's loudnorm filter).

The first pass reads only the sound (after the job's trim and channel mix, exactly as the encode will
see it) and prints loudnorm's measurement as JSON; the encode then applies a linear correction from it
(media/filters.py), which keeps the dynamics intact instead of compressing them as a one-pass run does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import JobSpec
from framefleet.media.filters import channel_mix, loudnorm
from framefleet.media.probe import MediaInfo

MEASURED_KEYS = ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")
_JSON_BLOCK = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}", re.DOTALL)


def build_loudness_scan(spec: JobSpec, info: MediaInfo, source: Path) -> list[str]:
    """ffmpeg arguments (without the binary) measuring the loudness the encode will correct."""
    ops = spec.operations
    if ops is None or ops.loudness is None or info.audio is None:
        raise ValueError("no loudness normalisation to measure")
    filters = []
    if ops.channel_mix is not None:
        filters.append(channel_mix(ops.channel_mix, info.audio))
    filters.append(loudnorm(ops.loudness, None))
    # loudnorm prints its JSON at the info level; -nostats keeps the rest of stderr short.
    args = ["-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1", "-loglevel", "info"]
    trim = ops.trim
    if trim is not None and trim.start > 0:
        args += ["-ss", f"{trim.start:g}"]
    if trim is not None and trim.length is not None:
        args += ["-t", f"{trim.length:g}"]
    return [*args, "-i", str(source), "-vn", "-sn", "-dn", "-af", ",".join(filters), "-f", "null", "-"]


def parse_loudnorm(stderr: str) -> dict[str, float]:
    """loudnorm's measurement from the pass's stderr; empty for silence (there is nothing to correct)."""
    blocks = _JSON_BLOCK.findall(stderr)
    if not blocks:
        raise JobFailure(FailureClass.encoder_failed, "the loudness pass printed no measurement")
    try:
        data = json.loads(blocks[-1])
        measured = {key: float(data[key]) for key in MEASURED_KEYS}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise JobFailure(
            FailureClass.encoder_failed, f"the loudness measurement is unreadable: {exc}"
        ) from None
    if not all(abs(v) != float("inf") for v in measured.values()):
        return {}
    return measured
