"""Job progress (a Rich bar on a terminal, throttled lines elsewhere), event lines and the result table."""

from __future__ import annotations

import io
import operator
from typing import Any

from rich.console import Console

from framefleet.cli.common import rows_table
from framefleet.cli.progress import (
    RESULT_HEADERS,
    ProgressDisplay,
    describe_event,
    format_duration,
    format_seconds,
    format_size,
    metric_means,
    progress_detail,
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


def test_progress_detail_shows_phase_fps_speed_and_eta() -> None:
    detail = progress_detail(
        {"percent": 45.24, "fps": 120.33, "speed": 4.812, "eta_seconds": 12, "frame": 300, "phase": "encode"}
    )
    assert detail == "encode  120.3 fps  4.81x  ETA 0:12"
    assert progress_detail({"percent": 3, "fps": None, "speed": "n/a"}) == "- fps  -x  ETA -"


def _console(out: io.StringIO, *, terminal: bool) -> Console:
    return Console(file=out, force_terminal=terminal, width=120, color_system=None)


def test_terminal_display_draws_a_live_bar_with_lines_above_it() -> None:
    out = io.StringIO()
    display = ProgressDisplay(_console(out, terminal=True))
    display.event("progress", {"percent": 10, "fps": 30, "speed": 1, "eta_seconds": 9, "phase": "encode"})
    display.event("output", {"name": "a", "uri": "file:///x", "size_bytes": 1, "duration_seconds": 1})
    display.event("progress", {"percent": 56.6, "fps": 30, "speed": 1, "eta_seconds": 8, "phase": "encode"})
    display.event("state", {"state": "canceled", "attempt": 1, "failure_class": "canceled"})
    display.close()
    shown = out.getvalue()
    assert "output a: file:///x (1 B, 1.00 s)" in shown
    # The last progress stays on screen; the job's end is left to the result report.
    assert "57%" in shown and "encode  30.0 fps  1.00x  ETA 0:08" in shown
    assert "canceled" not in shown


def test_plain_display_prints_a_line_per_step_and_phase() -> None:
    out = io.StringIO()
    display = ProgressDisplay(_console(out, terminal=False))
    for percent in (1, 4, 9, 11, 15, 35, 36):
        display.event("progress", {"percent": percent, "phase": "encode"})
    display.event("progress", {"percent": 61, "phase": "quality"})
    display.event("progress", {"percent": 62, "phase": "quality"})
    lines = out.getvalue().splitlines()
    assert [line.split("%")[0].split()[-1] for line in lines] == ["1.0", "11.0", "35.0", "61.0"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
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
    out = io.StringIO()
    columns = [(header, operator.itemgetter(i)) for i, header in enumerate(RESULT_HEADERS)]
    _console(out, terminal=False).print(rows_table(rows, columns))
    table = out.getvalue().splitlines()
    assert table[0].split() == list(RESULT_HEADERS)
    # Columns line up: every row puts its URI at the same offset as the header.
    assert {line.index("file://") for line in table[1:]} == {table[0].index("uri")}


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
