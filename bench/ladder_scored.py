"""A scored ladder: our job end to end vs one ffmpeg per rung plus three metric passes per rung.

What users wait for is a ladder with its scores. Same 4-rung HLS ladder and source as bench/ladder.py,
with VMAF, PSNR and SSIM for every rung:
- ours: the job submitted through the API on the embedded stack, timed from POST until the `done` event
  (fetch, probe, one ffmpeg that encodes every rung and scores it in the same process through loopback
  decoders, packaging, publishing, recording);
- the peers' method: per rung, the same encoder arguments in their own ffmpeg, then a libvmaf pass, a psnr
  pass and an ssim pass, each decoding the rung and the source and scaling the rung up to the source's
  size (display-size scoring, as our job does; it also keeps each rung's own-size score).
VMAF uses the same model, threads and n_subsample (our default, 7) on both sides. Target: at least 1.8.
`python -m bench.ladder_scored 1 pattern` measures the easy H.264 test pattern instead of the camera source.

`python -m bench.ladder_scored 3 camera 8 --cost` measures instead what display-size scoring costs: the
worker's argument list for the ladder (one process, no stack), run unscored, scored the way rungs were
before (each at its own size against a downscaled reference: the plan made with `display_size` answering
None) and scored the way they are now (upscaled to the source's size, with each rung's own-size score
beside it; and without it, as the quality target's probes are), rounds alternating; median wall and CPU
seconds (CPU time of the ffmpeg processes holds steadier than wall time on a shared machine), what scoring
adds to the unscored run each way, and the ratio of the display-size job to the own-size one; then each
rung's VMAF at display size and at its own size, from the last display-size run.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from unittest import mock

from bench.common import bench_stack, demo_media, make_clip, median
from bench.ladder import LADDER, SECONDS, argv_for, group, make_source, plan_for, timed
from framefleet.cli.client import ApiClient
from framefleet.core.spec import JobSpec, QualitySpec
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.quality import vmaf_model_for
from framefleet.media.results import score_summary

SIZES = {"1080p": (1920, 1080), "720p": (1280, 720), "480p": (854, 480), "360p": (640, 360)}
THREADS = 2


def metric_passes(rung: Path, source: Path, size: tuple[int, int], folder: Path) -> list[list[str]]:
    """Three separate passes over one rung, as a pipeline built from single-metric commands runs them."""
    quality = QualitySpec()
    model = vmaf_model_for(quality, *size)
    vmaf = (
        f"libvmaf=model=version={model}:n_threads={THREADS}:n_subsample={quality.subsample}"
        f":log_fmt=json:log_path={folder / 'vmaf.json'}"
    )
    passes = []
    for body in (vmaf, f"psnr=stats_file={folder / 'psnr.log'}", f"ssim=stats_file={folder / 'ssim.log'}"):
        # Scored as our job scores a scaled rung: upscaled to the source's size, against the source.
        graph = f"[0:V:0]scale={size[0]}:{size[1]}:flags=bicubic,setsar=1[dist];[dist][1:V:0]{body}"
        passes.append(
            [
                ffmpeg_path(),
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-i",
                str(rung),
                "-i",
                str(source),
                "-filter_complex",
                graph,
                "-f",
                "null",
                "-",
            ]
        )
    return passes


def peers(source: Path, folder: Path) -> float:
    """Seconds for one encode per rung, then three metric passes per rung."""
    started = time.perf_counter()
    for rung in LADDER:
        work = folder / f"peer-{rung}"
        timed([argv_for(group([rung]), source, work)])
        playlist = work / "groups" / "abr" / f"{rung}.m3u8"
        timed(metric_passes(playlist, source, SIZES["1080p"], work))
    return time.perf_counter() - started


def ours(client: ApiClient, spec: dict[str, object], rungs: int) -> float:
    started = time.perf_counter()
    job = client.submit(spec)
    for event in client.events(job["id"]):
        if event.event == "done":
            break
    elapsed = time.perf_counter() - started
    final = client.get(job["id"])
    assert final["state"] == "succeeded", final
    scored = [o for o in final["outputs"] if o.get("metrics")]
    assert len(scored) == rungs, final["outputs"]
    return elapsed


def main(rounds: int = 1, kind: str = "camera", seconds: float = SECONDS) -> dict[str, float]:
    with bench_stack() as (stack, settings), tempfile.TemporaryDirectory(prefix="framefleet-bench-") as tmp:
        media = demo_media(settings) / "bench"
        media.mkdir(parents=True, exist_ok=True)
        source = make_source(media, kind, seconds)
        warm = make_clip(media / "warm.mp4", seconds=1, size="320x240")
        spec = {**group(LADDER, quality=True), "input": source.as_uri()}
        warm_spec = {
            **group([{"name": "w", "height": 120, "bitrate_kbps": 100}], quality=True),
            "input": warm.as_uri(),
        }
        with ApiClient(stack.api_url, stack.api_key, timeout=600) as client:
            ours(client, warm_spec, 1)  # the worker's first job pays for imports and capability listings
            job_times, peer_times = [], []
            for index in range(rounds):
                job_times.append(ours(client, spec, len(LADDER)))
                peer_times.append(peers(source, Path(tmp) / f"round-{index}"))
    result = {"job_s": median(job_times), "peers_s": median(peer_times)}
    result["speedup"] = result["peers_s"] / result["job_s"]
    print(
        f"ladder_scored ({kind} source): our job {result['job_s']:.1f}s, "
        f"one ffmpeg per rung + 3 metric passes per rung {result['peers_s']:.1f}s "
        f"-> {result['speedup']:.2f}x (target >= 1.8, median of {rounds})"
    )
    return result


def _cpu_timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one ffmpeg run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed([argv])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cost(rounds: int = 3, kind: str = "camera", seconds: float = SECONDS) -> dict[str, float]:
    """Median wall and CPU seconds of the ladder's process unscored, scored at own size, and scored at
    display size with and without the own-size scores."""
    with tempfile.TemporaryDirectory(prefix="framefleet-bench-") as tmp:
        folder = Path(tmp)
        source = make_source(folder, kind, seconds)
        spec = group(LADDER, quality=True)
        plain = argv_for(spec, source, folder / "plain")
        with mock.patch("framefleet.media.command.display_size", return_value=None):
            own_size = argv_for(spec, source, folder / "own", score=True)
        display_plan = plan_for(spec, source, folder / "display", score=True)
        display = [ffmpeg_path(), *display_plan.argv]
        alone = argv_for(spec, source, folder / "alone", score=True, native_scores=False)
        runs = {"unscored": plain, "own_size": own_size, "display": display, "display_alone": alone}
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, argv in runs.items():
                wall, cpu = _cpu_timed(argv)
                walls[name].append(wall)
                cpus[name].append(cpu)
        # The rungs' scores from the last display-size run: at display size, and at their own size.
        quality = JobSpec.model_validate({**spec, "input": source.as_uri()}).quality
        for score in display_plan.scores:
            metrics = score_summary(score, quality) or {}
            native = metrics.get("native", metrics)
            print(
                f"  {score.name}: VMAF {metrics['vmaf']['mean']:.1f} at display size, "
                f"{native['vmaf']['mean']:.1f} at its own size"
            )
    result = {f"{name}_s": median(values) for name, values in walls.items()}
    result |= {f"{name}_cpu_s": median(values) for name, values in cpus.items()}
    for unit in ("s", "cpu_s"):
        # What scoring adds to the encode, the old way and the new, and the share of the own-size scores.
        plain_s = result[f"unscored_{unit}"]
        result[f"own_size_added_{unit}"] = result[f"own_size_{unit}"] - plain_s
        result[f"display_added_{unit}"] = result[f"display_{unit}"] - plain_s
        result[f"display_alone_added_{unit}"] = result[f"display_alone_{unit}"] - plain_s
    result["display_vs_own_size"] = result["display_s"] / result["own_size_s"]
    result["display_vs_own_size_cpu"] = result["display_cpu_s"] / result["own_size_cpu_s"]
    print(f"ladder_scored cost ({kind} source, {seconds:g} s, median of {rounds}):")
    for name in runs:
        print(f"  {name:14} wall {result[f'{name}_s']:6.1f} s   cpu {result[f'{name}_cpu_s']:6.1f} s")
    print(
        f"  scoring adds (wall / cpu): own size {result['own_size_added_s']:.1f} / "
        f"{result['own_size_added_cpu_s']:.1f} s, display size + own size {result['display_added_s']:.1f} / "
        f"{result['display_added_cpu_s']:.1f} s, display size alone {result['display_alone_added_s']:.1f} / "
        f"{result['display_alone_added_cpu_s']:.1f} s; the job at display size is "
        f"{result['display_vs_own_size']:.2f}x (cpu {result['display_vs_own_size_cpu']:.2f}x) own size"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.ladder_scored")
    parser.add_argument("rounds", type=int, nargs="?", default=None)
    parser.add_argument("kind", choices=["camera", "pattern"], nargs="?", default="camera")
    parser.add_argument("seconds", type=float, nargs="?", default=SECONDS)
    parser.add_argument("--cost", action="store_true", help="the cost of display-size scoring instead")
    args = parser.parse_args()
    if args.cost:
        cost(args.rounds or 3, args.kind, args.seconds)
    else:
        main(args.rounds or 1, args.kind, args.seconds)
