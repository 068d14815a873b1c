"""What a broadcaster's conformance check looks at, on tiny generated sources: codec levels, colour range
and matrix, HDR10 static metadata, frame rates, subtitles, audio duration and downmix, keyframes, VBV caps.

Needs only the ffmpeg binary: `pytest tests/media/test_conformance.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.media.helpers import quiet_ffmpeg, run_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


def _box_payload(data: bytes, kind: bytes) -> bytes:
    at = data.index(kind)
    return data[at + 4 :]


def test_h264_and_hevc_levels_follow_size_and_rate(ffmpeg: str, folder: Path, tmp_path: Path) -> None:
    source = folder / "hd50.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=50:duration=0.08"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "30"),
        source,
    )
    slow: dict[str, Any] = {"preset": "slow", "crf": 35}
    hevc: dict[str, Any] = {"codec": "hevc", "preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "p50", "container": "mp4", "video": slow},
            {"name": "p25", "container": "mp4", "video": {**slow, "fps": 25}},
            {"name": "hevc25", "container": "mp4", "video": {**hevc, "fps": 25}},
            {"name": "hevc50", "container": "mp4", "video": hevc},
        ]
    }
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    paths = {p.output.name: p.path for p in plan.outputs}
    # avcC: version, profile, compatibility, level_idc (x 10); hvcC: general_level_idc (x 30) at byte 12.
    assert _box_payload(paths["p50"].read_bytes(), b"avcC")[3] == 42  # x264 slow alone says 5.0
    assert _box_payload(paths["p25"].read_bytes(), b"avcC")[3] == 40
    assert _box_payload(paths["hevc25"].read_bytes(), b"hvcC")[12] == 120  # 4
    assert _box_payload(paths["hevc50"].read_bytes(), b"hvcC")[12] == 123  # 4.1
