"""Target-quality encoding against the fixed-CRF default, on three generated sources.

Sources (lavfi, encoded losslessly first): `static` (a smooth, slowly shifting background with a small
moving patch: the talking-head case; the gradient's seed is fixed, so every run encodes the same
picture), `motion` (testsrc2's moving patterns and text over the whole frame) and `noisy` (testsrc2 under
strong temporal grain). For each: the default encode (x264 crf 23, preset
medium) and the target-quality encode (the worker's own search code: sample reel, probes scored with VMAF,
then the encode), both timed without scoring, then both scored the same way against the source.
Prints, per source: bitrate and VMAF of each, the saving, the chosen CRF and probes, the final VMAF's
distance from the target, the predicted vs real size, and the search's time as a share of the encode's, in
wall time and in CPU time (of the ffmpeg processes; steadier on a shared machine).

    python -m bench.quality_target [seconds] [WxH] [target]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from framefleet.core.spec import JobSpec, Metric, QualitySpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import plan_job
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.filters import Assets
from framefleet.media.probe import probe
from framefleet.media.quality import ScoreLogs, build_quality, collect
from framefleet.worker.quality_search import cut_reel, search_outputs, targeted_spec, video_bytes

THREADS = 2


def sources(size: str) -> dict[str, str]:
    """lavfi graphs of the three sources at `size` (WxH), 24 fps."""
    width, height = (int(x) for x in size.split("x"))
    patch = f"color=c=0xd0a080:s={width // 5}x{height // 3}:r=24,format=yuv420p"
    return {
        "static": (
            f"gradients=s={size}:r=24:speed=0.01:c0=0x704030:c1=0x304070:seed=1[bg];{patch}[face];"
            f"[bg][face]overlay=x={width * 2 // 5}+8*sin(2*t):y={height // 4}+4*sin(3*t),format=yuv420p"
        ),
        "motion": f"testsrc2=s={size}:r=24,format=yuv420p",
        "noisy": f"testsrc2=s={size}:r=24,noise=alls=18:allf=t+u,format=yuv420p",
    }


def _cpu() -> float:
    """CPU seconds (user + system) of the child processes that ended so far: the machine is shared, so
    the share is measured in CPU time, which other work's load does not stretch, as well as wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([ffmpeg_path(), *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _make_source(graph: str, seconds: float, path: Path) -> None:
    lossless = ["-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    _run(
        [
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            graph,
            "-t",
            str(seconds),
            *lossless,
            str(path),
        ]
    )


def _encode(spec: JobSpec, source: Path, folder: Path) -> tuple[Path, float, float]:
    """The encode's file, wall seconds and CPU seconds."""
    info = probe(source)
    plan = plan_job(
        spec, info, detect_capabilities(ffmpeg_path()), source, folder, threads=THREADS, score=False
    )
    plan.prepare()
    cpu = _cpu()
    wall = _run(plan.argv)
    return plan.outputs[0].path, wall, _cpu() - cpu


def _vmaf(encoded: Path, source: Path, log: Path) -> float:
    info = probe(encoded)
    assert info.video is not None
    quality = QualitySpec(metrics=[Metric.vmaf], subsample=1)
    argv = build_quality(
        encoded,
        source,
        width=info.video.width,
        height=info.video.height,
        fps=24.0,
        quality=quality,
        log_path=log,
        threads=THREADS,
    )
    _run(argv)
    summary = collect(ScoreLogs(log), quality, model="vmaf_v0.6.1", fps=24.0)
    return float(summary["vmaf"]["mean"])


def _spec(source: Path, target: float | None) -> JobSpec:
    output: dict[str, Any] = {"name": "out", "container": "mp4", "audio": {"codec": "none"}}
    if target is not None:
        output["quality_target"] = {"value": target}
    return JobSpec.model_validate({"input": source.as_uri(), "outputs": [output]})


def run_source(name: str, graph: str, seconds: float, target: float, tmp: Path) -> dict[str, Any]:
    source = tmp / f"{name}.mp4"
    _make_source(graph, seconds, source)
    fixed, fixed_s, _ = _encode(_spec(source, None), source, tmp / f"{name}-fixed")
    spec = _spec(source, target)
    started = time.perf_counter()
    cpu = _cpu()

    def step(argv: list[str], _duration: float | None, _done: float) -> None:
        _run(argv)

    folder = tmp / f"{name}-search"
    reel = cut_reel(spec, probe(source), source, folder, threads=THREADS, run_step=step)
    searches = search_outputs(
        spec,
        reel,
        detect_capabilities(ffmpeg_path()),
        folder,
        threads=THREADS,
        hardware=None,
        assets=Assets(),
        run_step=step,
    )
    search_s = time.perf_counter() - started
    search_cpu = _cpu() - cpu
    tuned, tuned_s, tuned_cpu = _encode(targeted_spec(spec, searches), source, tmp / f"{name}-target")
    search = searches["out"].view(real_size=video_bytes(tuned))
    fixed_kbps = video_bytes(fixed) * 8 / seconds / 1000
    tuned_kbps = video_bytes(tuned) * 8 / seconds / 1000
    return {
        "source": name,
        "fixed_kbps": fixed_kbps,
        "fixed_vmaf": _vmaf(fixed, source, tmp / f"{name}-fixed.json"),
        "target_kbps": tuned_kbps,
        "target_vmaf": _vmaf(tuned, source, tmp / f"{name}-target.json"),
        "saving": 1 - tuned_kbps / fixed_kbps,
        "crf": search["chosen"],
        "probes": len(search["probes"]),
        "size_error": search.get("size_error"),
        "search_s": search_s,
        "encode_s": tuned_s,
        "search_cpu": search_cpu,
        "encode_cpu": tuned_cpu,
        "fixed_s": fixed_s,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    seconds = float(args[0]) if args else 80.0
    size = args[1] if len(args) > 1 else "384x216"
    target = float(args[2]) if len(args) > 2 else 93.0
    print(f"{seconds:g} s sources at {size}, 24 fps; default x264 crf 23 medium vs target VMAF {target:g}")
    header = (
        "source | default kb/s | default VMAF | target kb/s | target VMAF | saving | VMAF - target | crf | "
        "probes | size error | search s | encode s | search / encode | search / encode CPU s"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="framefleet-tq-") as folder:
        for name, graph in sources(size).items():
            r = run_source(name, graph, seconds, target, Path(folder))
            print(
                f"{r['source']} | {r['fixed_kbps']:.0f} | {r['fixed_vmaf']:.2f} | {r['target_kbps']:.0f} | "
                f"{r['target_vmaf']:.2f} | {r['saving']:+.1%} | {r['target_vmaf'] - target:+.2f} | "
                f"{r['crf']} | "
                f"{r['probes']} | {r['size_error']:+.1%} | {r['search_s']:.1f} | {r['encode_s']:.1f} | "
                f"{r['search_s'] / r['encode_s']:.0%} | {r['search_cpu']:.1f} / {r['encode_cpu']:.1f} = "
                f"{r['search_cpu'] / r['encode_cpu']:.0%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
