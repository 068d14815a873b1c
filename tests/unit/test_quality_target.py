"""Target-quality encoding, the pure parts: the spec's checks, the knob each encoder turns, where samples
are cut, and the search's next step and final choice (the worker test runs it for real)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from framefleet.core.spec import JobSpec, VideoCodec
from framefleet.media.encoders import Family, VideoEncode, quality_knob, video_encoder_args
from framefleet.media.target import (
    MAX_PROBES,
    SLOPE,
    Bounds,
    Probe,
    choose,
    first_value,
    next_value,
    reel_args,
    reel_name,
    sample_windows,
)
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


def run_search(bounds: Bounds, score: Any = curve) -> tuple[list[Probe], float | None]:
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


def test_the_search_starts_where_the_target_typically_lies_and_one_side_steps_out() -> None:
    # x264's default crf 23 typically scores 97: the target lies ln(7 / 3) / 0.15 = 5.6 steps higher.
    start = {"default": 23, "low": 0, "high": 51, "step": 1.0, "slope": SLOPE}
    assert [first_value(target=t, **start) for t in (80.0, 93.0, 97.0, 99.0)] == [36, 29, 23, 16]
    assert first_value(target=93.0, **{**start, "step": 0.25}) == 28.75
    assert first_value(target=70.0, **{**start, "high": 35}) == 35  # inside the range asked
    bounds = Bounds(93.0, 0, 51, 23)
    assert next_value([], bounds) == 23
    # Above the target: up the knob (smaller files) by what the typical slope of ln(100 - score) says,
    # ln(7 / 3) / 0.15 = 5.6 steps; below: down. Far off, at most MAX_STEP.
    assert next_value([Probe(23, 97.0, 1, 1.0)], bounds) == 29
    assert next_value([Probe(23, 89.0, 1, 1.0)], bounds) == 20
    assert next_value([Probe(23, 99.9, 1, 1.0)], bounds) == 31
    assert next_value([Probe(23, 60.0, 1, 1.0)], bounds) == 15


def exponential(value: float) -> float:
    """VMAF's usual shape: the room left below 100 grows by a constant factor per knob step."""
    return 100 - 1.5 * math.exp(0.17 * (value - 23))


def test_the_model_lands_next_to_the_answer_in_three_probes() -> None:
    # The answer is 32.06; the typical slope (0.15) is not this curve's (0.17), so the jump overshoots
    # and the line through the two probes brackets it.
    probes, chosen = run_search(Bounds(93.0, 0, 51, 23, step=0.25), exponential)
    assert len(probes) <= 3, probes
    assert chosen is not None and 93.0 <= exponential(chosen) < 93.5


def test_fractional_steps_come_closer_than_whole_ones() -> None:
    target = 93.6  # between whole values: 31 scores 94.35, 32 scores 93.07
    _, whole = run_search(Bounds(target, 0, 51, 23), exponential)
    _, quarter = run_search(Bounds(target, 0, 51, 23, step=0.25), exponential)
    assert whole == 31 and quarter is not None and quarter % 0.25 == 0 and quarter > 31
    assert target <= exponential(quarter) < exponential(whole)


def test_a_knobs_value_is_written_on_its_own_grid() -> None:
    x264 = quality_knob(Family.cpu, VideoCodec.h264)
    assert (x264.step, x264.value(27.25), x264.value(27.0), x264.value(27.3)) == (
        0.25,
        "27.25",
        "27",
        "27.25",
    )
    svt = quality_knob(Family.cpu, VideoCodec.av1)
    assert (svt.step, svt.value(35.25)) == (1.0, "35")
    assert quality_knob(Family.nvenc, VideoCodec.h264).step == 0.25
    assert quality_knob(Family.qsv, VideoCodec.h264).value(27.75) == "28"
    args = video_encoder_args(VideoEncode(VideoCodec.h264, crf=27.25), Family.cpu)
    assert args[args.index("-crf") + 1] == "27.25"


def test_a_fractional_crf_is_taken_where_the_encoder_takes_it() -> None:
    job = JobSpec.model_validate(target_spec({"video": {"codec": "hevc", "crf": 27.25}}))
    assert job.outputs[0].video.crf == 27.25
    whole = JobSpec.model_validate(target_spec({"video": {"crf": 23}}))
    assert whole.model_dump(mode="json")["outputs"][0]["video"]["crf"] == 23  # still written as typed
    webm = {"container": "webm", "audio": {"codec": "none"}}
    for output, field in (
        ({**webm, "video": {"codec": "vp9", "crf": 30.5}}, "outputs.0.video.crf"),
        ({"video": {"crf": 23.1}}, "outputs.0.video.crf"),
    ):
        assert any(loc == field for loc, _ in errors(target_spec(output))), output


def test_a_small_reel_is_raw_pictures_and_a_large_one_ffv1() -> None:
    from pathlib import Path

    assert reel_name(width=384, height=216, bit_depth=8, fps=24.0, seconds=12.0) == "reel.nut"
    assert reel_name(width=3840, height=2160, bit_depth=10, fps=60.0, seconds=12.0) == "reel.mkv"
    raw = reel_args(Path("/in.mp4"), [(0.0, 4.0)], Path("/w/reel.nut"), threads=2, keep_rotation=True)
    assert raw[raw.index("-c:v") + 1] == "rawvideo" and "ffv1" not in raw


@pytest.mark.parametrize(
    ("quality", "display"),
    [(None, (1280, 720)), ({"display": {"width": 1920, "height": 1080}}, (1920, 1080))],
)
def test_the_search_scores_a_scaled_output_as_its_result_will_be_scored(
    quality: dict[str, Any] | None, display: tuple[int, int]
) -> None:
    """A probe of a scaled output is scored at display size, so the target is met by the score the output
    reports (its own-size score would look better than viewers see it, and is not measured: unused)."""
    from pathlib import Path

    from framefleet.media.filters import Assets
    from framefleet.worker.quality_search import Reel, plan_probe, probe_spec
    from tests.unit.test_media_plan import CAPS, media

    body = target_spec({"video": {"height": 360}, "quality_target": {"metric": "vmaf", "value": 90}})
    spec = JobSpec.model_validate({**body, **({"quality": quality} if quality else {})})
    reel = Reel(Path("/work/reel.mkv"), media(1280, 720), [(0.0, 2.0)], 10.0)
    probe = probe_spec(spec, spec.outputs[0], 28, reel.path)
    plan = plan_probe(probe, reel, CAPS, Path("/work/probe"), threads=1, hardware=None, assets=Assets())
    (score,) = plan.scores
    assert score.display == display and [m.value for m in score.quality.metrics] == ["vmaf"]
    assert score.native is None and plan.argv[-5:] == ["-map", "[qv0]", "-f", "null", "-"]
