"""Scoring inside the encoding process, against real ffmpeg: alignment under trim and fps changes, the same
numbers as a classic separate pass, every model and metric set.

Needs only the ffmpeg binary: `pytest tests/media/test_quality_inprocess.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framefleet.core.spec import Metric, QualitySpec, VmafModel
from framefleet.media.command import JobPlan
from framefleet.media.quality import ScoreLogs, build_quality, read_scores, summarise
from framefleet.media.results import collect_results
from framefleet.media.runner import run_ffmpeg
from tests.conftest import make_clip
from tests.media.helpers import run_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(ffmpeg, tmp_path_factory.mktemp("q") / "src.mp4", seconds=3, size="320x240")


def run_job(ffmpeg: str, spec: dict[str, Any], source: Path, work: Path) -> tuple[JobPlan, dict[str, Any]]:
    job, plan, result = run_plan(ffmpeg, spec, source, work)
    assert result.stderr_tail == ""
    rows = {row.name: row for row in collect_results(plan, job, "file:///published/job").rows}
    return plan, rows


def test_trim_and_fps_change_stay_frame_aligned(ffmpeg: str, source: Path, tmp_path: Path) -> None:
    spec = {
        "outputs": [
            {"name": "slow", "container": "mp4", "video": {"fps": 12.5, "crf": 16, "preset": "veryfast"}},
            {"name": "small", "container": "mkv", "video": {"width": 160, "crf": 16, "preset": "veryfast"}},
        ],
        "operations": {"trim": {"start": 0.52, "duration": 2}},
        "quality": {"subsample": 1},
    }
    plan, rows = run_job(ffmpeg, spec, source, tmp_path / "w")
    assert [s.name for s in plan.scores] == ["slow", "small"]
    slow, small = rows["slow"].metrics, rows["small"].metrics
    # 2 s at 12.5 fps and at 25 fps: every frame scored against exactly the frame the encoder was given.
    assert slow["frames"] == 25 and small["frames"] == 50 and small["native"]["frames"] == 50
    # At its own size (upscaled to the source's, scaling loss lowers the score: see test_broadcast.py).
    for metrics in (slow, small["native"]):
        assert metrics["vmaf"]["p1"] > 85 and metrics["vmaf"]["mean"] > 93
        assert metrics["psnr"]["min"] > 35 and metrics["ssim"]["min"] > 0.97
    assert rows["slow"].metrics_log_uri == "file:///published/job/slow.mp4.quality.json"


def test_a_scaled_output_of_an_untagged_hd_source_scores_without_a_colour_shift(
    ffmpeg: str, tmp_path: Path
) -> None:
    # The encoded stream is tagged BT.709 (what an untagged HD source is taken to be) and the reference is
    # untagged: scored as they came, the graph converted one side's matrix and a clean encode scored ~22 dB.
    hd = make_clip(ffmpeg, tmp_path / "hd.mp4", seconds=1, size="1280x720")
    spec = {
        "outputs": [
            {"name": "sd", "container": "mp4", "video": {"height": 360, "crf": 16, "preset": "veryfast"}}
        ],
        "quality": {"metrics": ["psnr", "ssim"], "subsample": 1},
    }
    _, rows = run_job(ffmpeg, spec, hd, tmp_path / "w")
    native = rows["sd"].metrics["native"]
    assert native["psnr"]["min"] > 35 and native["ssim"]["min"] > 0.97, native


def test_in_process_scores_equal_a_separate_pass(ffmpeg: str, source: Path, tmp_path: Path) -> None:
    spec = {
        "outputs": [
            {"name": "o", "container": "mp4", "video": {"height": 120, "crf": 30, "preset": "veryfast"}}
        ],
        "quality": {"subsample": 3},
    }
    plan, rows = run_job(ffmpeg, spec, source, tmp_path / "w")
    quality = QualitySpec(subsample=3)
    # The output is 160x120: scored upscaled to the source's 320x240, and at its own size as `native`.
    for display, inside in (((320, 240), rows["o"].metrics), (None, rows["o"].metrics["native"])):
        log = tmp_path / f"separate{display}.json"
        argv = build_quality(
            plan.outputs[0].path,
            source,
            width=160,
            height=120,
            fps=25.0,
            quality=quality,
            log_path=log,
            threads=2,
            display=display,
        )
        assert run_ffmpeg([ffmpeg, *argv], on_progress=None, duration=None).returncode == 0
        apart = summarise(
            read_scores(ScoreLogs(log), quality), quality, model="vmaf_v0.6.1", fps=25, segment_seconds=None
        )
        assert inside["frames"] == apart["frames"] == 25
        for key in ("vmaf", "psnr", "ssim"):
            assert inside[key]["mean"] == pytest.approx(apart[key]["mean"], rel=1e-3), key


@pytest.mark.parametrize(
    ("quality", "keys"),
    [
        ({"metrics": ["vmaf"], "vmaf_model": "vmaf_4k_v0.6.1"}, {"vmaf"}),
        ({"metrics": ["vmaf", "ssim"], "phone": True, "threads": 1}, {"vmaf", "vmaf_phone", "ssim"}),
        ({"metrics": ["psnr", "ssim"]}, {"psnr", "ssim"}),
        ({"metrics": ["psnr"], "vmaf_model": "vmaf_v0.6.1neg"}, {"psnr"}),
    ],
)
def test_every_metric_set_and_model_runs(
    ffmpeg: str, source: Path, tmp_path: Path, quality: dict[str, Any], keys: set[str]
) -> None:
    spec = {
        "outputs": [{"name": "o", "container": "mp4", "video": {"preset": "ultrafast"}}],
        "quality": quality,
    }
    _, rows = run_job(ffmpeg, spec, source, tmp_path / "w")
    metrics = rows["o"].metrics
    assert keys <= set(metrics) and not ({"vmaf", "vmaf_phone", "psnr", "ssim"} - keys) & set(metrics)
    assert metrics["frames"] == 11  # 75 frames, every 7th
    if "vmaf" in keys:
        assert metrics["model"] == quality.get("vmaf_model", "vmaf_v0.6.1")
    if "vmaf_phone" in keys:
        assert metrics["vmaf_phone"]["mean"] >= metrics["vmaf"]["mean"]
    assert metrics["worst_segment"]["metric"] == next(k for k in ("vmaf", "ssim", "psnr") if k in keys)


def test_copy_pictures_and_sound_are_not_scored(ffmpeg: str, source: Path, tmp_path: Path) -> None:
    spec = {
        "outputs": [
            {"name": "copy", "container": "mkv", "video": {"codec": "copy"}, "audio": {"codec": "copy"}},
            {"name": "anim", "container": "gif", "video": {"width": 80, "fps": 5}},
            {"name": "sound", "container": "m4a"},
        ],
        "quality": {"metrics": [Metric.vmaf.value], "vmaf_model": VmafModel.default.value},
    }
    plan, rows = run_job(ffmpeg, spec, source, tmp_path / "w")
    assert plan.scores == [] and all(row.metrics is None for row in rows.values())
    assert "-dec" not in plan.argv and "libvmaf" not in " ".join(plan.argv)


def test_pictures_too_small_for_libvmaf_are_scored_without_it(ffmpeg: str, tmp_path: Path) -> None:
    """libvmaf crashes on a 16x16 picture (it scores 18x18): the job succeeds, VMAF is skipped with its
    reason, and PSNR and SSIM are still measured, by ffmpeg's own filters."""
    tiny = make_clip(ffmpeg, tmp_path / "tiny.mp4", seconds=1, size="16x16")
    spec = {
        "outputs": [{"name": "o", "container": "mp4", "video": {"preset": "veryfast"}}],
        "groups": [{"name": "abr", "type": "hls", "ladder": ["240p", "360p"], "segment_seconds": 1}],
        "quality": {"metrics": ["vmaf", "psnr", "ssim"], "subsample": 1},
    }
    plan, rows = run_job(ffmpeg, spec, tiny, tmp_path / "w")
    assert "libvmaf" not in " ".join(plan.argv)
    for name in ("o", "abr/240p"):
        metrics = rows[name].metrics
        assert metrics["skipped"] == {
            "vmaf": "libvmaf cannot score pictures under 18x18; this one is 16x16"
        }, name
        assert "vmaf" not in metrics and metrics["frames"] == 25
        assert metrics["psnr"]["min"] > 25 and metrics["ssim"]["min"] > 0.8
        assert rows[name].metrics_log_uri is not None


def test_vmaf_alone_on_a_tiny_picture_is_skipped_not_failed(ffmpeg: str, tmp_path: Path) -> None:
    tiny = make_clip(ffmpeg, tmp_path / "tiny.mp4", seconds=1, size="16x16")
    spec = {
        "outputs": [{"name": "o", "container": "mp4", "video": {"preset": "veryfast"}}],
        "quality": {"metrics": ["vmaf"]},
    }
    plan, rows = run_job(ffmpeg, spec, tiny, tmp_path / "w")
    assert "-dec" not in plan.argv  # nothing left to compare: no loopback decoder, no scoring graph
    assert rows["o"].metrics == {
        "skipped": {"vmaf": "libvmaf cannot score pictures under 18x18; this one is 16x16"}
    }
    assert rows["o"].metrics_log_uri is None
