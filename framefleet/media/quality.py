"""VMAF, PSNR and SSIM from one ffmpeg pass: graph chains, model choice, per-frame logs and their summary.

One pass reads each picture pair once: libvmaf computes VMAF (and PSNR as one of its features) and
ffmpeg's `ssim` filter, fed the same pairs, computes SSIM (on the luma plane). ffmpeg's SSIM is SIMD code
and nearly free next to VMAF; libvmaf's float_ssim would cost a third more than VMAF alone. Frames are
subsampled the same way for every metric (libvmaf's n_subsample, `select` for the others).

The chains are used two ways (see media/command.py): inside the encoding process, where the distorted
pictures come from a loopback decoder (`-dec`) of the encoder and the reference is the encoder's own
input, so both are frame-aligned by construction whatever trim, fps change or scaling happened; and as a
separate pass over two files (`build_quality`), where the reference is brought to the distorted size.

A scaled stream is scored at display size (the source's size after operations, or `quality.display`):
upscaled with bicubic and compared with the unscaled source, so the loss of resolution counts as viewers
see it and a ladder's rungs rank in order, with the model for that size. Its own-size score, against a
downscaled reference, is kept beside it (`native`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import Metric, QualitySpec, VmafModel
from framefleet.media.filters import escape_graph_text, escape_option_value, filter_text, fps_value

__all__ = [
    "ScoreLogs",
    "build_quality",
    "escape_graph_text",
    "escape_option_value",
    "metric_chains",
    "percentile",
    "read_scores",
    "stream_metrics",
    "summarise",
    "vmaf_model_for",
]

GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", "-loglevel", "error")
UHD_LONG_SIDE = 3840
UHD_SHORT_SIDE = 2160
PHONE_MODEL = "vmaf_phone"
PERCENTILES = (1, 5, 50)
DEFAULT_SEGMENT_SECONDS = 2.0
# libvmaf caps PSNR at 6 x bits + 12 dB for identical pictures; ffmpeg's psnr filter says inf. Same cap.
PSNR_CAP_8BIT = 60.0
PSNR_CAP_10BIT = 72.0


# The bundled libvmaf crashes (SIGSEGV) on pictures narrower or shorter than this: its feature pyramids
# run out of pixels. Measured: 18x18, 18x240 and 240x18 score; 17x17, 16x32 and 32x16 crash, 8- and 10-bit.
VMAF_MIN_SIDE = 18


def stream_metrics(quality: QualitySpec, width: int, height: int) -> tuple[QualitySpec, dict[str, str]]:
    """The metrics one width x height stream is scored with, and those skipped, each with its reason.

    VMAF is left out below VMAF_MIN_SIDE rather than taking the job down with libvmaf; PSNR then comes
    from ffmpeg's psnr filter, and SSIM is measured as usual. Scores of an upscaled copy would describe
    a picture nobody watches, so none are invented.
    """
    if Metric.vmaf not in quality.metrics or min(width, height) >= VMAF_MIN_SIDE:
        return quality, {}
    reason = (
        f"libvmaf cannot score pictures under {VMAF_MIN_SIDE}x{VMAF_MIN_SIDE}; this one is {width}x{height}"
    )
    kept = [m for m in quality.metrics if m is not Metric.vmaf]
    return quality.model_copy(update={"metrics": kept, "phone": False}), {Metric.vmaf.value: reason}


def vmaf_model_for(quality: QualitySpec, width: int, height: int) -> str:
    """The VMAF model for a width x height picture: the 4K model from UHD up when the spec says auto."""
    if quality.vmaf_model is not VmafModel.auto:
        return quality.vmaf_model.value
    long_side, short_side = max(width, height), min(width, height)
    uhd = long_side >= UHD_LONG_SIDE or short_side >= UHD_SHORT_SIDE
    return VmafModel.uhd.value if uhd else VmafModel.default.value


@dataclass(frozen=True)
class ScoreLogs:
    """The raw logs of one scored stream and the unified per-frame log written from them."""

    unified: Path

    @property
    def vmaf(self) -> Path:
        """libvmaf's JSON log."""
        return self.unified.with_name(self.unified.name + ".vmaf.json")

    @property
    def ssim(self) -> Path:
        """ffmpeg ssim filter's stats file."""
        return self.unified.with_name(self.unified.name + ".ssim.log")

    @property
    def psnr(self) -> Path:
        """ffmpeg psnr filter's stats file (PSNR without VMAF)."""
        return self.unified.with_name(self.unified.name + ".psnr.log")


