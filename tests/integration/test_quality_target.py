"""Target-quality encoding end to end: API → real worker → sample encodes scored with VMAF → the encode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framefleet import events
from framefleet.redis_client import get_redis
from tests.conftest import make_clip
from tests.integration.test_worker_jobs import run_to_end

pytestmark = pytest.mark.integration
TARGET = 93.0


@pytest.fixture(scope="module")
def tiny_clip(ffmpeg: str, media_root: Path) -> Path:
    return make_clip(ffmpeg, media_root / "inputs" / "target-160.mp4", seconds=2, size="160x120", audio=True)


def test_a_quality_target_is_searched_recorded_and_met(
    worker: Any, api: Any, tenant_key: tuple[str, str], tiny_clip: Path
) -> None:
    _, key = tenant_key
    spec = {
        "input": tiny_clip.as_uri(),
        "outputs": [
            {
                "name": "tq",
                "container": "mp4",
                "video": {"codec": "h264", "preset": "veryfast"},
                "quality_target": {"value": TARGET, "min_crf": 15, "max_crf": 45},
            }
        ],
        "quality": {"metrics": ["vmaf"], "subsample": 1},
    }
    job = run_to_end(api, key, spec, timeout=60)
    assert job["state"] == "succeeded", job
    (output,) = job["outputs"]
    search = output["details"]["quality_target"]
    assert (search["metric"], search["target"], search["knob"], search["range"]) == (
        "vmaf",
        TARGET,
        "crf",
        [15, 45],
    )
    # x264 takes a fractional crf: the search moves in quarter steps.
    assert search["met"] and 15 <= search["chosen"] <= 45 and search["chosen"] % 0.25 == 0
    probes = {p["value"]: p for p in search["probes"]}
    assert 1 <= len(probes) <= 6 and search["chosen"] in probes
    # The chosen value is the highest that met the target: any higher value probed missed it.
    assert all(p["score"] < TARGET for v, p in probes.items() if v > search["chosen"])
    assert all(p["size_bytes"] > 0 and p["kbps"] > 0 for p in probes.values())
    # A 2 s input is searched whole, so the samples are the encode and the prediction holds closely.
    assert search["samples"] == [{"start": 0.0, "seconds": 2.0}]
    assert search["real_video_bytes"] > 0 and abs(search["size_error"]) < 0.05
    # The output's own score (every frame) meets the target within a point (the probes score every 3rd).
    final = output["metrics"]["vmaf"]["mean"]
    assert abs(final - search["predicted_score"]) < 0.5
    assert TARGET - 0.5 <= final <= TARGET + 1.0, (final, search)

    stream = events.history(get_redis(), job["id"])
    phases = [e.data["phase"] for e in stream if e.type == "progress"]
    assert "quality-search" in phases and "encode" in phases
    assert phases.index("quality-search") < phases.index("encode")


def test_a_quality_target_with_a_bitrate_is_refused_naming_the_field(
    api: Any, tenant_key: tuple[str, str], tiny_clip: Path
) -> None:
    _, key = tenant_key
    body = {
        "input": tiny_clip.as_uri(),
        "outputs": [
            {"container": "mp4", "video": {"bitrate_kbps": 800}, "quality_target": {"value": TARGET}}
        ],
    }
    response = api.post("/v1/jobs", json=body, headers={"X-API-Key": key})
    assert response.status_code == 422, response.text
    fields = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "outputs.0.video.bitrate_kbps" in fields, fields
