"""Per-title ladders (`ladder: "auto"`), the pure parts: the spec's form and checks, and the rungs chosen
from the candidates' bitrate/quality curves (the worker test runs it for real)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from framefleet.core.ladders import AUTO_CANDIDATES, AutoLadderSpec
from framefleet.core.spec import JobSpec
from framefleet.media.autoladder import (
    MIN_RATIO,
    Point,
    crf_at,
    curves,
    envelope_at,
    plan_ladder,
    quality_at,
    sample_crfs,
)
from tests.unit.test_spec import errors

ORDER = ["1080p", "720p", "360p"]
HEIGHTS = {"1080p": 1080, "720p": 720, "360p": 360}
# Each size's curve: VMAF = ceiling - room * exp(-kbps / scale): a small picture is good at few bits but
# tops out low (upscaled), a large one needs many bits and tops out high.
SHAPES = {"1080p": (99.0, 80.0, 2500.0), "720p": (96.0, 70.0, 1200.0), "360p": (84.0, 60.0, 300.0)}


def synthetic(shapes: dict[str, tuple[float, float, float]] = SHAPES) -> list[Point]:
    points = []
    for rung, (ceiling, room, scale) in shapes.items():
        for crf in sample_crfs(51):
            kbps = scale * 4 * 0.5 ** ((crf - 20) / 6)  # x264: crf + 6 halves the bitrate
            vmaf = ceiling - room * math.exp(-kbps / scale)
            points.append(Point(rung, HEIGHTS[rung] * 16 // 9, HEIGHTS[rung], crf, kbps, vmaf))
    return points


def group(ladder: Any, **extra: Any) -> dict[str, Any]:
    return {"input": "file:///media/in.mp4", "groups": [{"type": "hls", "ladder": ladder, **extra}]}


def test_auto_ladder_holds_every_candidate_size_and_its_settings() -> None:
    job = JobSpec.model_validate(group("auto", auto_ladder={"max_rungs": 3, "top_vmaf": 93}))
    (spec,) = job.groups
    assert [r.name for r in spec.ladder] == list(AUTO_CANDIDATES)
    assert spec.auto_ladder == AutoLadderSpec(max_rungs=3, top_vmaf=93)
    # Stored and read back, it is the same job (the candidates are a list now, with auto_ladder beside).
    assert JobSpec.model_validate(job.model_dump(mode="json")).groups[0].auto_ladder == spec.auto_ladder
    assert JobSpec.model_validate(group("auto")).groups[0].auto_ladder == AutoLadderSpec()
    # A fixed ladder has none, and dumps none.
    fixed = JobSpec.model_validate(group("standard"))
    assert fixed.groups[0].auto_ladder is None and "auto_ladder" not in fixed.model_dump()["groups"][0]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (group("standard", auto_ladder={}), "groups.0.auto_ladder", 'ladder "auto"'),
        (
            group("auto", auto_ladder={"min_bitrate_kbps": 900, "max_bitrate_kbps": 400}),
            "groups.0.auto_ladder.max_bitrate_kbps",
            "at least min_bitrate_kbps",
        ),
        (group("auto", auto_ladder={"max_rungs": 9}), "groups.0.auto_ladder.max_rungs", "8"),
        (group("auto", auto_ladder={"top_vmaf": 0}), "groups.0.auto_ladder.top_vmaf", "1"),
        (group("automatic"), "groups.0.ladder", "or auto"),
    ],
)
def test_bad_auto_ladders_name_the_field(body: dict[str, Any], field: str, words: str) -> None:
    found = errors(body)
    assert any(loc == field and words in msg for loc, msg in found), found


def test_curves_keep_only_points_that_buy_quality() -> None:
    noisy = [*synthetic(), Point("360p", 640, 360, 44, 5000.0, 50.0)]  # dearer and worse: noise
    found = curves(noisy)
    assert len(found["360p"]) == 4
    for curve in found.values():
        assert all(a.kbps < b.kbps and a.vmaf < b.vmaf for a, b in itertools.pairwise(curve))
    curve = found["720p"]
    assert quality_at(curve, curve[0].kbps / 2) is None  # nothing measured there
    middle = math.sqrt(curve[0].kbps * curve[1].kbps)
    assert quality_at(curve, middle) == pytest.approx((curve[0].vmaf + curve[1].vmaf) / 2)
    assert crf_at(curve, middle) == pytest.approx((curve[0].crf + curve[1].crf) / 2)


def test_small_pictures_win_at_low_bitrates_and_large_ones_at_high() -> None:
    found = curves(synthetic())
    assert envelope_at(found, 400.0)[0] == "360p"  # type: ignore[index]
    assert envelope_at(found, 9000.0)[0] == "1080p"  # type: ignore[index]


def test_the_ladder_climbs_the_envelope_to_the_top_quality() -> None:
    auto = AutoLadderSpec(max_rungs=4, min_bitrate_kbps=300, top_vmaf=95)
    rungs = plan_ladder(synthetic(), auto, order=ORDER, step=0.25)
    assert 2 <= len(rungs) <= 4
    rates = [r.kbps for r in rungs]
    assert rates[0] == pytest.approx(300) and all(
        b / a >= MIN_RATIO - 1e-6 for a, b in itertools.pairwise(rates)
    )
    # The top rung is the cheapest point of the envelope reaching 95, within the grid's resolution.
    top = rungs[-1]
    assert top.vmaf >= 95 - 0.05 and top.rung in ("720p", "1080p")
    cheaper = top.kbps / 1.05
    assert envelope_at(curves(synthetic()), cheaper)[1] < 95  # type: ignore[index]
    # Sizes never shrink going up; the bottom rung is the small picture; crf on the quarter grid.
    ranks = [ORDER.index(r.rung) for r in rungs]
    assert ranks == sorted(ranks, reverse=True) and rungs[0].rung == "360p"
    assert all(r.crf % 0.25 == 0 for r in rungs)
    assert len({r.name for r in rungs}) == len(rungs)


def test_max_rungs_the_bitrate_cap_and_an_easy_title() -> None:
    two = plan_ladder(synthetic(), AutoLadderSpec(max_rungs=2, top_vmaf=95), order=ORDER, step=1.0)
    assert len(two) == 2 and all(isinstance(r.crf, int) for r in two)
    capped = plan_ladder(
        synthetic(), AutoLadderSpec(max_rungs=4, max_bitrate_kbps=1500, top_vmaf=99), order=ORDER, step=1.0
    )
    assert capped[-1].kbps <= 1500 * 1.0001 and capped[-1].vmaf < 99  # out of reach: the best under the cap
    # A title whose every size is near-transparent at few bits needs one rung, whatever max_rungs allows.
    easy = {rung: (99.5, 10.0, 40.0) for rung in ORDER}
    few = plan_ladder(synthetic(easy), AutoLadderSpec(max_rungs=6, top_vmaf=95), order=ORDER, step=1.0)
    assert len(few) == 1
    # A cap below every sample: one rung at the cap, at the cheapest crf measured.
    (held,) = plan_ladder(
        synthetic(), AutoLadderSpec(min_bitrate_kbps=50, max_bitrate_kbps=60), order=ORDER, step=1.0
    )
    assert (held.rung, held.kbps, held.crf) == ("360p", 60.0, 38)
