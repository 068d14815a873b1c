"""A per-title ladder end to end: API → real worker → each candidate size sampled and scored → the rungs
chosen on the envelope encoded as an HLS group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_clip
from tests.integration.test_worker_jobs import local_path, run_to_end
from tests.media.streaming import read_master

pytestmark = pytest.mark.integration
TOP = 90.0


@pytest.fixture(scope="module")
def wide_clip(ffmpeg: str, media_root: Path) -> Path:
    # 640x360: the candidates that fit are 360p (640x360) and 240p (426x240).
    return make_clip(ffmpeg, media_root / "inputs" / "auto-360.mp4", seconds=1, size="640x360", rate=24)


def test_an_auto_ladder_samples_each_size_and_encodes_the_chosen_rungs(
    worker: Any, api: Any, tenant_key: tuple[str, str], wide_clip: Path
) -> None:
    _, key = tenant_key
    spec = {
        "input": wide_clip.as_uri(),
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "ladder": "auto",
                "auto_ladder": {"max_rungs": 3, "min_bitrate_kbps": 100, "top_vmaf": TOP},
                "segment_seconds": 1,
                "preset": "veryfast",
            }
        ],
        "quality": {"metrics": ["vmaf"], "subsample": 1},
    }
    job = run_to_end(api, key, spec, timeout=120)
    assert job["state"] == "succeeded", job
    outputs = {o["name"]: o for o in job["outputs"]}
    auto = outputs["abr"]["details"]["auto_ladder"]
    assert (auto["max_rungs"], auto["min_bitrate_kbps"], auto["top_vmaf"]) == (3, 100, TOP)
    # Every candidate that fits the source was sampled at four crf values, scored at display size.
    sampled = {(p["rung"], p["width"], p["height"]) for p in auto["points"]}
    assert sampled == {("360p", 640, 360), ("240p", 426, 240)}
    assert len(auto["points"]) == 8 and all(p["kbps"] > 0 and 0 < p["vmaf"] <= 100 for p in auto["points"])
    rungs = auto["rungs"]
    assert 1 <= len(rungs) <= 3
    assert [r["kbps"] for r in rungs] == sorted(r["kbps"] for r in rungs)
    # Only the chosen rungs were encoded, each at its crf under a cap of 1.5x its predicted bitrate.
    renditions = {n.removeprefix("abr/"): o for n, o in outputs.items() if o["kind"] == "rendition"}
    assert set(renditions) == {r["name"] for r in rungs}
    sizes = {"360p": (640, 360), "240p": (426, 240)}
    for rung in rungs:
        row = renditions[rung["name"]]
        assert (row["width"], row["height"]) == sizes[rung["rung"]]
        assert rung["crf"] % 0.25 == 0
        # The whole input is the sample here, so the rung scores what its samples predicted.
        assert abs(row["metrics"]["vmaf"]["mean"] - rung["vmaf"]) < 2, (row["metrics"]["vmaf"], rung)
    top = renditions[rungs[-1]["name"]]
    assert top["metrics"]["vmaf"]["mean"] >= TOP - 2
    master = read_master(local_path(outputs["abr"]["uri"]))
    assert len(master.variants) == len(rungs)


def test_an_auto_ladder_with_a_fixed_ladder_is_refused_naming_the_field(
    api: Any, tenant_key: tuple[str, str], wide_clip: Path
) -> None:
    _, key = tenant_key
    body = {
        "input": wide_clip.as_uri(),
        "groups": [{"type": "hls", "ladder": "standard", "auto_ladder": {"top_vmaf": 95}}],
    }
    response = api.post("/v1/jobs", json=body, headers={"X-API-Key": key})
    assert response.status_code == 422, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert "groups.0.auto_ladder" in fields, fields
