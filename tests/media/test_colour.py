"""Colour of what FrameFleet writes, on tiny generated sources: what an untagged source is taken to be,
HDR10 static metadata on every HDR target, levels that hold, explicit tags on copies.

Needs only the ffmpeg binary: `pytest tests/media/test_colour.py`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from framefleet.media.colour import source_colour
from framefleet.media.probe import VideoInfo, probe
from tests.media.helpers import frames, quiet_ffmpeg, run_plan

pytestmark = pytest.mark.integration

TAGS = ("color_primaries", "color_transfer", "color_matrix", "color_range")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("colour")


def _tags(path: Path) -> tuple[str | None, ...]:
    video = probe(path).video
    assert video is not None
    return tuple(getattr(video, tag) for tag in TAGS)


def _pixels(path: Path) -> list[bytes]:
    return [b"".join(bytes(plane) for plane in frame.planes) for frame in frames(path)]


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


@pytest.fixture(scope="module")
def hdr10(ffmpeg: str, folder: Path) -> Path:
    """0.32 s of HDR10: HEVC Main 10, BT.2020/PQ, with mastering-display and content-light SEI."""
    path = folder / "hdr10.mp4"
    x265 = (
        "log-level=error:repeat-headers=1:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"
        ":master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50):max-cll=1000,400"
    )
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25:duration=0.32"),
        "-vf",
        "format=yuv420p,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv,"
        "zscale=p=bt2020:t=smpte2084:m=bt2020nc:r=tv:npl=100,format=yuv420p10le",
        *("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", x265, "-tag:v", "hvc1"),
        path,
    )
    return path


def test_hdr10_metadata_reaches_ten_bit_av1_and_hevc_in_every_container(
    ffmpeg: str, hdr10: Path, tmp_path: Path
) -> None:
    source = probe(hdr10).video
    assert source is not None and source.hdr10 is not None and source.hdr10.min_luminance == 50
    ten_bit = {"pix_fmt": "yuv420p10le", "preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": f"{codec}_{container}", "container": container, "video": {"codec": codec, **ten_bit}}
            for codec, container in (("hevc", "mp4"), ("av1", "mkv"), ("av1", "webm"), ("hevc", "mkv"))
        ],
        "poster": {"time": 0.1},  # an SDR branch: the picture is split
    }
    _, plan, _ = run_plan(ffmpeg, body, hdr10, tmp_path / "w")
    for out in plan.outputs:
        video = probe(out.path).video
        assert video is not None and video.color_transfer == "smpte2084", out.output.name
        # Only the first branch of a split picture hands the stream's HDR10 metadata to its muxer (ffmpeg
        # 9.0), so it has to be in the bitstream (HEVC SEI, AV1 metadata OBUs) to reach every player.
        assert video.hdr10 == source.hdr10, out.output.name


def _container_hdr10(ffmpeg: str, path: Path) -> list[str]:
    """The HDR10 side data the container gives the stream (MP4/MOV `mdcv`/`clli`, Matroska Colour), as
    ffmpeg's stream dump lists it; bitstream SEI are not read at this level."""
    dump = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return sorted(
        line.strip().split(":")[0]
        for line in dump.splitlines()
        if "Mastering display metadata" in line or "Content light level metadata" in line
    )


def test_every_hdr_branch_of_a_split_picture_keeps_hdr10_in_its_container(
    ffmpeg: str, hdr10: Path, tmp_path: Path
) -> None:
    ten_bit = {"pix_fmt": "yuv420p10le", "preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": f"{codec}_{container}", "container": container, "video": {"codec": codec, **ten_bit}}
            for codec, container in (("hevc", "mp4"), ("hevc", "mkv"), ("vp9", "webm"), ("hevc", "mov"))
        ],
        "poster": {"time": 0.1},  # an SDR branch beside them
    }
    _, plan, _ = run_plan(ffmpeg, body, hdr10, tmp_path / "w")
    both = ["Content light level metadata", "Mastering display metadata"]
    for out in plan.outputs:
        # ffmpeg hands it to the first output of each filter graph only: before, the later three had none
        # (10-bit VP9 in WebM lost HDR10 entirely).
        assert _container_hdr10(ffmpeg, out.path) == both, out.output.name
    assert _container_hdr10(ffmpeg, plan.pictures[0].folder / "poster.jpg") == []


def test_stream_copies_of_untagged_sources_are_tagged_without_touching_the_pixels(
    ffmpeg: str, folder: Path, tmp_path: Path
) -> None:
    source = _untagged(ffmpeg, folder / "untagged_ntsc.mp4", "320x240", "30000/1001")
    hd = _untagged(ffmpeg, folder / "untagged_hd.mp4", "1280x720", "25")
    copy = {"outputs": [{"container": "mkv", "video": {"codec": "copy"}}]}
    for path, colour in ((source, "smpte170m"), (hd, "bt709")):
        _, plan, _ = run_plan(ffmpeg, copy, path, tmp_path / path.stem)
        out = plan.outputs[0].path
        assert _tags(out) == (colour, colour, colour, "tv"), path.name
        assert _pixels(out) == _pixels(path), path.name
