"""Media helpers shared by the media and integration tests: inputs made with ffmpeg, a job planned and run
the way the worker runs it, and pictures decoded back with PyAV.

Plain clips come from tests/conftest.py's make_clip; what is here builds on the same quiet ffmpeg call.
The flash+beep clip for A/V sync and its measurement live in tests/media/sync.py, ISO BMFF box reading in
tests/media/bmff.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import av

from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import JobPlan, plan_job
from framefleet.media.filters import Assets
from framefleet.media.probe import probe
from framefleet.media.runner import FfmpegResult, run_ffmpeg

CLOCK_FPS = 25

Box = tuple[int, int, int, int]  # x, y, width, height


# ---------------------------------------------------------------- making inputs


def quiet_ffmpeg(ffmpeg: str, *args: str | Path) -> None:
    """Run ffmpeg printing errors only and overwriting its output; a failed run fails the test."""
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def make_clock(ffmpeg: str, path: Path, seconds: float = 2.0, size: str = "160x120") -> Path:
    """A "clock": frame N is grey with luma 4N (lossless H.264), with a tone for sound; see frame_number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lavfi = f"color=black:s={size}:r={CLOCK_FPS}:d={seconds},format=yuv420p,geq=lum='N*4':cb=128:cr=128"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", lavfi),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
        *("-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", "-c:a", "aac"),
        path,
    )
    return path


def rotated_copy(ffmpeg: str, source: Path, path: Path, degrees: int) -> Path:
    """A stream copy of `source` that records a display rotation (an input option: no re-encode)."""
    quiet_ffmpeg(ffmpeg, "-display_rotation", str(degrees), "-i", source, "-c", "copy", path)
    return path


def still_image(ffmpeg: str, path: Path, lavfi: str) -> Path:
    """One picture from a lavfi source, e.g. `color=white:s=64x32,format=rgba` for a watermark."""
    quiet_ffmpeg(ffmpeg, "-f", "lavfi", "-i", lavfi, "-frames:v", "1", path)
    return path


# ---------------------------------------------------------------- running a job's ffmpeg process


def run_plan(
    ffmpeg: str,
    body: dict[str, Any],
    source: Path,
    work: Path,
    *,
    assets: Assets | None = None,
    input_uri: str = "file:///in.mp4",
) -> tuple[JobSpec, JobPlan, FfmpegResult]:
    """Plan the job `body` for `source` in a fresh `work` folder and run its one ffmpeg process to success."""
    spec = JobSpec.model_validate({"input": input_uri, **body})
    shutil.rmtree(work, ignore_errors=True)
    plan = plan_job(spec, probe(source), detect_capabilities(ffmpeg), source, work, threads=2, assets=assets)
    plan.prepare()
    result = run_ffmpeg([ffmpeg, *plan.argv], on_progress=None, duration=plan.duration)
    assert result.returncode == 0, result.stderr_tail
    return spec, plan, result


def output_paths(plan: JobPlan) -> dict[str, Path]:
    """Where each named output of a plan was written."""
    return {p.output.name or "": p.path for p in plan.outputs}


# ---------------------------------------------------------------- decoding


def frames(path: Path) -> list[av.VideoFrame]:
    """Every picture of the first video stream, decoded."""
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def first_frame(path: Path) -> av.VideoFrame:
    """The first decoded picture (of a still image, the image)."""
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


def mean_luma(frame: av.VideoFrame, box: Box | None = None) -> float:
    """Mean luma (0-255) of a box of a picture, or of all of it."""
    grey = frame.reformat(format="gray")
    plane = grey.planes[0]
    data = bytes(plane)
    x, y, w, h = box or (0, 0, grey.width, grey.height)
    total = sum(sum(data[r * plane.line_size + x : r * plane.line_size + x + w]) for r in range(y, y + h))
    return total / (w * h)


def frame_number(image: av.VideoFrame, box: Box | None = None) -> int:
    """Which clock frame (make_clock) a picture, or a box of it, shows."""
    return round((mean_luma(image, box) * 219 / 255 + 16) / 4)  # video range back to the 4N written


def paced_encode(*inputs: str) -> list[str]:
    """ffmpeg arguments (after the binary) that encode `inputs` at real-time pace (-re) to nowhere, with
    -progress on stdout: an encode that lasts as long as its input, or forever for an endless source."""
    return [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-progress",
        "pipe:1",
        "-loglevel",
        "error",
        "-re",
        *inputs,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "null",
        "-",
    ]
