"""The second loudness pass each layout gets, chosen from its measurement: pure logic."""

from __future__ import annotations

import pytest

from framefleet.core.operations import LoudnessSpec
from framefleet.media.filters import correction, loudnorm_is_linear
from framefleet.media.loudness import limited_layouts, next_gain

SPEC = LoudnessSpec(integrated=-23, true_peak=-1)


def measured(i: float, tp: float, lra: float) -> dict[str, float]:
    return {"input_i": i, "input_tp": tp, "input_lra": lra, "input_thresh": i - 10, "target_offset": 0.0}


def test_loudnorm_runs_only_where_it_really_is_linear() -> None:
    ranged = measured(-30, -12, 5)
    assert loudnorm_is_linear(SPEC, ranged)
    assert correction(SPEC, ranged, 48000)[0].startswith("loudnorm=")
    # A wide range is asked of loudnorm as the target range: still linear.
    assert loudnorm_is_linear(SPEC, measured(-30, -12, 18))
    # No range (steady sound, or under 3 s): loudnorm would go dynamic; the same gain by `volume`.
    assert correction(SPEC, measured(-30, -12, 0), 48000) == ["volume=7dB"]
    # The gain would lift the peak over the ceiling: not linear, and measure_loudness settles a limited gain.
    peaky = measured(-28, -2, 3)
    assert not loudnorm_is_linear(SPEC, peaky)
    assert limited_layouts(SPEC, {(0, 2): peaky, (0, 6): ranged, (1, 2): {}}) == {(0, 2): 5.0}
    chain = correction(SPEC, {**peaky, "limited_gain_db": 6.4}, 44100)
    assert chain[0] == "volume=6.4dB" and chain[1] == "aresample=176400"
    assert chain[2].startswith("alimiter=limit=0.8913:") and "level=false" in chain[2]


def test_the_limited_gain_follows_the_secant_and_stops_near_the_target() -> None:
    # Measured at -28 LUFS: 4 dB lifts the peak to the ceiling (-24 LUFS, no limiting yet); 5 dB gives
    # -23.6 where 1 dB more would have given -23: the limiter took 0.6 off. The secant slope is 0.4.
    step = next_gain(SPEC, [(4.0, -24.0), (5.0, -23.6)], ceiling=20)
    assert step == pytest.approx(5 + 0.6 / 0.4)
    assert next_gain(SPEC, [(4.0, -24.0), (5.0, -23.05)], ceiling=20) is None
    assert next_gain(SPEC, [(4.0, -24.0), (5.0, -28.0)], ceiling=9) == 9  # capped
