"""Result cache: a repeated 10 s 720p job (same input content, same spec) ÷ its first, encoding run.

Both are timed from submission to the `done` event through the API. Each round uses a fresh copy of the
clip with different bytes (a new fingerprint), so every first run really encodes; the repeat then is a
cache hit that copies the outputs. Target: ≤ 0.05.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.common import bench_stack, demo_media, make_clip, median
from framefleet.cli.client import ApiClient

SPEC_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "h264", "preset": "veryfast", "crf": 23},
    "audio": {"codec": "aac", "bitrate_kbps": 128},
}


def _timed(client: ApiClient, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    job = client.submit(spec)
    for event in client.events(job["id"]):
        if event.event == "done":
            break
    elapsed = time.perf_counter() - started
    view = client.get(job["id"])
    assert view["state"] == "succeeded", view
    return elapsed, view


def main(rounds: int = 3) -> dict[str, float]:
    first_times, repeat_times = [], []
    with bench_stack() as (stack, settings):
        folder = demo_media(settings) / "bench"
        with ApiClient(stack.api_url, stack.api_key, timeout=120) as client:
            for index in range(rounds):
                # A different duration tail per round: other bytes, so the first run cannot hit the cache.
                clip = make_clip(folder / f"720p-{index}.mp4", seconds=10 + index * 0.04, size="1280x720")
                spec = {"input": clip.as_uri(), "outputs": [SPEC_OUTPUT]}
                first, view = _timed(client, spec)
                assert not view["cache_hit"], view
                repeat, view = _timed(client, spec)
                assert view["cache_hit"], view
                first_times.append(first)
                repeat_times.append(repeat)
    result = {
        "first_median_s": median(first_times),
        "repeat_median_s": median(repeat_times),
        "ratio": median(repeat_times) / median(first_times),
    }
    print(
        f"cache: first {result['first_median_s']:.2f}s  repeat {result['repeat_median_s']:.3f}s  "
        f"ratio {result['ratio']:.3f} (target <= 0.05, median of {rounds})"
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    sys.exit(0)
