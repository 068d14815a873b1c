"""A per-title ladder (`ladder: "auto"`) against the fixed default ladder, at equal top quality.

The three target-quality sources (bench/quality_target.py) at 1280x720: each is packaged as HLS with the
`standard` ladder (720p 2800, 480p 1200, 360p 700 kb/s here, 1080p dropped above the source) and with
`ladder: "auto"` whose `top_vmaf` is what the standard top rung scored, `max_rungs` 3 and
`min_bitrate_kbps` 300. Both go through the worker's own code (plan, one ffmpeg process, rungs scored at
display size, every 3rd frame); the auto ladder's search (sample reel, candidate sizes at four crf values)
is timed on its own. Prints each ladder's rungs (size, kb/s, VMAF), the top rung's and the whole ladder's
bitrate saving, and the search's time beside both ladders' encodes.

    python -m bench.auto_ladder [seconds] [preset]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.quality_target import _make_source, sources
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import plan_job
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.filters import Assets
from framefleet.media.probe import probe
from framefleet.media.results import collect_results
from framefleet.worker.quality_search import cut_reel, laddered_spec, search_ladders

THREADS = 2
SIZE = "1280x720"


def _run(argv: list[str], *_: Any) -> None:
    subprocess.run([ffmpeg_path(), *argv], check=True, stdout=subprocess.DEVNULL)


def _spec(source: Path, ladder: Any, preset: str, auto: dict[str, Any] | None = None) -> JobSpec:
    group: dict[str, Any] = {"name": "abr", "type": "hls", "ladder": ladder, "preset": preset}
    if auto is not None:
        group["auto_ladder"] = auto
    return JobSpec.model_validate(
        {"input": source.as_uri(), "groups": [group], "quality": {"metrics": ["vmaf"], "subsample": 3}}
    )


def _package(spec: JobSpec, source: Path, folder: Path) -> tuple[list[dict[str, Any]], float]:
    """The ladder's rungs (name, size, kb/s, VMAF), lowest first, and the encode's seconds."""
    plan = plan_job(spec, probe(source), detect_capabilities(ffmpeg_path()), source, folder, threads=THREADS)
    plan.prepare()
    started = time.perf_counter()
    _run(plan.argv)
    seconds = time.perf_counter() - started
    rows = [r for r in collect_results(plan, spec, "file:///bench/").rows if r.kind == "rendition"]
    rungs = [
        {
            "name": r.name.removeprefix("abr/"),
            "size": f"{r.width}x{r.height}",
            "kbps": r.bitrate_kbps or 0.0,
            "vmaf": float((r.metrics or {})["vmaf"]["mean"]),
        }
        for r in rows
    ]
    return sorted(rungs, key=lambda r: r["kbps"]), seconds


def _describe(rungs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['size']} {r['kbps']:.0f} kb/s {r['vmaf']:.1f}" for r in rungs)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    seconds = float(args[0]) if args else 20.0
    preset = args[1] if len(args) > 1 else "veryfast"
    print(f"{seconds:g} s sources at {SIZE}, 24 fps, x264 {preset}; standard ladder vs auto at its top VMAF")
    print(
        "source | standard rungs (size kb/s VMAF) | auto rungs | top kb/s saved | ladder kb/s saved | "
        "search s / auto encode s / standard encode s"
    )
    with tempfile.TemporaryDirectory(prefix="framefleet-auto-") as tmp:
        folder = Path(tmp)
        for name, graph in sources(SIZE).items():
            source = folder / f"{name}.mp4"
            _make_source(graph, seconds, source)
            fixed, fixed_s = _package(_spec(source, "standard", preset), source, folder / f"{name}-fixed")
            auto = {"top_vmaf": round(fixed[-1]["vmaf"], 2), "max_rungs": 3, "min_bitrate_kbps": 300}
            spec = _spec(source, "auto", preset, auto)
            started = time.perf_counter()
            work = folder / f"{name}-search"
            reel = cut_reel(spec, probe(source), source, work, threads=THREADS, run_step=_run)
            caps = detect_capabilities(ffmpeg_path())
            found = search_ladders(
                spec, reel, caps, work, threads=THREADS, hardware=None, assets=Assets(), run_step=_run
            )
            search_s = time.perf_counter() - started
            chosen, encode_s = _package(laddered_spec(spec, found), source, folder / f"{name}-auto")
            top_saved = 1 - chosen[-1]["kbps"] / fixed[-1]["kbps"]
            total_saved = 1 - sum(r["kbps"] for r in chosen) / sum(r["kbps"] for r in fixed)
            print(
                f"{name} | {_describe(fixed)} | {_describe(chosen)} | {top_saved:+.1%} | "
                f"{total_saved:+.1%} | {search_s:.1f} / {encode_s:.1f} / {fixed_s:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
