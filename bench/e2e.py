"""End-to-end overhead: a 10 s 720p H.264 job through the API ÷ the identical ffmpeg command run directly.

Runs alternate (job, direct, job, direct, ...) in one session so both see the same machine load, and
reports the ratio of medians. Target: ≤ 1.10.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import bench_stack, demo_media, make_clip, median
from framefleet.cli.client import ApiClient
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import build_transcode
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.probe import probe

SPEC_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "h264", "preset": "veryfast", "crf": 23},
    "audio": {"codec": "aac", "bitrate_kbps": 128},
}


def main(rounds: int = 5) -> dict[str, float]:
    with bench_stack() as (stack, settings):
        clip = make_clip(demo_media(settings) / "bench" / "720p.mp4", seconds=10, size="1280x720")
        spec = {"input": clip.as_uri(), "outputs": [SPEC_OUTPUT], "cache": False}
        direct_out = settings.data_dir / "direct.mp4"
        argv = [
            ffmpeg_path(),
            *build_transcode(
                JobSpec.model_validate(spec),
                probe(clip),
                detect_capabilities(ffmpeg_path()),
                clip,
                {"main": direct_out},
            ),
        ]
        job_times, direct_times = [], []
        with ApiClient(stack.api_url, stack.api_key, timeout=60) as client:
            for _ in range(rounds + 1):  # the first round warms caches and is not counted
                started = time.perf_counter()
                job = client.submit(spec)
                for event in client.events(job["id"]):
                    if event.event == "done":
                        break
                job_elapsed = time.perf_counter() - started
                assert client.get(job["id"])["state"] == "succeeded"

                started = time.perf_counter()
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
                direct_elapsed = time.perf_counter() - started
                job_times.append(job_elapsed)
                direct_times.append(direct_elapsed)
        job_times, direct_times = job_times[1:], direct_times[1:]
    result = {
        "job_median_s": median(job_times),
        "direct_median_s": median(direct_times),
        "ratio": median(job_times) / median(direct_times),
    }
    print(
        f"e2e: job {result['job_median_s']:.2f}s  direct ffmpeg {result['direct_median_s']:.2f}s  "
        f"ratio {result['ratio']:.3f} (target <= 1.10, median of {rounds})"
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    sys.exit(0)
