"""Ladders, pictures and scores as one job on a real worker: rows, SSE events, publishing order, clean-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framefleet import events
from framefleet.redis_client import get_redis
from tests.conftest import tenant_dir
from tests.integration.test_worker_jobs import local_path, run_to_end
from tests.media.helpers import still_image
from tests.media.streaming import read_master, read_media

pytestmark = pytest.mark.integration


SPEC: dict[str, Any] = {
    "groups": [
        {
            "name": "abr",
            "type": "hls",
            "ladder": ["360p", "240p", {"name": "low", "height": 120, "bitrate_kbps": 150}],
            "segment_seconds": 1,
            "preset": "veryfast",
        }
    ],
    "thumbnails": [{"name": "thumbs", "every_seconds": 1, "width": 160}],
    "sprites": [{"name": "hover", "every_seconds": 0.5, "columns": 2, "rows": 2, "width": 64}],
    "poster": {"time": 1.0, "format": "png"},
    "quality": {"metrics": ["vmaf", "psnr", "ssim"]},
}


def test_a_scored_ladder_with_pictures_in_one_job(
    worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path
) -> None:
    _, key = tenant_key
    job = run_to_end(api, key, {"input": clip.as_uri(), **SPEC})
    assert job["state"] == "succeeded", job
    outputs = {o["name"]: o for o in job["outputs"]}
    assert set(outputs) == {
        "abr",
        "abr/240p",
        "abr/low",
        "abr/aac_128k",
        "thumbs",
        "hover",
        "hover/vtt",
        "poster",
    }
    for name in ("abr/240p", "abr/low"):
        metrics = outputs[name]["metrics"]
        assert {"vmaf", "psnr", "ssim", "worst_segment", "frames", "subsample"} <= set(metrics)
        assert metrics["subsample"] == 7 and {"p1", "p5", "p50"} <= set(metrics["vmaf"])
        assert local_path(outputs[name]["metrics_log_uri"]).is_file()

    stream = events.history(get_redis(), job["id"])
    announced = {e.data["name"]: e.data for e in stream if e.type == "output"}
    assert announced["abr"]["kind"] == "manifest"
    assert announced["abr"]["details"]["dropped"] == [
        {"name": "360p", "reason": "480x360 is above the 320x240 source"}
    ]
    assert announced["abr/240p"]["kind"] == "rendition" and announced["abr/240p"]["group"] == "abr"
    assert announced["abr/240p"]["details"]["codecs"].startswith("avc1.")
    assert announced["thumbs"]["kind"] == "thumbnails" and len(announced["thumbs"]["details"]["files"]) == 2
    assert announced["hover/vtt"]["kind"] == "vtt" and announced["poster"]["kind"] == "poster"
    scored = {e.data["name"]: e.data for e in stream if e.type == "metrics"}
    assert set(scored) == {"abr/240p", "abr/low"}
    assert scored["abr/low"]["group"] == "abr" and scored["abr/low"]["kind"] == "rendition"

    master = local_path(outputs["abr"]["uri"])
    folder = master.parent
    media = [folder / v["URI"] for v in read_master(master).variants]
    segments = [folder / name for playlist in media for name, _ in read_media(playlist).segments]
    # Published last: nothing a manifest names was put after it.
    assert all(p.stat().st_mtime_ns <= master.stat().st_mtime_ns for p in [*segments, *media])
    vtt = local_path(outputs["hover/vtt"]["uri"])
    assert vtt.read_text().startswith("WEBVTT") and "#xywh=0,0,64,48" in vtt.read_text()
    assert all(
        local_path(s).stat().st_mtime_ns <= vtt.stat().st_mtime_ns
        for s in announced["hover"]["details"]["sheets"]
    )
    assert local_path(outputs["poster"]["uri"]).read_bytes()[:4] == b"\x89PNG"


def test_a_failed_publish_leaves_nothing_behind(
    worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path
) -> None:
    tenant, key = tenant_key
    blocker = tenant_dir(tenant) / "blocker"
    blocker.write_bytes(b"a file where the poster's folder should be")
    spec = {
        "input": clip.as_uri(),
        "groups": [
            {"name": "abr", "type": "dash", "ladder": ["240p"], "segment_seconds": 1, "preset": "ultrafast"}
        ],
        # Cannot be written: refused when its turn comes, after the segments were put.
        "poster": {"destination": (blocker / "poster.jpg").as_uri()},
    }
    job = run_to_end(api, key, spec)
    assert job["state"] == "failed" and job["failure_class"] == "storage_denied", job
    from framefleet.config import get_settings
    from framefleet.storage.namespace import job_output_base

    folder = local_path(job_output_base(get_settings(), tenant, job["id"]))
    leftovers = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert leftovers == []
    assert job["outputs"] == []


def test_operations_fetch_their_files_from_storage(
    worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path, media_root: Path, ffmpeg: str
) -> None:
    _, key = tenant_key
    assets = media_root / "inputs" / "assets"  # the shared library
    assets.mkdir(exist_ok=True)
    mark = still_image(ffmpeg, assets / "logo mark's.png", "color=white:s=64x32,format=rgba")
    subtitles = assets / "talk [en].srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,500\nHello, world; it's [fine]\n")
    spec = {
        "input": clip.as_uri(),
        "outputs": [{"name": "edit", "container": "mp4", "video": {"preset": "ultrafast"}}],
        "operations": {
            "trim": {"start": 0.2, "duration": 1.2},
            "watermark": {"uri": mark.as_uri(), "position": "bottom_right", "opacity": 0.5},
            "subtitles": {"uri": subtitles.as_uri()},
            "loudness": {"integrated": -20},
            "channel_mix": {"layout": "stereo"},
        },
    }
    job = run_to_end(api, key, spec)
    assert job["state"] == "succeeded", job
    (output,) = job["outputs"]
    assert output["duration_seconds"] == pytest.approx(1.2, abs=0.05)
    assert output["width"] == 320 and output["audio_codec"] == "aac"
    # The stereo mix, normalised, is measured again (ebur128) and the reading stored with the output.
    assert output["metrics"]["loudness"]["target_lufs"] == -20, output
    phases = {e.data.get("phase") for e in events.history(get_redis(), job["id"]) if e.type == "progress"}
    assert {"loudness", "encode"} <= phases
