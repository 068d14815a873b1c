"""The libvmaf pass: its argument list, filter-graph escaping and the JSON log it writes.

tests/unit/data/vmaf_log.json is a real libvmaf log (160x120 x264 against its 320x240 source,
n_subsample=10, psnr and float_ssim features).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import Metric, QualitySpec, VmafModel
from framefleet.media.quality import build_quality, escape_graph_text, escape_option_value, parse_vmaf_log

LOG = Path(__file__).parent / "data" / "vmaf_log.json"


def graph_of(args: list[str]) -> str:
    return args[args.index("-filter_complex") + 1]


def test_distorted_first_reference_scaled_to_its_size() -> None:
    args = build_quality(
        Path("/w/out.mp4"),
        Path("/w/in.mov"),
        width=640,
        height=360,
        fps=None,
        quality=QualitySpec(),
        log_path=Path("/w/vmaf.json"),
        threads=2,
    )
    assert args[:8] == [
        "-hide_banner",
        "-nostdin",
        "-y",
        "-nostats",
        "-progress",
        "pipe:1",
        "-loglevel",
        "error",
    ]
    inputs = [args[i + 1] for i, a in enumerate(args) if a == "-i"]
    assert inputs == ["/w/out.mp4", "/w/in.mov"]
    assert args[-5:] == ["-map", "[scored]", "-f", "null", "-"]
    dist, ref, vmaf = graph_of(args).split(";")
    assert dist == "[0:V:0]setpts=PTS-STARTPTS,format=yuv420p[dist]"
    assert ref == "[1:V:0]setpts=PTS-STARTPTS,scale=640:360:flags=bicubic,format=yuv420p[ref]"
    assert vmaf == (
        "[dist][ref]libvmaf=model=version=vmaf_v0.6.1:feature=name=psnr|name=float_ssim:log_fmt=json"
        ":log_path=/w/vmaf.json:n_threads=2:n_subsample=1:shortest=1[scored]"
    )


def test_fps_model_subsample_metrics_and_ten_bit() -> None:
    quality = QualitySpec(metrics=[Metric.ssim, Metric.vmaf], vmaf_model=VmafModel.uhd, subsample=5)
    args = build_quality(
        Path("d.mkv"),
        Path("r.mkv"),
        width=3840,
        height=2160,
        fps=29.97,
        quality=quality,
        log_path=Path("l.json"),
        threads=4,
        pix_fmt="yuv420p10le",
    )
    dist, ref, vmaf = graph_of(args).split(";")
    assert dist.endswith("format=yuv420p10le[dist]")
    assert (
        ref
        == "[1:V:0]setpts=PTS-STARTPTS,fps=30000/1001,scale=3840:2160:flags=bicubic,format=yuv420p10le[ref]"
    )
    assert "model=version=vmaf_4k_v0.6.1:feature=name=float_ssim:" in vmaf
    assert "n_threads=4:n_subsample=5" in vmaf
    assert args.count("-threads") == 2


def test_vmaf_only_asks_for_no_extra_features() -> None:
    args = build_quality(
        Path("d"),
        Path("r"),
        width=2,
        height=2,
        fps=None,
        quality=QualitySpec(metrics=[Metric.vmaf]),
        log_path=Path("l"),
        threads=0,
    )
    assert "feature=" not in graph_of(args)
    assert "-threads" not in args
    assert "n_threads=" in graph_of(args)  # one per CPU when the caller leaves it to us


def test_log_path_escaping_survives_both_parser_levels() -> None:
    raw = "/tmp/we'ird:dir, [x];\\ y/ lo g=1.json "
    assert escape_option_value(raw) == "/tmp/we\\'ird\\:dir,\\ [x];\\\\\\ y/\\ lo\\ g=1.json\\ "
    assert escape_graph_text("a'b[c],d;e\\f") == "a\\'b\\[c\\]\\,d\\;e\\\\f"
    args = build_quality(
        Path("d"),
        Path("r"),
        width=2,
        height=2,
        fps=None,
        quality=QualitySpec(),
        log_path=Path(raw),
        threads=1,
    )
    graph = graph_of(args)
    # No unescaped graph separator may remain inside the libvmaf arguments.
    body = graph[graph.index("libvmaf=") : graph.rindex("[scored]")]
    unescaped = [c for i, c in enumerate(body) if c in "[],;'" and body[i - 1] != "\\"]
    assert unescaped == []


def test_parse_real_log_uses_pooled_values() -> None:
    pooled = json.loads(LOG.read_text())["pooled_metrics"]
    result = parse_vmaf_log(LOG, [Metric.vmaf, Metric.psnr, Metric.ssim])
    assert result["frames"] == 5
    assert result["vmaf"] == pooled["vmaf"]
    assert result["psnr"]["mean"] == pooled["psnr_y"]["mean"]
    assert result["ssim"]["min"] == pooled["float_ssim"]["min"]
    assert set(result["vmaf"]) == {"mean", "min", "max", "harmonic_mean"}
    assert 90 < result["vmaf"]["mean"] < 100 and 30 < result["psnr"]["mean"] < 50
    assert 0.9 < result["ssim"]["mean"] <= 1


def test_only_requested_metrics_are_reported() -> None:
    assert set(parse_vmaf_log(LOG, [Metric.ssim])) == {"frames", "ssim"}


def test_pooled_values_are_computed_when_the_log_lacks_them(tmp_path: Path) -> None:
    data = json.loads(LOG.read_text())
    expected = data["pooled_metrics"]
    data["pooled_metrics"] = {}
    stripped = tmp_path / "log.json"
    stripped.write_text(json.dumps(data))
    result = parse_vmaf_log(stripped, [Metric.vmaf, Metric.psnr, Metric.ssim])
    for metric, key in (("vmaf", "vmaf"), ("psnr", "psnr_y"), ("ssim", "float_ssim")):
        for stat in ("mean", "min", "max", "harmonic_mean"):
            assert result[metric][stat] == pytest.approx(expected[key][stat], abs=1e-5), (metric, stat)


def test_non_finite_scores_from_printf_are_tolerated(tmp_path: Path) -> None:
    log = tmp_path / "inf.json"
    log.write_text(
        '{"frames": [{"frameNum": 0, "metrics": {"psnr_y": inf, "vmaf": 99.0}},'
        ' {"frameNum": 1, "metrics": {"psnr_y": 50.0, "vmaf": 97.0}}], "pooled_metrics": {}}'
    )
    result = parse_vmaf_log(log, [Metric.psnr, Metric.vmaf])
    assert result["psnr"]["mean"] == 50.0 and result["vmaf"]["mean"] == 98.0 and result["frames"] == 2


@pytest.mark.parametrize("content", [None, "", "{not json", '{"frames": "x"}', '{"frames": []}'])
def test_missing_or_broken_log_is_an_encoder_failure(tmp_path: Path, content: str | None) -> None:
    log = tmp_path / "vmaf.json"
    if content is not None:
        log.write_text(content)
    with pytest.raises(JobFailure) as caught:
        parse_vmaf_log(log, [Metric.vmaf])
    assert caught.value.failure_class is FailureClass.encoder_failed
