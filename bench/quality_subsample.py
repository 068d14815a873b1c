"""Is VMAF on every 7th frame (the jobs' default `quality.subsample`) a fair estimate of every frame?

The three target-quality sources (bench/quality_target.py), each encoded with x264 at crf 23 and 30 and
scored inside the encoding process as jobs are, at n_subsample 1, 3 and 7: over the whole clip and over a
4 s cut (the size of a quality target's sample reel, where few frames are pooled).

    python -m bench.quality_subsample [seconds] [WxH]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.quality_target import _make_source, sources
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import plan_job
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.probe import probe
from framefleet.media.results import collect_results

SUBSAMPLES = (1, 3, 7)
CRFS = (23, 30)


def _score(source: Path, crf: int, subsample: int, folder: Path) -> float:
    spec = JobSpec.model_validate(
        {
            "input": source.as_uri(),
            "outputs": [{"name": "o", "container": "mp4", "audio": {"codec": "none"}, "video": {"crf": crf}}],
            "quality": {"metrics": ["vmaf"], "subsample": subsample},
        }
    )
    plan = plan_job(spec, probe(source), detect_capabilities(ffmpeg_path()), source, folder, threads=2)
    plan.prepare()
    subprocess.run([ffmpeg_path(), *plan.argv], check=True, stdout=subprocess.DEVNULL)
    metrics = collect_results(plan, spec, "file:///bench/").rows[0].metrics or {}
    return float(metrics["vmaf"]["mean"])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    seconds = float(args[0]) if args else 20.0
    size = args[1] if len(args) > 1 else "384x216"
    print(f"{seconds:g} s sources at {size}; VMAF mean at n_subsample {' / '.join(map(str, SUBSAMPLES))}")
    print("source | cut | crf | " + " | ".join(f"every {n}" for n in SUBSAMPLES) + " | 7 - 1")
    with tempfile.TemporaryDirectory(prefix="framefleet-sub-") as tmp:
        folder = Path(tmp)
        for name, graph in sources(size).items():
            whole = folder / f"{name}.mp4"
            _make_source(graph, seconds, whole)
            cut = folder / f"{name}-cut.mkv"
            middle = f"{max(0.0, seconds / 2 - 2):.3f}"
            cut_args = ["-ss", middle, "-t", "4", "-i", str(whole), "-c:v", "ffv1", str(cut)]
            subprocess.run([ffmpeg_path(), "-loglevel", "error", "-y", *cut_args], check=True)
            for label, source in ((f"{seconds:g} s", whole), ("4 s", cut)):
                for crf in CRFS:
                    scores = [_score(source, crf, n, folder / f"{name}{label}{crf}{n}") for n in SUBSAMPLES]
                    cells = " | ".join(f"{s:.2f}" for s in scores)
                    print(f"{name} | {label} | {crf} | {cells} | {scores[-1] - scores[0]:+.2f}", flush=True)


if __name__ == "__main__":
    main()
