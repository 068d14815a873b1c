"""Dispatch latency: from sending POST /v1/jobs to the worker starting ffmpeg, over 200 jobs.

The worker publishes a `progress` event (phase encode, 0 %) immediately before it spawns ffmpeg; its Redis
stream id is a millisecond timestamp from the same machine's clock. Targets on an idle stack: p50 ≤ 10 ms,
p99 ≤ 25 ms.
"""

from __future__ import annotations

import sys
import time

from bench.common import bench_stack, demo_media, make_clip, median, percentile
from framefleet.cli.client import ApiClient


def main(jobs: int = 200) -> dict[str, float]:
    latencies: list[float] = []
    with bench_stack() as (stack, settings):
        clip = make_clip(demo_media(settings) / "bench" / "tiny.mp4", seconds=0.2, size="160x120")
        spec = {
            "input": clip.as_uri(),
            "outputs": [{"container": "ts", "video": {"preset": "ultrafast"}}],
            "cache": False,
        }
        with ApiClient(stack.api_url, stack.api_key, timeout=60) as client:
            for index in range(jobs + 5):
                sent_ms = time.time() * 1000
                job = client.submit(spec)
                start_ms = None
                for event in client.events(job["id"]):
                    if start_ms is None and event.event == "progress" and event.id:
                        start_ms = int(event.id.split("-")[0])
                    if event.event == "done":
                        break
                if index >= 5 and start_ms is not None:  # the first jobs warm up the worker
                    latencies.append(start_ms - sent_ms)
    result = {"p50_ms": median(latencies), "p99_ms": percentile(latencies, 99), "jobs": len(latencies)}
    print(
        f"dispatch: POST -> ffmpeg start p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms "
        f"over {len(latencies)} jobs (targets p50 <= 10 ms, p99 <= 25 ms)"
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