def _vmaf_filter(quality: QualitySpec, model: str, logs: ScoreLogs, threads: int) -> str:
    models = [f"version={model}:name=vmaf"]
    if quality.phone:
        models.append(f"version={VmafModel.default.value}:name={PHONE_MODEL}:enable_transform=true")
    options = [("model", "|".join(models))]
    if Metric.psnr in quality.metrics:
        options.append(("feature", "name=psnr"))
    options += [
        ("log_fmt", "json"),
        ("log_path", str(logs.vmaf)),
        ("n_threads", str(max(1, threads))),
        ("n_subsample", str(quality.subsample)),
        ("shortest", "1"),
    ]
    return filter_text("libvmaf", options)


UNTAGGED = "setparams=range=unknown:color_primaries=unknown:color_trc=unknown:colorspace=unknown"


def metric_chains(
    dist: str,
    ref: str,
    key: str,
    quality: QualitySpec,
    *,
    model: str,
    logs: ScoreLogs,
    threads: int,
    work_fmt: str,
) -> tuple[list[str], list[str]]:
    """Graph chains scoring `dist` against `ref` (labels of same-size, frame-aligned streams).

    Returns the chains and the labels of their outputs, which the caller maps to a null output.
    """
    metrics = set(quality.metrics)
    use_vmaf = Metric.vmaf in metrics
    stats = [m for m in (Metric.psnr, Metric.ssim) if m in metrics and not (m is Metric.psnr and use_vmaf)]
    branches = int(use_vmaf) + int(bool(stats))
    chains: list[str] = []
    dist_heads, ref_heads = [f"qd{key}"], [f"qr{key}"]
    # Both sides lose their colour tags first: they are already in the same colour (the reference is what
    # the encoder was given), and a decoded stream tagged BT.709 next to an untagged reference would make
    # the filter graph convert one of them to the other's matrix, scoring a colour shift that isn't there.
    prep = f"{UNTAGGED},setpts=PTS-STARTPTS,format={work_fmt}"
    if branches == 2:
        dist_heads, ref_heads = [f"qd{key}v", f"qd{key}s"], [f"qr{key}v", f"qr{key}s"]
        chains.append(f"[{dist}]{prep},split=2{''.join(f'[{h}]' for h in dist_heads)}")
        chains.append(f"[{ref}]{prep},split=2{''.join(f'[{h}]' for h in ref_heads)}")
    else:
        chains.append(f"[{dist}]{prep}[{dist_heads[0]}]")
        chains.append(f"[{ref}]{prep}[{ref_heads[0]}]")
    outputs: list[str] = []
    if use_vmaf:
        out = f"qv{key}"
        chains.append(
            f"[{dist_heads[0]}][{ref_heads[0]}]{_vmaf_filter(quality, model, logs, threads)}[{out}]"
        )
        outputs.append(out)
    if stats:
        d, r = dist_heads[-1], ref_heads[-1]
        pick = filter_text("select", [("expr", f"not(mod(n,{quality.subsample}))")])
        refs = [f"{r}p{i}" for i in range(len(stats))]
        chains.append(f"[{d}]{pick}[{d}p]")
        split = f",split={len(refs)}" if len(refs) > 1 else ""
        chains.append(f"[{r}]{pick}{split}{''.join(f'[{x}]' for x in refs)}")
        current = f"{d}p"
        for index, metric in enumerate(stats):
            path = logs.psnr if metric is Metric.psnr else logs.ssim
            name = "psnr" if metric is Metric.psnr else "ssim"
            out = f"q{name[0]}{key}"
            stats_filter = filter_text(name, [("stats_file", str(path)), ("shortest", "1")])
            chains.append(f"[{current}][{refs[index]}]{stats_filter}[{out}]")
            current = out
        outputs.append(current)
    return chains, outputs


