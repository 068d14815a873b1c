"""Quality scoring: the one-pass graph, model choice, log reading, pooling, percentiles, worst segment.

tests/unit/data/quality/ holds real logs of one pass: a 160x120 x264 encode scored against its 320x240
source with n_subsample=5 ('all': VMAF with the phone model and PSNR feature, plus ffmpeg's ssim filter;
'stats': PSNR and SSIM from ffmpeg's filters alone).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import JobSpec, Metric, QualitySpec, VmafModel
from framefleet.media.quality import (
    ScoreLogs,
    build_quality,
    collect,
    escape_graph_text,
    escape_option_value,
    metric_chains,
    percentile,
    read_scores,
    stream_metrics,
    summarise,
    vmaf_model_for,
    worst_segment,
)

DATA = Path(__file__).parent / "data" / "quality"
ALL = ScoreLogs(DATA / "all.quality.json")
STATS = ScoreLogs(DATA / "stats.quality.json")


def graph_of(args: list[str]) -> str:
    return args[args.index("-filter_complex") + 1]


def chains(quality: QualitySpec, model: str = "vmaf_v0.6.1") -> tuple[list[str], list[str]]:
    return metric_chains(
        "dec:0",
        "dec:1",
        "0",
        quality,
        model=model,
        logs=ScoreLogs(Path("/w/q.json")),
        threads=2,
        work_fmt="yuv420p",
    )


# --- the spec ------------------------------------------------------------------------------------------


def test_defaults_score_every_seventh_frame_with_the_model_chosen_by_size() -> None:
    quality = QualitySpec()
    assert quality.subsample == 7 and quality.subsample % 2 == 1
    # 7 is prime to the usual GOP lengths, so sampled frames are not stuck on keyframes.
    assert all(math.gcd(7, gop) == 1 for gop in (24, 25, 30, 48, 50, 60, 100, 120, 250))
    assert quality.vmaf_model is VmafModel.auto and quality.phone is False and quality.threads is None
    assert quality.metrics == [Metric.vmaf, Metric.psnr, Metric.ssim]


def test_phone_model_needs_vmaf() -> None:
    with pytest.raises(ValueError, match="phone"):
        QualitySpec(metrics=[Metric.psnr], phone=True)


def test_a_first_release_quality_spec_keeps_its_explicit_values() -> None:
    spec = JobSpec.model_validate(
        {
            "input": "file:///in.mp4",
            "outputs": [{"container": "mp4"}],
            "quality": {"metrics": ["vmaf"], "vmaf_model": "vmaf_v0.6.1", "subsample": 1},
        }
    )
    dumped = spec.model_dump(mode="json")["quality"]
    assert dumped == {"metrics": ["vmaf"], "vmaf_model": "vmaf_v0.6.1", "subsample": 1}


@pytest.mark.parametrize(
    ("size", "model"),
    [
        ((1920, 1080), "vmaf_v0.6.1"),
        ((2560, 1440), "vmaf_v0.6.1"),
        ((3840, 2160), "vmaf_4k_v0.6.1"),
        ((2160, 3840), "vmaf_4k_v0.6.1"),  # portrait UHD
        ((4096, 1716), "vmaf_4k_v0.6.1"),  # DCI scope: 4K wide, fewer lines
        ((640, 360), "vmaf_v0.6.1"),
    ],
)
def test_auto_model_follows_the_scored_picture_size(size: tuple[int, int], model: str) -> None:
    assert vmaf_model_for(QualitySpec(), *size) == model


def test_an_explicit_model_is_kept_at_any_size() -> None:
    assert vmaf_model_for(QualitySpec(vmaf_model=VmafModel.default), 3840, 2160) == "vmaf_v0.6.1"
    assert vmaf_model_for(QualitySpec(vmaf_model=VmafModel.neg), 640, 360) == "vmaf_v0.6.1neg"


# --- graph chains ----------------------------------------------------------------------------------------


def test_all_three_metrics_read_each_pair_once() -> None:
    found, outputs = chains(QualitySpec())
    graph = ";".join(found)
    untagged = "setparams=range=unknown:color_primaries=unknown:color_trc=unknown:colorspace=unknown"
    prep = f"{untagged},setpts=PTS-STARTPTS,format=yuv420p"
    assert found[0] == f"[dec:0]{prep},split=2[qd0v][qd0s]"
    assert found[1] == f"[dec:1]{prep},split=2[qr0v][qr0s]"
    assert found[2] == (
        "[qd0v][qr0v]libvmaf=model=version=vmaf_v0.6.1\\\\:name=vmaf:feature=name=psnr:log_fmt=json"
        ":log_path=/w/q.json.vmaf.json:n_threads=2:n_subsample=7:shortest=1[qv0]"
    )
    # SSIM from ffmpeg's filter on the same subsampled frames libvmaf scores.
    assert "[qd0s]select=expr=not(mod(n\\,7))[qd0sp]" in found
    assert "[qd0sp][qr0sp0]ssim=stats_file=/w/q.json.ssim.log:shortest=1[qs0]" in found
    assert graph.count("libvmaf") == 1 and "float_ssim" not in graph and "psnr=" not in graph
    assert outputs == ["qv0", "qs0"]


def test_vmaf_alone_needs_no_split() -> None:
    found, outputs = chains(QualitySpec(metrics=[Metric.vmaf]))
    assert "split" not in ";".join(found) and "feature=" not in ";".join(found)
    assert outputs == ["qv0"]


def test_psnr_and_ssim_without_vmaf_use_ffmpeg_filters_in_a_chain() -> None:
    found, outputs = chains(QualitySpec(metrics=[Metric.psnr, Metric.ssim], subsample=3))
    graph = ";".join(found)
    assert "libvmaf" not in graph
    assert "[qd0p][qr0p0]psnr=stats_file=/w/q.json.psnr.log:shortest=1[qp0]" in found
    assert "[qp0][qr0p1]ssim=stats_file=/w/q.json.ssim.log:shortest=1[qs0]" in found
    assert "[qr0]select=expr=not(mod(n\\,3)),split=2[qr0p0][qr0p1]" in found
    assert outputs == ["qs0"]


def test_phone_model_is_a_second_model_in_the_same_pass() -> None:
    found, _ = chains(QualitySpec(phone=True), model="vmaf_4k_v0.6.1")
    vmaf = next(c for c in found if "libvmaf" in c)
    assert (
        "model=version=vmaf_4k_v0.6.1\\\\:name=vmaf|version=vmaf_v0.6.1\\\\:name=vmaf_phone"
        "\\\\:enable_transform=true:" in vmaf
    )


def test_standalone_pass_scales_the_reference_to_the_distorted_picture() -> None:
    args = build_quality(
        Path("/w/out.mp4"),
        Path("/w/in.mov"),
        width=3840,
        height=2160,
        fps=29.97,
        quality=QualitySpec(subsample=5),
        log_path=Path("/w/q.json"),
        threads=4,
        pix_fmt="yuv420p10le",
        reference_filters=["crop=1920:1080:0:0:exact=1"],
    )
    assert [args[i + 1] for i, a in enumerate(args) if a == "-i"] == ["/w/out.mp4", "/w/in.mov"]
    assert args.count("-threads") == 2
    graph = graph_of(args)
    assert graph.startswith(
        "[0:V:0]fps=30000/1001[dist];[1:V:0]crop=1920:1080:0:0:exact=1,fps=30000/1001,"
        "scale=3840:2160:flags=bicubic,"
        "setsar=1[ref];[dist]setparams=range=unknown:color_primaries=unknown:color_trc=unknown:colorspace=unknown,setpts=PTS-STARTPTS,format=yuv420p10le"
    )
    assert "vmaf_4k_v0.6.1" in graph and "n_threads=4:n_subsample=5" in graph
    assert args[-7:] == ["-map", "[qv0]", "-map", "[qs0]", "-f", "null", "-"]


def test_log_path_escaping_survives_both_parser_levels() -> None:
    raw = "/tmp/we'ird:dir, [x];\\ y/ lo g=1.json "
    assert escape_option_value(raw) == "/tmp/we\\'ird\\:dir,\\ [x];\\\\\\ y/\\ lo\\ g=1.json\\ "
    assert escape_graph_text("a'b[c],d;e\\f") == "a\\'b\\[c\\]\\,d\\;e\\\\f"
    args = build_quality(
        Path("d"),
        Path("r"),
        width=2,
        height=2,
        fps=25.0,
        quality=QualitySpec(),
        log_path=Path(raw),
        threads=1,
    )
    graph = graph_of(args)
    for name in ("libvmaf=", "ssim="):
        body = graph[graph.index(name) :]
        body = body[: body.index("[q")]
        unescaped = [c for i, c in enumerate(body) if c in "[],;'" and body[i - 1] != "\\"]
        assert unescaped == [], name


# --- logs and pooling -------------------------------------------------------------------------------------


def test_real_logs_merge_by_frame_index() -> None:
    quality = QualitySpec(subsample=5, phone=True)
    rows = read_scores(ALL, quality)
    assert [r["frame"] for r in rows] == list(range(0, 50, 5))
    first = rows[0]
    assert set(first) == {"frame", "vmaf", "vmaf_phone", "psnr", "psnr_yuv", "ssim"}
    assert 37 < first["psnr"] < 38 and 0.96 < first["ssim"] < 0.97
    assert first["vmaf_phone"] >= first["vmaf"]


def test_psnr_and_ssim_only_logs() -> None:
    rows = read_scores(STATS, QualitySpec(metrics=[Metric.psnr, Metric.ssim], subsample=5))
    assert [r["frame"] for r in rows] == list(range(0, 50, 5))
    assert all(set(r) == {"frame", "psnr", "psnr_yuv", "ssim"} for r in rows)


def test_summary_pools_percentiles_and_finds_the_worst_segment(tmp_path: Path) -> None:
    quality = QualitySpec(subsample=5, phone=True)
    logs = ScoreLogs(tmp_path / "q.json")
    for suffix in (".vmaf.json", ".ssim.log"):
        (tmp_path / f"q.json{suffix}").write_bytes((DATA / f"all.quality.json{suffix}").read_bytes())
    summary = collect(logs, quality, model="vmaf_v0.6.1", fps=25.0, segment_seconds=1.0)
    assert summary["frames"] == 10 and summary["subsample"] == 5 and summary["model"] == "vmaf_v0.6.1"
    for key in ("vmaf", "vmaf_phone", "psnr", "ssim"):
        pooled = summary[key]
        assert set(pooled) == {"mean", "min", "max", "harmonic_mean", "p1", "p5", "p50"}
        assert pooled["min"] <= pooled["p1"] <= pooled["p5"] <= pooled["p50"] <= pooled["max"]
        assert pooled["harmonic_mean"] <= pooled["mean"]
    worst = summary["worst_segment"]
    assert worst["metric"] == "vmaf" and worst["end"] - worst["start"] == 1.0 and worst["frames"] == 5
    written = json.loads(logs.unified.read_text())
    assert written["summary"] == summary and len(written["frames"]) == 10
    assert written["frames"][1]["time"] == pytest.approx(0.2)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 1) == pytest.approx(1.99)
    assert percentile(values, 5) == pytest.approx(5.95)
    assert percentile([3.0], 5) == 3.0
    assert percentile([10.0, 0.0], 50) == 5.0


def test_worst_segment_is_the_lowest_window_mean() -> None:
    rows = [{"frame": i, "vmaf": 90.0} for i in range(100)]
    for row in rows[50:75]:  # seconds 2-3 at 25 fps
        row["vmaf"] = 40.0
    worst = worst_segment(rows, "vmaf", 25.0, 1.0)
    assert worst == {"metric": "vmaf", "index": 2, "start": 2.0, "end": 3.0, "mean": 40.0, "frames": 25}
    assert worst_segment([], "vmaf", 25.0, 1.0) is None


def test_identical_pictures_give_capped_psnr(tmp_path: Path) -> None:
    logs = ScoreLogs(tmp_path / "q.json")
    logs.psnr.write_text("n:1 mse_avg:0.00 psnr_avg:inf psnr_y:inf\nn:2 mse_avg:1.0 psnr_y:48.1\n")
    rows = read_scores(logs, QualitySpec(metrics=[Metric.psnr], subsample=1))
    assert [r["psnr"] for r in rows] == [60.0, 48.1]
    rows = read_scores(logs, QualitySpec(metrics=[Metric.psnr], subsample=1), bit_depth=10)
    assert rows[0]["psnr"] == 72.0


def test_non_finite_vmaf_values_from_printf_are_skipped(tmp_path: Path) -> None:
    logs = ScoreLogs(tmp_path / "q.json")
    logs.vmaf.write_text(
        '{"frames": [{"frameNum": 0, "metrics": {"psnr_y": inf, "vmaf": nan}},'
        ' {"frameNum": 7, "metrics": {"psnr_y": 50.0, "vmaf": 97.0}}]}'
    )
    quality = QualitySpec(metrics=[Metric.vmaf, Metric.psnr])
    summary = summarise(read_scores(logs, quality), quality, model="m", fps=25.0, segment_seconds=None)
    assert summary["vmaf"]["mean"] == 97.0 and summary["psnr"]["mean"] == 50.0 and summary["frames"] == 2


@pytest.mark.parametrize("content", [None, "", "{not json", '{"frames": "x"}', '{"frames": []}'])
def test_missing_or_broken_log_is_an_encoder_failure(tmp_path: Path, content: str | None) -> None:
    logs = ScoreLogs(tmp_path / "q.json")
    if content is not None:
        logs.vmaf.write_text(content)
    quality = QualitySpec(metrics=[Metric.vmaf])
    with pytest.raises(JobFailure) as caught:
        summarise(read_scores(logs, quality), quality, model="m", fps=25.0, segment_seconds=None)
    assert caught.value.failure_class is FailureClass.encoder_failed


def test_vmaf_is_left_out_below_what_libvmaf_can_score() -> None:
    quality = QualitySpec(metrics=[Metric.vmaf, Metric.psnr, Metric.ssim], phone=True)
    assert stream_metrics(quality, 18, 18) == (quality, {})
    assert stream_metrics(quality, 240, 18) == (quality, {})
    kept, skipped = stream_metrics(quality, 16, 240)
    assert kept.metrics == [Metric.psnr, Metric.ssim] and not kept.phone
    assert skipped == {"vmaf": "libvmaf cannot score pictures under 18x18; this one is 16x240"}
    only_ssim = QualitySpec(metrics=[Metric.ssim])
    assert stream_metrics(only_ssim, 16, 16) == (only_ssim, {})
    assert stream_metrics(QualitySpec(metrics=[Metric.vmaf]), 32, 16)[0].metrics == []
