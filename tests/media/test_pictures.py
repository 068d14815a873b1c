"""Thumbnails, sprite sheets with their WebVTT map, and the poster, against real ffmpeg.

The source is a "clock": frame N is a flat grey of luma 4N, so every picture says which frame it shows.
Needs only the ffmpeg binary: `pytest tests/media/test_pictures.py`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from framefleet.media.command import JobPlan
from framefleet.media.results import Results, collect_results
from tests.media.helpers import first_frame, frame_number, make_clock, run_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clock(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clock(ffmpeg, tmp_path_factory.mktemp("clock") / "clock.mp4")


def run(ffmpeg: str, body: dict[str, Any], source: Path, work: Path) -> tuple[JobPlan, Results]:
    spec, plan, _ = run_plan(ffmpeg, body, source, work)
    return plan, collect_results(plan, spec, "file:///pub/j")


def test_thumbnails_at_times_and_every_n_seconds(ffmpeg: str, clock: Path, tmp_path: Path) -> None:
    body = {
        "thumbnails": [
            {"name": "at", "times": [1.0, 0.5, 1.63, 5.0], "format": "png"},
            {"name": "every", "every_seconds": 0.4, "format": "jpeg", "width": 80, "quality": 90},
            {"name": "small", "times": [0.2], "format": "webp", "height": 60},
        ]
    }
    plan, results = run(ffmpeg, body, clock, tmp_path / "w")
    rows = {r.name: r for r in results.rows}
    at = sorted((plan.pictures[0].folder).iterdir())
    # First frame at or after each time: 0.5 s -> frame 13 (0.52 s), 1.0 -> 25, 1.63 -> 41; 5 s is too late.
    assert [frame_number(first_frame(p)) for p in at] == [13, 25, 41]
    assert [f["time"] for f in rows["at"].details["files"]] == [0.5, 1.0, 1.63]
    assert rows["at"].details["dropped_times"] == [5.0]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in at)
    every = sorted(plan.pictures[1].folder.iterdir())
    # Buckets of 0.4 s: frames 0, 10, 20, 30, 40 (the first of each), never drifting.
    assert [frame_number(first_frame(p)) for p in every[1:]] == [10, 20, 30, 40]
    assert [(first_frame(p).width, first_frame(p).height) for p in every] == [(80, 60)] * 5
    assert every[0].read_bytes()[:2] == b"\xff\xd8"
    assert [f["time"] for f in rows["every"].details["files"]] == [0.0, 0.4, 0.8, 1.2, 1.6]
    (small,) = plan.pictures[2].folder.iterdir()
    assert small.read_bytes()[8:12] == b"WEBP" and (first_frame(small).width, first_frame(small).height) == (
        80,
        60,
    )
    assert rows["small"].uri == "file:///pub/j/small/" and rows["small"].kind == "thumbnails"


def test_sprite_sheets_and_their_vtt_map_point_at_the_right_tiles(
    ffmpeg: str, clock: Path, tmp_path: Path
) -> None:
    body = {"sprites": [{"name": "hover", "every_seconds": 0.2, "columns": 3, "rows": 2, "width": 40}]}
    plan, results = run(ffmpeg, body, clock, tmp_path / "w")
    rows = {r.name: r for r in results.rows}
    folder = plan.pictures[0].folder
    sheets = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    assert len(sheets) == 2  # 10 tiles, 6 per sheet
    assert (first_frame(sheets[0]).width, first_frame(sheets[0]).height) == (120, 60)
    vtt = (folder / "hover.vtt").read_text()
    cues = re.findall(
        r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)", vtt
    )
    assert vtt.startswith("WEBVTT\n") and len(cues) == 10
    assert cues[0][:2] == ("00:00:00.000", "00:00:00.200") and cues[-1][:2] == (
        "00:00:01.800",
        "00:00:02.000",
    )
    for index, (start, _, sheet, x, y, w, h) in enumerate(cues):
        assert float(start[-6:]) == pytest.approx(index * 0.2)
        box = (int(x) + 4, int(y) + 4, int(w) - 8, int(h) - 8)  # the inside of the tile
        if index:  # frame 0 is black, below the video range the clock can tell apart
            assert frame_number(first_frame(folder / sheet), box) == index * 5, (index, sheet, box)
    assert rows["hover"].details["tiles"] == 10 and rows["hover/vtt"].kind == "vtt"
    late = [p.uri for p in results.pieces if p.late]
    assert late == ["file:///pub/j/hover/hover.vtt"]


def test_poster_at_a_time_and_picked_automatically(ffmpeg: str, clock: Path, tmp_path: Path) -> None:
    plan, results = run(
        ffmpeg, {"poster": {"time": 1.5, "format": "png", "width": 80}}, clock, tmp_path / "a"
    )
    (row,) = results.rows
    assert (
        row.kind == "poster" and row.uri == "file:///pub/j/poster.png" and (row.width, row.height) == (80, 60)
    )
    assert frame_number(first_frame(plan.pictures[0].folder / "poster.png")) == 38  # 1.52 s
    plan, results = run(ffmpeg, {"poster": {"name": "cover"}}, clock, tmp_path / "b")
    shown = frame_number(first_frame(plan.pictures[0].folder / "cover.jpg"))
    assert 5 <= shown < 5 + 30  # picked among the frames from 10 % in (0.2 s, frame 5)
    assert results.rows[0].uri == "file:///pub/j/cover.jpg"
