"""run_ffmpeg reports the CPU time the kernel accounted for the ffmpeg process it reaped."""

from __future__ import annotations

import resource

import pytest

from framefleet.media.runner import run_ffmpeg
from framefleet.observability.usage import AttemptUsage, collecting


def test_cpu_seconds_match_the_kernel(ffmpeg: str) -> None:
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostats",
        "-progress",
        "pipe:1",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=4",
        "-c:v",
        "libx264",
        "-preset",
        "fast",
        "-f",
        "null",
        "-",
    ]
    usage = AttemptUsage()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with collecting(usage):
        result = run_ffmpeg(argv, on_progress=None, duration=4.0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    kernel = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode == 0
    assert kernel > 0.05
    assert result.cpu_seconds == pytest.approx(kernel, rel=0.10, abs=0.01)
    assert usage.cpu_seconds == pytest.approx(kernel, rel=0.10, abs=0.01)
    assert usage.frames == 100 and usage.media_seconds == pytest.approx(4.0, abs=0.1)
