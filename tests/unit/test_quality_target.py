"""Target-quality encoding, the pure parts: the spec's checks, the knob each encoder turns, where samples
are cut, and the search's next step and final choice (the worker test runs it for real)."""

from __future__ import annotations

from typing import Any

import pytest

from framefleet.core.spec import JobSpec, VideoCodec
from framefleet.media.encoders import Family, VideoEncode, quality_knob, video_encoder_args
from framefleet.media.target import MAX_PROBES, Bounds, Probe, choose, next_value, reel_args, sample_windows
from tests.unit.test_spec import errors


def target_spec(output: dict[str, Any]) -> dict[str, Any]:
    return {"input": "file:///media/in.mp4", "outputs": [{"container": "mp4", **output}]}


def test_a_quality_target_is_kept_and_dumped_only_when_set() -> None:
    job = JobSpec.model_validate(target_spec({"quality_target": {"value": 93, "max_bitrate_kbps": 4000}}))
    target = job.outputs[0].quality_target
    assert target is not None and (target.metric, target.value, target.max_bitrate_kbps) == ("vmaf", 93, 4000)
    plain = JobSpec.model_validate(target_spec({}))
    assert "quality_target" not in plain.model_dump()["outputs"][0]


@pytest.mark.parametrize(
    ("output", "field", "words"),
    [
        (
            {"quality_target": {"value": 93, "min_crf": 30, "max_crf": 20}},
            "outputs.0.quality_target.min_crf",
            "at most max_crf",
        ),
        ({"quality_target": {"value": 93}, "video": {"crf": 23}}, "outputs.0.video.crf", "chooses the crf"),
        (
            {"quality_target": {"value": 93}, "video": {"bitrate_kbps": 900}},
            "outputs.0.video.bitrate_kbps",
            "not a target bitrate",
        ),
        (
            {"quality_target": {"value": 93}, "video": {"crf": 20, "maxrate_kbps": 900}},
            "outputs.0.video.crf",
            "chooses the crf",
        ),
        ({"quality_target": {"value": 93, "max_crf": 60}}, "outputs.0.quality_target.max_crf", "at most 51"),
        (
            {"quality_target": {"value": 93}, "video": {"codec": "copy"}},
            "outputs.0.quality_target",
            "not copy",
        ),
        ({"container": "gif", "quality_target": {"value": 93}}, "outputs.0.quality_target", "not gif"),
        ({"quality_target": {"value": 93, "metric": "psnr"}}, "outputs.0.quality_target.metric", "vmaf"),
        ({"quality_target": {"value": 101}}, "outputs.0.quality_target.value", "100"),
    ],
)
def test_bad_quality_targets_name_the_field(output: dict[str, Any], field: str, words: str) -> None:
    found = errors(target_spec(output))
    assert any(loc == field and words in msg for loc, msg in found), found


def test_each_family_turns_its_own_knob() -> None:
    assert quality_knob(Family.cpu, VideoCodec.h264).option == "crf"
    assert (quality_knob(Family.cpu, VideoCodec.av1).low, quality_knob(Family.cpu, VideoCodec.av1).high) == (
        1,
        63,
    )
    assert quality_knob(Family.nvenc, VideoCodec.hevc).option == "cq"
    assert quality_knob(Family.qsv, VideoCodec.h264).option == "global_quality"
    assert quality_knob(Family.vaapi, VideoCodec.h264).option == "qp"
    with pytest.raises(ValueError, match="no constant-quality knob"):
        quality_knob(Family.cpu, VideoCodec.png)
    # The argument lists carry the same knob the search turned.
    for family, option in ((Family.cpu, "-crf"), (Family.nvenc, "-cq"), (Family.qsv, "-global_quality")):
        args = video_encoder_args(VideoEncode(VideoCodec.h264, crf=27), family)
        assert args[args.index(option) + 1] == "27"


def test_samples_spread_over_long_inputs_and_cover_short_ones() -> None:
    assert sample_windows(6.0) == [(0.0, 6.0)]
    windows = sample_windows(600.0)
    assert len(windows) == 6 and all(seconds == 2.0 for _, seconds in windows)
    starts = [start for start, _ in windows]
    assert starts == sorted(starts) and starts[0] > 0 and starts[-1] + 2.0 < 600.0
    assert len(sample_windows(60.0)) == 2


def test_the_reel_cuts_each_window_exactly_and_joins_them_losslessly() -> None:
    from pathlib import Path

    args = reel_args(
        Path("/in.mp4"), [(1.0, 2.0), (5.0, 2.0)], Path("/reel.mkv"), threads=0, keep_rotation=False
    )
    assert args[args.index("-ss") + 1] == "1.000" and args.count("-display_rotation") == 2
    assert "concat=n=2:v=1:a=0[reel]" in args[args.index("-filter_complex") + 1]
    assert args[args.index("-c:v") + 1] == "ffv1" and args[-1] == "/reel.mkv"


def curve(value: int) -> float:
    """A made-up score curve: falls faster at high values, as VMAF does."""
    return 100 - 0.02 * value**2


def run_search(bounds: Bounds, score: Any = curve) -> tuple[list[Probe], int | None]:
    probes: list[Probe] = []
    while (value := next_value(probes, bounds)) is not None:
        assert value not in {p.value for p in probes}, "a value is never probed twice"
        assert bounds.low <= value <= bounds.high
        probes.append(Probe(value, score(value), 1000 * (60 - value), 2.0))
    return probes, choose(probes, bounds).value


@pytest.mark.parametrize("target", [80.0, 88.0, 93.0, 96.0, 99.0])
def test_the_search_finds_the_highest_passing_value_in_few_probes(target: float) -> None:
    bounds = Bounds(target, 0, 51, 23)
    probes, chosen = run_search(bounds)
    passing = [v for v in range(52) if curve(v) >= target]
    assert chosen is not None and chosen in passing
    # Either the best value, or one close enough above the target that one more probe is not worth it.
    assert chosen == max(passing) or curve(chosen) < target + 0.5
    assert len(probes) <= (5 if target < 99 else MAX_PROBES), probes


def test_an_unreachable_target_takes_the_best_value_allowed_and_says_so() -> None:
    bounds = Bounds(99.9, 10, 40, 23)
    probes, _ = run_search(bounds)
    choice = choose(probes, bounds)
    assert (choice.value, choice.met) == (10, False)
    assert len(probes) <= MAX_PROBES


def test_a_target_met_everywhere_takes_the_top_of_the_range() -> None:
    bounds = Bounds(50.0, 18, 30, 23)
    probes, chosen = run_search(bounds)
    assert chosen == 30 and choose(probes, bounds).met


def test_a_noisy_curve_still_ends_and_chooses_a_passing_value() -> None:
    def noisy(value: int) -> float:
        return curve(value) + (1.5 if value % 2 else -1.5)

    bounds = Bounds(90.0, 0, 51, 23)
    probes, chosen = run_search(bounds, noisy)
    assert chosen is not None and noisy(chosen) >= 90.0
    assert len(probes) <= MAX_PROBES


def test_the_first_probe_is_the_encoders_default_and_one_side_steps_out() -> None:
    bounds = Bounds(93.0, 0, 51, 23)
    assert next_value([], bounds) == 23
    # Far above the target: step up the knob (smaller files); far below: step down.
    assert next_value([Probe(23, 99.0, 1, 1.0)], bounds) == 27
    assert next_value([Probe(23, 80.0, 1, 1.0)], bounds) == 19
