"""VMAF, PSNR and SSIM of one output against its input, from one libvmaf pass, and the log it writes."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import Metric, QualitySpec
from framefleet.media.command import fps_value

# libvmaf's name for each metric in its per-frame and pooled output.
LOG_KEYS: dict[Metric, str] = {Metric.vmaf: "vmaf", Metric.psnr: "psnr_y", Metric.ssim: "float_ssim"}
# Extra libvmaf features each metric needs; VMAF itself comes from the model.
FEATURES: dict[Metric, str] = {Metric.psnr: "psnr", Metric.ssim: "float_ssim"}

_STATS = ("mean", "min", "max", "harmonic_mean")
_OPTION_SPECIAL = frozenset("\\':")
_GRAPH_SPECIAL = frozenset("\\'[],;")


def escape_option_value(value: str) -> str:
    """Escape a filter option value (first level: the option parser splits on ':' and strips blanks)."""
    return "".join(f"\\{c}" if c in _OPTION_SPECIAL or c.isspace() else c for c in value)


def escape_graph_text(text: str) -> str:
    """Escape a filter's argument string for the filtergraph parser (second level)."""
    return "".join(f"\\{c}" if c in _GRAPH_SPECIAL else c for c in text)


def build_quality(
    distorted: Path,
    reference: Path,
    *,
    width: int,
    height: int,
    fps: float | None,
    quality: QualitySpec,
    log_path: Path,
    threads: int,
    pix_fmt: str | None = None,
) -> list[str]:
    """ffmpeg arguments (without the binary) scoring `distorted` against `reference` into a JSON log.

    `width`/`height` are the distorted picture's size as decoded (after rotation). The reference is
    brought to that size, and to the output frame rate when `fps` is given; both start at time zero and
    share one pixel format, 10-bit when `pix_fmt` (the output's) is. `threads` <= 0: one per CPU.
    """
    work_fmt = "yuv420p10le" if pix_fmt and "10" in pix_fmt else "yuv420p"
    dist_chain = ["setpts=PTS-STARTPTS", f"format={work_fmt}"]
    ref_chain = ["setpts=PTS-STARTPTS"]
    if fps is not None:
        ref_chain.append(f"fps={fps_value(fps)}")
    ref_chain += [f"scale={width}:{height}:flags=bicubic", f"format={work_fmt}"]

    n_threads = threads if threads > 0 else (os.cpu_count() or 1)
    options: list[tuple[str, str]] = [("model", f"version={quality.vmaf_model.value}")]
    features = [f"name={FEATURES[m]}" for m in quality.metrics if m in FEATURES]
    if features:
        options.append(("feature", "|".join(features)))
    options += [
        ("log_fmt", "json"),
        ("log_path", str(log_path)),
        ("n_threads", str(n_threads)),
        ("n_subsample", str(quality.subsample)),
        ("shortest", "1"),
    ]
    vmaf_args = ":".join(f"{key}={escape_option_value(value)}" for key, value in options)
    graph = ";".join(
        [
            f"[0:V:0]{','.join(dist_chain)}[dist]",
            f"[1:V:0]{','.join(ref_chain)}[ref]",
            f"[dist][ref]libvmaf={escape_graph_text(vmaf_args)}[scored]",
        ]
    )
    args = ["-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", "-loglevel", "error"]
    for source in (distorted, reference):
        if threads > 0:
            args += ["-threads", str(threads)]
        args += ["-i", str(source)]
    args += ["-filter_complex", graph, "-map", "[scored]", "-f", "null", "-"]
    return args


def _pooled(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {}
    # libvmaf's harmonic mean shifts by one so that zero scores do not divide by zero.
    harmonic = len(finite) / sum(1.0 / (v + 1.0) for v in finite) - 1.0
    return {
        "mean": sum(finite) / len(finite),
        "min": min(finite),
        "max": max(finite),
        "harmonic_mean": harmonic,
    }


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobFailure(FailureClass.encoder_failed, f"the quality pass wrote no log: {exc}") from None
    # libvmaf prints non-finite scores with printf, which is not JSON.
    text = re.sub(r"(?<=[:\s\[,])-?(inf|nan)\b", "null", text, flags=re.IGNORECASE)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobFailure(FailureClass.encoder_failed, f"the quality log is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise JobFailure(FailureClass.encoder_failed, "the quality log has no per-frame scores")
    return data


def parse_vmaf_log(path: Path, metrics: list[Metric]) -> dict[str, Any]:
    """Pooled mean/min/max/harmonic_mean per requested metric, plus the number of frames scored."""
    data = _load(path)
    frames = [f for f in data["frames"] if isinstance(f, dict) and isinstance(f.get("metrics"), dict)]
    pooled_log = data.get("pooled_metrics") or {}
    result: dict[str, Any] = {"frames": len(frames)}
    for metric in metrics:
        key = LOG_KEYS[metric]
        given = pooled_log.get(key)
        if isinstance(given, dict) and all(isinstance(given.get(k), int | float) for k in _STATS):
            stats = {k: float(given[k]) for k in _STATS}
        else:
            values = [f["metrics"][key] for f in frames if isinstance(f["metrics"].get(key), int | float)]
            stats = _pooled([float(v) for v in values])
        if not stats:
            raise JobFailure(FailureClass.encoder_failed, f"the quality log has no {key} scores")
        result[metric.value] = {k: round(stats[k], 6) for k in _STATS}
    return result
