"""Split-and-stitch: one worker process encoding a file whole vs two encoding it in two chunks.

Each run is an embedded stack whose worker has N pool processes (N = 1, then 2), every ffmpeg limited to
one thread (FRAMEFLEET_FFMPEG_THREADS=1), so a pool process is one CPU's worth of encoding and the
comparison is fair. The same job (x264 CRF 23, veryfast, VMAF of every frame scored in the encoding
process) runs unsplit on N = 1 and with `parallel: {"chunks": 2}` on N = 2. Reported: wall time from
submission to success, the speedup, the pooled VMAF of both outputs, the stitched file scored whole
against its chunks' pooled score, and its per-frame VMAF at each join (the worse of the two frames meeting
there, scored whole) against its neighbourhood (the other frames within one second either side).

`python -m bench.split [seconds] [size] [rounds]` (default 20 s of 1280x720 at 25 fps, one round: 60 s of
1080p takes about ten minutes of both CPUs of a 2-core machine, with VMAF scored on every frame).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import bench_stack, make_clip, median, run_ffmpeg
from framefleet.media.quality import UNTAGGED

OUTPUT = {"name": "out", "container": "mp4", "video": {"codec": "h264", "crf": 23, "preset": "veryfast"}}
FPS = 25


def _run(clip: Path, shared: Path, tmp: str, workers: int, parallel: dict[str, Any] | None) -> dict[str, Any]:
    overrides = {
        "FRAMEFLEET_WORKER_CONCURRENCY": str(workers),
        "FRAMEFLEET_FFMPEG_THREADS": "1",
        "FRAMEFLEET_STORAGE_ROOTS": f'["{tmp}"]',
        "FRAMEFLEET_SHARED_STORAGE": f'["{shared.as_uri()}"]',
    }
    spec: dict[str, Any] = {
        "input": clip.as_uri(),
        "outputs": [OUTPUT],
        "quality": {"metrics": ["vmaf"], "subsample": 1, "threads": 1},
        "cache": False,
    }
    if parallel is not None:
        spec["parallel"] = parallel
    with (
        bench_stack(**overrides) as (stack, _settings),
        httpx.Client(base_url=stack.api_url, headers={"X-API-Key": stack.api_key}, timeout=60) as http,
    ):
        started = time.monotonic()
        response = http.post("/v1/jobs", json=spec)
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            time.sleep(0.25)
            job = http.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "failed", "canceled"):
                break
        wall = time.monotonic() - started
        if job["state"] != "succeeded":
            raise RuntimeError(f"job {job['state']}: {job.get('error')}")
        (output,) = job["outputs"]
        joins = [c["start_frame"] for c in (output.get("details") or {}).get("chunks", [])[1:]]
        result = {
            "workers": workers,
            "chunks": len(joins) + 1,
            "wall_s": round(wall, 2),
            "vmaf": output["metrics"]["vmaf"]["mean"],
            "size_bytes": output["size_bytes"],
        }
        # The output scored whole by a separate pass: for the stitched file, the check that its chunks'
        # pooled score is the whole file's, and each seam as a viewer gets it.
        path = Path(output["uri"].removeprefix("file://"))
        scores = _vmaf_frames(path, clip, Path(tmp) / "direct.json")
        result["vmaf_scored_whole"] = round(sum(scores.values()) / len(scores), 6)
        result["joins"] = joins
        result["frames"] = scores
    return result


def _vmaf_frames(distorted: Path, reference: Path, log: Path) -> dict[int, float]:
    # Colour tags cleared on both sides as the job's own scoring does: a tagged output against an untagged
    # source would otherwise be converted between colour matrices before the comparison.
    graph = f"[0:v]{UNTAGGED}[d];[1:v]{UNTAGGED}[r];[d][r]libvmaf=log_fmt=json:log_path={log}:n_threads=2"
    run_ffmpeg("-i", str(distorted), "-i", str(reference), "-lavfi", graph, "-f", "null", "-")
    return {f["frameNum"]: f["metrics"]["vmaf"] for f in json.loads(log.read_text())["frames"]}


def _seam(split: dict[int, float], whole: dict[int, float], frame: int) -> dict[str, float]:
    """A join's two frames (the last of one chunk, the first of the next) against the second around them,
    in the stitched file and at the same frames of the unsplit encode."""

    def around(scores: dict[int, float]) -> float:
        near = [
            scores[f] for f in range(frame - FPS, frame + FPS) if f in scores and f not in (frame - 1, frame)
        ]
        return sum(near) / len(near)

    return {
        "frame": frame,
        "stitched_at_join": round(min(split[frame - 1], split[frame]), 3),
        "stitched_neighbourhood": round(around(split), 3),
        "unsplit_at_join": round(min(whole[frame - 1], whole[frame]), 3),
        "unsplit_neighbourhood": round(around(whole), 3),
    }


def main(seconds: float = 20, size: str = "1280x720", rounds: int = 1) -> dict[str, Any]:
    """`rounds` > 1 alternates the two runs and reports the median wall times (the machine is shared)."""
    walls: dict[str, list[float]] = {"whole": [], "split": []}
    with tempfile.TemporaryDirectory(prefix="framefleet-split-") as tmp:
        shared = Path(tmp) / "shared"
        clip = make_clip(shared / "source.mp4", seconds=seconds, size=size, rate=FPS)
        for _ in range(rounds):
            whole = _run(clip, shared, tmp, 1, None)
            split = _run(clip, shared, tmp, 2, {"chunks": 2})
            walls["whole"].append(whole["wall_s"])
            walls["split"].append(split["wall_s"])
    seams = [_seam(split["frames"], whole["frames"], frame) for frame in split["joins"]]
    for run in (whole, split):
        del run["frames"], run["joins"]
    result = {
        "source": {"seconds": seconds, "size": size, "fps": FPS},
        "unsplit_1_worker": whole,
        "split_2_workers": split,
        "joins": seams,
        "wall_s": walls,
        "speedup": round(median(walls["whole"]) / median(walls["split"]), 2),
        "vmaf_delta": round(split["vmaf"] - whole["vmaf"], 3),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        float(args[0]) if args else 20,
        args[1] if len(args) > 1 else "1280x720",
        int(args[2]) if len(args) > 2 else 1,
    )
