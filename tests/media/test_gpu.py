"""NVENC for real: a CUDA-decoded, scale_cuda-scaled, NVENC-encoded ladder and output, read back.

Marked `gpu`: collected everywhere, run only where an NVIDIA GPU is present (tests/media/conftest.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import pytest

from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities, detect_devices, hardware_for
from framefleet.media.command import plan_job
from framefleet.media.encoders import Family
from framefleet.media.probe import probe
from framefleet.media.results import collect_results
from framefleet.media.runner import run_ffmpeg
from tests.conftest import make_clip
from tests.media.streaming import read_media
from tests.media.test_groups import check_alignment

pytestmark = [pytest.mark.gpu, pytest.mark.integration]


def test_nvenc_ladder_and_output_with_cuda_decode(ffmpeg: str, tmp_path: Path) -> None:
    source = make_clip(ffmpeg, tmp_path / "src.mp4", seconds=4, size="1280x720")
    caps = detect_capabilities(ffmpeg)
    hardware = hardware_for(caps, detect_devices())
    assert hardware is not None and hardware.family is Family.nvenc, "an NVIDIA GPU is present but unusable"
    spec = JobSpec.model_validate(
        {
            "input": "file:///in.mp4",
            "hardware": "gpu",
            "outputs": [{"name": "h", "container": "mp4", "video": {"codec": "hevc", "height": 360}}],
            "groups": [{"name": "abr", "type": "hls", "ladder": ["720p", "360p"], "segment_seconds": 1}],
            "quality": {"metrics": ["vmaf", "psnr"]},
        }
    )
    work = tmp_path / "w"
    shutil.rmtree(work, ignore_errors=True)
    plan = plan_job(spec, probe(source), caps, source, work, hardware=hardware)
    plan.prepare()
    assert plan.notes.get("gpu_frames") is True and "h264_nvenc" in plan.argv
    result = run_ffmpeg([ffmpeg, *plan.argv], on_progress=None, duration=plan.duration)
    assert result.returncode == 0, result.stderr_tail
    rows = {r.name: r for r in collect_results(plan, spec, "file:///pub/j").rows}
    with av.open(str(plan.outputs[0].path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.name, stream.width, stream.height, frames) == ("hevc", 640, 360, 100)
    folder = plan.groups[0].folder
    renditions = [
        (None, [n for n, _ in read_media(folder / r.playlist).segments]) for r in plan.groups[0].rungs
    ]
    check_alignment(folder, renditions, 1.0)
    assert rows["abr/720p"].metrics["vmaf"]["mean"] > 60 and rows["h"].metrics["psnr"]["mean"] > 30
