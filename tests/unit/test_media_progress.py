"""ProgressParser on real `-progress pipe:1` output (tests/unit/data/ffmpeg_progress.txt, a 3 s encode)."""

from __future__ import annotations

from pathlib import Path

import pytest

from framefleet.media.progress import Progress, ProgressParser

CAPTURED = (Path(__file__).parent / "data" / "ffmpeg_progress.txt").read_text().splitlines()


def samples(parser: ProgressParser, lines: list[str]) -> list[Progress]:
    return [s for s in (parser.feed(line) for line in lines) if s is not None]


def test_captured_run_gives_one_sample_per_block() -> None:
    got = samples(ProgressParser(3.0), CAPTURED)
    assert len(got) == 4
    first, second, last = got[0], got[1], got[-1]
    assert first == Progress(
        percent=13.93, fps=0.0, speed=2.07, eta_seconds=1.25, frame=15, out_time=0.417959, done=False
    )
    # ffmpeg printed out_time N/A here: the position is carried over instead of going blank.
    assert second.frame == 33 and second.out_time == first.out_time and second.speed is None
    assert second.percent == first.percent and second.eta_seconds is None
    assert last.done and last.percent == 100.0 and last.eta_seconds == 0.0 and last.frame == 75
    assert last.out_time == 3.0 and last.speed == 3.87
    assert [s.percent for s in got] == sorted(s.percent or 0 for s in got)


def test_unknown_duration_gives_no_percent() -> None:
    got = samples(ProgressParser(None), CAPTURED)
    assert all(s.percent is None for s in got)
    assert got[0].eta_seconds is None and got[-1].eta_seconds == 0.0
    assert got[-1].out_time == 3.0


def test_out_time_ms_is_microseconds_too() -> None:
    parser = ProgressParser(10.0)
    sample = samples(parser, ["out_time_ms=2500000", "speed= 0.5x", "progress=continue"])[0]
    assert sample.out_time == 2.5 and sample.percent == 25.0 and sample.speed == 0.5
    assert sample.eta_seconds == 15.0


def test_clock_fallback_and_clamping() -> None:
    parser = ProgressParser(1.0)
    sample = samples(parser, ["out_time=00:00:02.000000", "speed=1.0x", "progress=continue"])[0]
    assert sample.out_time == 2.0 and sample.percent == 100.0 and sample.eta_seconds == 0.0
    negative = samples(ProgressParser(4.0), ["out_time_us=-23220", "progress=continue"])[0]
    assert negative.out_time == 0.0 and negative.percent == 0.0


@pytest.mark.parametrize("raw", ["N/A", "", "nan", "garbage", "inf"])
def test_unreadable_values_are_none(raw: str) -> None:
    sample = samples(
        ProgressParser(5.0),
        [f"frame={raw}", f"fps={raw}", f"speed={raw}", f"out_time_us={raw}", "progress=continue"],
    )[0]
    assert (sample.frame, sample.fps, sample.speed, sample.out_time, sample.percent) == (None,) * 5
    assert not sample.done


def test_zero_speed_gives_no_eta_and_blocks_reset() -> None:
    parser = ProgressParser(5.0)
    first = samples(parser, ["frame=10", "out_time_us=1000000", "speed=0x", "progress=continue"])[0]
    assert first.speed is None and first.eta_seconds is None
    second = samples(parser, ["out_time_us=2000000", "progress=continue"])[0]
    assert second.frame is None  # keys do not leak from one block into the next


def test_lines_without_a_value_are_ignored_and_to_dict_is_json_ready() -> None:
    parser = ProgressParser(2.0)
    assert parser.feed("\n") is None
    assert parser.feed("not a key value line") is None
    sample = parser.feed("progress=end")
    assert sample is not None and parser.last is sample
    assert sample.to_dict() == {
        "percent": 100.0,
        "fps": None,
        "speed": None,
        "eta_seconds": 0.0,
        "frame": None,
        "out_time": None,
        "done": True,
    }
