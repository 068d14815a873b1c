"""Colour of what FrameFleet writes, on tiny generated sources: what an untagged source is taken to be,
HDR10 static metadata on every HDR target, levels that hold, explicit tags on copies.

Needs only the ffmpeg binary: `pytest tests/media/test_colour.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from framefleet.media.colour import source_colour
from framefleet.media.probe import VideoInfo, probe
from tests.media.helpers import quiet_ffmpeg, run_plan

pytestmark = pytest.mark.integration

TAGS = ("color_primaries", "color_transfer", "color_matrix", "color_range")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("colour")


def _tags(path: Path) -> tuple[str | None, ...]:
    video = probe(path).video
    assert video is not None
    return tuple(getattr(video, tag) for tag in TAGS)


def _untagged(ffmpeg: str, path: Path, size: str, rate: str) -> Path:
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration=0.12"),
        *("-vf", "format=yuv420p,setparams=range=unknown:colorspace=unknown"),
        *("-c:v", "libx264", "-preset", "ultrafast"),
        path,
    )
    assert _tags(path) == (None, None, None, None)
    return path


@pytest.mark.parametrize(
    ("height", "fps", "primaries"),
    [
        (576, None, "bt470bg"),
        (288, 30.0, "bt470bg"),  # a 625-line size whatever the rate
        (480, 25.0, "bt470bg"),  # 25 Hz: made on 625-line equipment
        (240, 50.0, "bt470bg"),
        (480, 29.97, "smpte170m"),
        (480, 23.976, "smpte170m"),
        (480, None, "smpte170m"),
        (720, 25.0, "bt709"),  # HD is BT.709 at any rate
    ],
)
def test_untagged_sd_is_taken_as_pal_or_ntsc_by_lines_and_rate(
    height: int, fps: float | None, primaries: str
) -> None:
    video = VideoInfo(
        "h264",
        width=height * 4 // 3,
        height=height,
        fps=fps,
        pix_fmt="yuv420p",
        rotation=0,
        frames=None,
        bit_rate=None,
    )
    assert source_colour(video).primaries == primaries


def test_untagged_pal_rate_sources_are_written_with_625_line_primaries(
    ffmpeg: str, folder: Path, tmp_path: Path
) -> None:
    body = {"outputs": [{"container": "mp4", "video": {"preset": "ultrafast"}}]}
    for size, rate, primaries in (("352x288", "25", "bt470bg"), ("320x240", "30000/1001", "smpte170m")):
        source = _untagged(ffmpeg, folder / f"untagged_{size}.mp4", size, rate)
        _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / size)
        # The matrix follows the primaries: both BT.601 matrices convert alike, but say what was assumed.
        assert _tags(plan.outputs[0].path) == (primaries, "smpte170m", primaries, "tv"), size


def _avc_level(path: Path) -> int:
    """level_idc (x 10) from the MP4's avcC box: version, profile, compatibility, then the level."""
    data = path.read_bytes()
    return data[data.index(b"avcC") + 7]


def test_uncapped_h264_stays_within_the_bit_rate_of_its_level(
    ffmpeg: str, folder: Path, tmp_path: Path
) -> None:
    source = folder / "noise.mkv"
    seconds = 0.8
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds},noise=alls=40:allf=t"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"),
        source,
    )
    body = {"outputs": [{"container": "mp4", "video": {"preset": "ultrafast", "crf": 12}}]}
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    out = plan.outputs[0].path
    # 300 macroblocks at 25 Hz is level 1.3: ultrafast writes Constrained Baseline, MaxBR 768 kb/s and
    # MaxCPB 2000 kb. A stream that keeps to them never needs more than the buffer plus the rate's worth.
    assert _avc_level(out) == 13
    kilobits = out.stat().st_size * 8 / 1000
    assert kilobits <= 2000 + 768 * seconds, kilobits  # uncapped, this noise takes about 8 Mb
    assert "-maxrate" in plan.argv and plan.argv[plan.argv.index("-maxrate") + 1] == "768k"