def build_quality(
    distorted: Path,
    reference: Path,
    *,
    width: int,
    height: int,
    fps: float,
    quality: QualitySpec,
    log_path: Path,
    threads: int,
    pix_fmt: str | None = None,
    reference_filters: list[str] | None = None,
    display: tuple[int, int] | None = None,
) -> list[str]:
    """ffmpeg arguments (without the binary) scoring `distorted` against `reference` in one pass.

    `width`/`height` are the distorted picture's size as decoded (after rotation), `fps` its frame rate.
    The reference gets `reference_filters` first (the job's operations, so it shows what the encoder saw),
    then the distorted size; both start at time zero and share one pixel format, 10-bit when `pix_fmt`
    (the output's) is. Raw logs go beside `log_path` (see ScoreLogs).

    Both sides are put on the same `fps` frame grid (the fps filter: the reference converted to the
    output's rate, each timestamp rounded to the nearest slot) before they are paired. The pairing is by
    timestamp, and two containers store the same instant differently: Matroska in milliseconds (frame 1 of
    24 fps at 42 ms), MP4 in a fine time base (41.67 ms); unrounded, a distorted frame met the reference
    frame before it whenever the reference's clock ran ahead, and scored the motion between the two.
    With `display`, both are brought to that size instead (the distorted picture upscaled), as the
    encoding process scores scaled streams.
    """
    work_fmt = "yuv420p10le" if pix_fmt and "10" in pix_fmt else "yuv420p"
    grid = f"fps={fps_value(fps)}"
    ref_chain = [*(reference_filters or []), grid]
    dist_chain = grid
    if display is not None:
        width, height = display
        dist_chain += f",scale={width}:{height}:flags=bicubic,setsar=1"
    ref_chain += [f"scale={width}:{height}:flags=bicubic", "setsar=1"]
    chains = [f"[0:V:0]{dist_chain}[dist]", f"[1:V:0]{','.join(ref_chain)}[ref]"]
    scored, outputs = metric_chains(
        "dist",
        "ref",
        "0",
        quality,
        model=vmaf_model_for(quality, width, height),
        logs=ScoreLogs(log_path),
        threads=threads,
        work_fmt=work_fmt,
    )
    args = list(GLOBAL_ARGS)
    for source in (distorted, reference):
        if threads > 0:
            args += ["-threads", str(threads)]
        args += ["-i", str(source)]
    args += ["-filter_complex", ";".join(chains + scored)]
    for label in outputs:
        args += ["-map", f"[{label}]"]
    return [*args, "-f", "null", "-"]


# --- reading the logs ------------------------------------------------------------------------------------

