"""ABR ladder: one ffmpeg process for all rungs vs one process per rung, same settings, same run.

A 4-rung HLS ladder (1080p, 720p, 480p, 360p; x264 veryfast, capped VBR, 4 s segments, fixed GOP) from a
20 s 1080p25 source. "One process" is the argument list the worker runs (media.command.plan_job): one
decode, `split`, a scale per rung. "Per rung" runs plan_job for a group holding just that rung, so each
process has the identical encoder arguments, and they run one after another. Rounds alternate. Target:
per rung / one process at least 1.4.

Two sources are measured. The headline is a phone-camera-like source, HEVC Main 10 with fine grain: what
users upload, and costly to decode, which is the work one process does once instead of four times. The
second, an easy 8-bit H.264 test pattern, is decoded almost for free, so there only the encoders count.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, run_ffmpeg
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import JobPlan, plan_job
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.probe import probe

LADDER = ["1080p", "720p", "480p", "360p"]
SECONDS = 20


def group(ladder: list[Any], *, quality: bool = False) -> dict[str, Any]:
    """A job spec with one HLS group over `ladder`."""
    spec: dict[str, Any] = {
        "input": "file:///bench/source",
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "ladder": ladder,
                "preset": "veryfast",
                "segment_seconds": 4,
                "audio": [],
            }
        ],
    }
    if quality:
        spec["quality"] = {"metrics": ["vmaf", "psnr", "ssim"]}
    return spec


def make_source(folder: Path, kind: str, seconds: float = SECONDS) -> Path:
    """A 1080p25 source: `camera` (HEVC Main 10 with grain) or `pattern` (8-bit H.264 test pattern)."""
    lavfi = f"testsrc2=size=1920x1080:rate=25:duration={seconds}"
    path = folder / f"{kind}.mp4"
    if kind == "camera":
        codec = [
            "-vf",
            "noise=alls=5:allf=t",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p10le",
            "-x265-params",
            "log-level=error",
        ]
    else:
        codec = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    run_ffmpeg("-f", "lavfi", "-i", lavfi, *codec, str(path))
    return path


def plan_for(
    spec: dict[str, Any], source: Path, work: Path, *, score: bool = False, native_scores: bool = True
) -> JobPlan:
    """The worker's plan for `spec` (folders created)."""
    job = JobSpec.model_validate(spec)
    caps = detect_capabilities(ffmpeg_path())
    plan = plan_job(job, probe(source), caps, source, work, score=score, native_scores=native_scores)
    plan.prepare()
    return plan


def argv_for(
    spec: dict[str, Any], source: Path, work: Path, *, score: bool = False, native_scores: bool = True
) -> list[str]:
    """The worker's argument list for `spec` (folders created)."""
    plan = plan_for(spec, source, work, score=score, native_scores=native_scores)
    return [ffmpeg_path(), *plan.argv]


def per_rung_argvs(source: Path, folder: Path) -> list[list[str]]:
    """One argument list per rung, each a group of that rung alone (identical encoder options)."""
    return [argv_for(group([rung]), source, folder / f"rung-{rung}") for rung in LADDER]


def timed(argvs: list[list[str]]) -> float:
    started = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def compare(source: Path, folder: Path, rounds: int, label: str) -> dict[str, float]:
    one = argv_for(group(LADDER), source, folder / "one")
    per = per_rung_argvs(source, folder)
    one_times, per_times = [], []
    for _ in range(rounds):
        one_times.append(timed([one]))
        per_times.append(timed(per))
    result = {"one_process_s": median(one_times), "per_rung_s": median(per_times)}
    result["speedup"] = result["per_rung_s"] / result["one_process_s"]
    print(
        f"ladder ({label}): one process {result['one_process_s']:.1f}s, "
        f"one per rung {result['per_rung_s']:.1f}s -> {result['speedup']:.2f}x "
        f"(target >= 1.4, median of {rounds})"
    )
    return result


def main(rounds: int = 2) -> dict[str, dict[str, float]]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="framefleet-bench-ladder-") as tmp:
        folder = Path(tmp)
        for kind, label in (("camera", "HEVC Main 10 camera-like source"), ("pattern", "H.264 test pattern")):
            source = make_source(folder, kind)
            results[kind] = compare(source, folder / kind, rounds, label)
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
