"""Formatting of the progress bar, job event lines and the result table."""

from __future__ import annotations

import io
from typing import Any

from framefleet.cli.progress import (
    RESULT_HEADERS,
    ProgressDisplay,
    describe_event,
    format_bar,
    format_duration,
    format_progress,
    format_seconds,
    format_size,
    format_table,
    metric_means,
    result_rows,
)

METRICS = {
    "vmaf": {"mean": 95.771, "min": 90.1, "max": 99.0, "harmonic_mean": 95.7},
    "psnr": {"mean": 43.289, "min": 40.0, "max": 48.0},
    "ssim": {"mean": 0.99871, "min": 0.99, "max": 1.0},
}


def test_durations_and_sizes() -> None:
    assert format_duration(None) == "-"
    assert format_duration(float("nan")) == "-"
    assert format_duration(-1) == "-"
    assert format_duration(4.6) == "0:05"
    assert format_duration(3725) == "1:02:05"
    assert format_seconds(9.984) == "9.98 s"
    assert format_seconds(125) == "2:05"
    assert format_size(None) == "-"
    assert format_size(512) == "512 B"
    assert format_size(3 * 1024 * 1024 + 200 * 1024) == "3.2 MiB"
    assert format_size(5 * 1024**4 * 1024) == "5120.0 TiB"


def test_bar_is_clamped() -> None:
    assert format_bar(50, width=10) == "[#####.....]"
    assert format_bar(-5, width=4) == "[....]"
    assert format_bar(250, width=4) == "[####]"


def test_progress_line_shows_percent_fps_speed_and_eta() -> None:
    line = format_progress(
        {"percent": 45.24, "fps": 120.33, "speed": 4.812, "eta_seconds": 12, "frame": 300, "phase": "encode"},
        width=10,
    )
    assert line == "[#####.....]   45.2%  encode  120.3 fps  4.81x  ETA 0:12"


def test_progress_line_with_missing_values() -> None:
    line = format_progress({"percent": 3, "fps": None, "speed": "n/a"}, width=4)
    assert line == "[....]    3.0%  - fps  -x  ETA -"


def test_tty_display_redraws_one_line() -> None:
    out = io.StringIO()
    display = ProgressDisplay(out, tty=True)
    display.event("progress", {"percent": 10, "fps": 30, "speed": 1, "eta_seconds": 9})
    display.event("progress", {"percent": 20, "fps": 30, "speed": 1, "eta_seconds": 8})
    assert "\n" not in out.getvalue()
    assert out.getvalue().count("\r") == 2
    display.event("output", {"name": "a", "uri": "file:///x", "size_bytes": 1, "duration_seconds": 1})
    # The line is printed above the bar, which is drawn again below it.
    bar = format_progress({"percent": 20, "fps": 30, "speed": 1, "eta_seconds": 8})
    assert out.getvalue().endswith("output a: file:///x (1 B, 1.00 s)\n\r" + bar)
    display.close()
    assert out.getvalue().endswith("ETA 0:08\n")


def test_tty_display_keeps_the_last_progress_and_leaves_the_end_to_the_report() -> None:
    # A canceled job: its last progress stays visible, and its end is not printed by the display (the
    # result report says it, once).
    out = io.StringIO()
    display = ProgressDisplay(out, tty=True)
    display.event("state", {"state": "running", "attempt": 1})
    display.event("progress", {"percent": 56.6, "phase": "encode"})
    display.event("state", {"state": "canceled", "attempt": 1, "failure_class": "canceled"})
    display.event("done", {"state": "canceled"})
    display.close()
    shown = out.getvalue().split("\r")[-1]
    assert " 56.6%  encode" in shown and shown.endswith("\n")
    assert "canceled" not in out.getvalue()


def test_plain_display_prints_a_line_per_step_and_phase() -> None:
    out = io.StringIO()
    display = ProgressDisplay(out, tty=False)
    for percent in (1, 4, 9, 11, 15, 35, 36):
        display.event("progress", {"percent": percent, "phase": "encode"})
    display.event("progress", {"percent": 61, "phase": "quality"})
    display.event("progress", {"percent": 62, "phase": "quality"})
    lines = out.getvalue().splitlines()
    assert [line.split("%")[0].split()[-1] for line in lines] == ["1.0", "11.0", "35.0", "61.0"]
    assert "\r" not in out.getvalue()
    display.event("state", {"state": "canceled", "attempt": 1})
    display.close()
    # The last value, skipped by the throttle, is shown at the end; the end itself is not.
    assert out.getvalue().splitlines()[-1].split("%")[0].split()[-1] == "62.0"
    assert "canceled" not in out.getvalue()


def test_metric_means_accepts_both_shapes() -> None:
    assert metric_means(METRICS) == {"vmaf": 95.771, "psnr": 43.289, "ssim": 0.99871}
    assert metric_means({"name": "a", "metrics": METRICS})["ssim"] == 0.99871
    assert metric_means(None) == {"vmaf": None, "psnr": None, "ssim": None}
    assert metric_means({"psnr": {"mean": 40}}) == {"vmaf": None, "psnr": 40.0, "ssim": None}


def test_result_table() -> None:
    outputs: list[dict[str, Any]] = [
        {
            "name": "h264-720p",
            "uri": "file:///media/out/h264-720p.mp4",
            "duration_seconds": 10.0,
            "size_bytes": 3 * 1024 * 1024,
            "bitrate_kbps": 2449.4,
            "metrics": METRICS,
        },
        {"name": "audio", "uri": "file:///media/out/a.mp4", "duration_seconds": None, "metrics": None},
    ]
    rows = result_rows(outputs)
    assert rows[0] == [
        "h264-720p",
        "file:///media/out/h264-720p.mp4",
        "10.00 s",
        "3.0 MiB",
        "2449 kb/s",
        "95.77",
        "43.29 dB",
        "0.9987",
    ]
    assert rows[1][2:] == ["-", "-", "-", "-", "-", "-"]
    table = format_table(RESULT_HEADERS, rows).splitlines()
    assert table[0].startswith("output     uri")
    assert set(table[1].replace(" ", "")) == {"-"}
    # Columns line up: every row puts its URI at the same offset as the header.
    assert {line.index("file://") for line in table[2:]} == {table[0].index("uri")}


def test_event_descriptions() -> None:
    failed = describe_event(
        "state", {"state": "failed", "attempt": 2, "failure_class": "input_invalid", "error": "no video"}
    )
    assert failed == "state: failed (attempt 2) - input_invalid: no video"
    assert describe_event("metrics", {"name": "a", "metrics": METRICS}) == (
        "quality a: VMAF 95.77, PSNR-Y 43.29, SSIM 0.9987"
    )
    output = describe_event(
        "output", {"name": "a", "uri": "file:///x", "size_bytes": 2048, "duration_seconds": 2}
    )
    assert output == "output a: file:///x (2.0 KiB, 2.00 s)"
    assert describe_event("done", {"state": "succeeded"}) is None