_STAT_LINE = re.compile(r"(\w+):(\S+)")


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _load_vmaf(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobFailure(FailureClass.encoder_failed, f"the quality pass wrote no VMAF log: {exc}") from None
    # libvmaf prints non-finite scores with printf, which is not JSON.
    text = re.sub(r"(?<=[:\s\[,])-?(inf|nan)\b", "null", text, flags=re.IGNORECASE)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobFailure(FailureClass.encoder_failed, f"the VMAF log is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise JobFailure(FailureClass.encoder_failed, "the VMAF log has no per-frame scores")
    return [f for f in data["frames"] if isinstance(f, dict) and isinstance(f.get("metrics"), dict)]


def _load_stats(path: Path, key: str) -> list[tuple[int, float | None]]:
    """(1-based n, value) pairs from an ffmpeg psnr/ssim stats file; `inf` becomes None."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise JobFailure(FailureClass.encoder_failed, f"the quality pass wrote no {key} log: {exc}") from None
    pairs: list[tuple[int, float | None]] = []
    for line in lines:
        fields = dict(_STAT_LINE.findall(line))
        if "n" not in fields or key not in fields:
            continue
        try:
            value = float(fields[key])
        except ValueError:
            continue
        pairs.append((int(fields["n"]), value if math.isfinite(value) else None))
    return pairs


def read_scores(logs: ScoreLogs, quality: QualitySpec, *, bit_depth: int = 8) -> list[dict[str, Any]]:
    """Per-frame scores, one dict per scored frame: {'frame': index, 'vmaf': .., 'psnr': .., 'ssim': ..}."""
    metrics = set(quality.metrics)
    frames: dict[int, dict[str, Any]] = {}
    cap = PSNR_CAP_10BIT if bit_depth > 8 else PSNR_CAP_8BIT
    if Metric.vmaf in metrics:
        for entry in _load_vmaf(logs.vmaf):
            index = int(entry.get("frameNum", len(frames)))
            row = frames.setdefault(index, {"frame": index})
            scores = entry["metrics"]
            row["vmaf"] = _finite(scores.get("vmaf"))
            if quality.phone:
                row[PHONE_MODEL] = _finite(scores.get(PHONE_MODEL))
            if Metric.psnr in metrics:
                planes = [_finite(scores.get(k)) for k in ("psnr_y", "psnr_cb", "psnr_cr")]
                row["psnr"] = planes[0]
                row["psnr_yuv"] = weighted_psnr(planes)
    stats: list[tuple[str, Path, str]] = []
    if Metric.psnr in metrics and Metric.vmaf not in metrics:
        stats += [
            ("psnr", logs.psnr, "psnr_y"),
            ("psnr_u", logs.psnr, "psnr_u"),
            ("psnr_v", logs.psnr, "psnr_v"),
        ]
    if Metric.ssim in metrics:
        stats.append(("ssim", logs.ssim, "Y"))
    for name, path, key in stats:
        for n, value in _load_stats(path, key):
            index = (n - 1) * quality.subsample
            row = frames.setdefault(index, {"frame": index})
            if name.startswith("psnr") and value is None:
                value = cap  # identical pictures
            row[name] = value
    for row in frames.values():
        if "psnr_u" in row:
            row["psnr_yuv"] = weighted_psnr([row.get("psnr"), row.pop("psnr_u"), row.pop("psnr_v", None)])
    return [frames[i] for i in sorted(frames)]


def weighted_psnr(planes: list[float | None]) -> float | None:
    """PSNR over Y, Cb and Cr weighted 6:1:1 (the weighting video coding studies report for 4:2:0);
    `psnr` alone is luma only (PSNR-Y)."""
    y, cb, cr = planes
    if y is None or cb is None or cr is None:
        return None
    return (6 * y + cb + cr) / 8


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _pool(values: list[float]) -> dict[str, float]:
    # libvmaf's harmonic mean shifts by one so that zero scores do not divide by zero.
    harmonic = len(values) / sum(1.0 / (v + 1.0) for v in values) - 1.0
    pooled = {
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
        "harmonic_mean": harmonic,
    }
    for q in PERCENTILES:
        pooled[f"p{q}"] = percentile(values, q)
    return {k: round(v, 6) for k, v in pooled.items()}


def worst_segment(rows: list[dict[str, Any]], key: str, fps: float, seconds: float) -> dict[str, Any] | None:
    """The `seconds`-long window (aligned to 0) whose frames score lowest on `key`, by mean."""
    windows: dict[int, list[float]] = {}
    for row in rows:
        value = row.get(key)
        if value is None:
            continue
        windows.setdefault(math.floor(row["frame"] / fps / seconds + 1e-9), []).append(value)
    if not windows:
        return None
    index, values = min(windows.items(), key=lambda item: (sum(item[1]) / len(item[1]), item[0]))
    return {
        "metric": key,
        "index": index,
        "start": round(index * seconds, 3),
        "end": round((index + 1) * seconds, 3),
        "mean": round(sum(values) / len(values), 6),
        "frames": len(values),
    }


def summarise(
    rows: list[dict[str, Any]], quality: QualitySpec, *, model: str, fps: float, segment_seconds: float | None
) -> dict[str, Any]:
    """Pooled values and percentiles per metric, the worst segment, and how the frames were sampled."""
    if not rows:
        raise JobFailure(FailureClass.encoder_failed, "the quality pass scored no frames")
    keys = [m.value for m in quality.metrics if m in (Metric.vmaf, Metric.psnr, Metric.ssim)]
    if quality.phone:
        keys.insert(keys.index("vmaf") + 1, PHONE_MODEL)
    if "psnr" in keys and any(row.get("psnr_yuv") is not None for row in rows):
        keys.insert(keys.index("psnr") + 1, "psnr_yuv")
    summary: dict[str, Any] = {"frames": len(rows), "subsample": quality.subsample}
    if Metric.vmaf in quality.metrics:
        summary["model"] = model
    for key in keys:
        values = [row[key] for row in rows if row.get(key) is not None]
        if not values:
            raise JobFailure(FailureClass.encoder_failed, f"the quality pass produced no {key} scores")
        summary[key] = _pool(values)
    worst_key = next(k for k in ("vmaf", "ssim", "psnr") if k in keys)
    window = segment_seconds or quality.segment_seconds or DEFAULT_SEGMENT_SECONDS
    summary["worst_segment"] = worst_segment(rows, worst_key, fps, window)
    return summary


def write_log(path: Path, rows: list[dict[str, Any]], summary: dict[str, Any], fps: float) -> None:
    """The per-frame log artifact: every scored frame with its time, and the summary."""
    frames = [{**row, "time": round(row["frame"] / fps, 6)} for row in rows]
    document = {"version": 1, "fps": round(fps, 6), "summary": summary, "frames": frames}
    path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")


def collect(
    logs: ScoreLogs,
    quality: QualitySpec,
    *,
    model: str,
    fps: float,
    segment_seconds: float | None = None,
    bit_depth: int = 8,
) -> dict[str, Any]:
    """Read the raw logs of one scored stream, write its unified log, and return its summary."""
    rows = read_scores(logs, quality, bit_depth=bit_depth)
    summary = summarise(rows, quality, model=model, fps=fps, segment_seconds=segment_seconds)
    write_log(logs.unified, rows, summary, fps)
    return summary
