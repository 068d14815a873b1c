"""Progress bar and result table for the terminal.

The formatting functions are pure; ProgressDisplay decides how to draw: one self-overwriting line on a
terminal, and plain lines (at most one per PLAIN_STEP percent) when the output is a file or a pipe.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from framefleet.core.states import TERMINAL

BAR_WIDTH = 28
TERMINAL_STATES = frozenset(state.value for state in TERMINAL)
PLAIN_STEP = 10.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def format_duration(seconds: Any) -> str:
    """Seconds as M:SS or H:MM:SS; '-' when unknown."""
    value = _number(seconds)
    if value is None or value < 0:
        return "-"
    total = round(value)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_seconds(seconds: Any) -> str:
    """A media duration: '9.98 s' below a minute, else M:SS or H:MM:SS; '-' when unknown."""
    value = _number(seconds)
    if value is None or value < 0:
        return "-"
    return f"{value:.2f} s" if value < 60 else format_duration(value)


def format_size(size_bytes: Any) -> str:
    """Bytes in binary units (KiB, MiB, ...); '-' when unknown."""
    value = _number(size_bytes)
    if value is None or value < 0:
        return "-"
    if value < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def format_bar(percent: float, width: int = BAR_WIDTH) -> str:
    """A text bar such as [#######.......] for a percentage (clamped to 0-100)."""
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def format_progress(data: Mapping[str, Any], width: int = BAR_WIDTH) -> str:
    """One progress line from a `progress` event: bar, percent, phase, fps, speed and ETA."""
    percent = _number(data.get("percent")) or 0.0
    parts = [format_bar(percent, width), f"{percent:5.1f}%"]
    phase = data.get("phase")
    if isinstance(phase, str) and phase:
        parts.append(phase)
    fps = _number(data.get("fps"))
    parts.append(f"{fps:.1f} fps" if fps is not None else "- fps")
    speed = _number(data.get("speed"))
    parts.append(f"{speed:.2f}x" if speed is not None else "-x")
    parts.append(f"ETA {format_duration(data.get('eta_seconds'))}")
    return "  ".join(parts)


# `psnr` is the luma plane's alone; its label says so (psnr_yuv is the weighted Y/Cb/Cr one).
METRIC_LABELS = {"vmaf": "VMAF", "psnr": "PSNR-Y", "ssim": "SSIM"}


def metric_means(metrics: Any) -> dict[str, float | None]:
    """The mean of VMAF, PSNR-Y and SSIM from an output's metrics (either {vmaf: ...} or {metrics: {...}})."""
    if isinstance(metrics, Mapping) and isinstance(metrics.get("metrics"), Mapping):
        metrics = metrics["metrics"]
    means: dict[str, float | None] = {}
    for name in METRIC_LABELS:
        entry = metrics.get(name) if isinstance(metrics, Mapping) else None
        means[name] = _number(entry.get("mean")) if isinstance(entry, Mapping) else None
    return means


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


RESULT_HEADERS = ("output", "uri", "duration", "size", "bitrate", *METRIC_LABELS.values())


def result_rows(outputs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Table rows for a job's outputs (the job view's `outputs` list)."""
    rows = []
    for output in outputs:
        means = metric_means(output.get("metrics"))
        bitrate = _number(output.get("bitrate_kbps"))
        rows.append(
            [
                str(output.get("name") or "-"),
                str(output.get("uri") or "-"),
                format_seconds(output.get("duration_seconds")),
                format_size(output.get("size_bytes")),
                f"{bitrate:.0f} kb/s" if bitrate is not None else "-",
                _fixed(means["vmaf"], 2),
                f"{_fixed(means['psnr'], 2)} dB" if means["psnr"] is not None else "-",
                _fixed(means["ssim"], 4),
            ]
        )
    return rows


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table: header, a rule, then the rows."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def describe_event(event_type: str, data: Mapping[str, Any]) -> str | None:
    """A one-line description of a non-progress job event, or None for events not worth a line."""
    if event_type == "state":
        text = f"state: {data.get('state')}"
        if data.get("attempt"):
            text += f" (attempt {data['attempt']})"
        if data.get("failure_class"):
            text += f" - {data['failure_class']}: {data.get('error') or data.get('reason') or ''}".rstrip()
        return text
    if event_type == "output":
        return (
            f"output {data.get('name')}: {data.get('uri')} ({format_size(data.get('size_bytes'))}, "
            f"{format_seconds(data.get('duration_seconds'))})"
        )
    if event_type == "metrics":
        means = metric_means(data)
        shown = ", ".join(
            f"{METRIC_LABELS[name]} {_fixed(value, 4 if name == 'ssim' else 2)}"
            for name, value in means.items()
            if value is not None
        )
        return f"quality {data.get('name')}: {shown or 'no metrics'}"
    return None


class ProgressDisplay:
    """Draws job events: a live bar on a terminal, throttled plain lines elsewhere.

    A terminal `state` event is not drawn: whoever shows the job's result says how it ended, once. The last
    progress stays on screen (the bar is redrawn below any line printed while it shows, and a plain
    display prints the last value it skipped when it closes).
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._bar_shown = False
        self._last_plain: float | None = None
        self._last_phase: str | None = None
        self._last_text: str | None = None
        self._last_text_written = True
        self._width = 0

    def _draw_bar(self, text: str) -> None:
        # Pad to the previous width so a shorter line fully covers the longer one.
        self.stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self._bar_shown = True

    def progress(self, data: Mapping[str, Any]) -> None:
        """Show a progress event."""
        text = format_progress(data)
        self._last_text = text
        if self.tty:
            self._draw_bar(text)
        else:
            percent = _number(data.get("percent")) or 0.0
            phase = data.get("phase") if isinstance(data.get("phase"), str) else None
            step = math.floor(percent / PLAIN_STEP)
            self._last_text_written = False
            if self._last_plain is None or step > self._last_plain or phase != self._last_phase:
                self._last_plain = step
                self._last_phase = phase
                self._write_plain(text)
        self.stream.flush()

    def _write_plain(self, text: str) -> None:
        self.stream.write(text + "\n")
        self._last_text_written = True

    def line(self, text: str) -> None:
        """Print a line of its own, keeping the bar (on a terminal) below it."""
        if self.tty and self._bar_shown:
            self.stream.write("\r" + " " * self._width + "\r" + text + "\n")
            self._width = 0
            if self._last_text is not None:
                self._draw_bar(self._last_text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def event(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Show any job event."""
        if event_type == "progress":
            self.progress(data)
            return
        if event_type == "state" and data.get("state") in TERMINAL_STATES:
            return
        text = describe_event(event_type, data)
        if text is not None:
            self.line(text)

    def close(self) -> None:
        """Leave the last progress on screen and end its line, so following output starts afresh."""
        if self.tty and self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False
            self._width = 0
        elif not self.tty and not self._last_text_written and self._last_text is not None:
            self._write_plain(self._last_text)
        self.stream.flush()
