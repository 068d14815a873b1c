"""Job progress and results for the terminal.

The formatting functions are pure; ProgressDisplay draws with Rich: a live bar on a terminal, plain lines (at
most one per PLAIN_STEP percent) when the output is a file or a pipe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

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


def progress_detail(data: Mapping[str, Any]) -> str:
    """What a `progress` event says besides the percentage: phase, fps, speed and ETA."""
    parts = []
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
    """Draws job events: a live Rich progress bar on a terminal, throttled plain lines elsewhere.

    A terminal `state` event is not drawn: whoever shows the job's result says how it ended, once. Lines
    printed while the bar shows go above it. Off a terminal, a line at most every PLAIN_STEP percent (or on a
    new phase), and the last value skipped when it closes, so logs stay short but end at the true figure.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_plain: tuple[int, str | None] | None = None
        self._unwritten: str | None = None

    def _bar_task(self) -> tuple[Progress, TaskID]:
        if self._bar is None or self._task is None:
            self._bar = Progress(
                BarColumn(bar_width=BAR_WIDTH),
                TaskProgressColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self.console,
            )
            self._task = self._bar.add_task("encode", total=100.0, detail="")
            self._bar.start()
        return self._bar, self._task

    def progress(self, data: Mapping[str, Any]) -> None:
        percent = max(0.0, min(100.0, _number(data.get("percent")) or 0.0))
        detail = progress_detail(data)
        if self.console.is_terminal:
            bar, task = self._bar_task()
            bar.update(task, completed=percent, detail=detail)
            return
        text = f"{percent:5.1f}%  {detail}"
        phase = data.get("phase") if isinstance(data.get("phase"), str) else None
        mark = (math.floor(percent / PLAIN_STEP), phase)
        if self._last_plain is None or mark[0] > self._last_plain[0] or phase != self._last_plain[1]:
            self._last_plain = mark
            self.console.print(text, markup=False)
            self._unwritten = None
        else:
            self._unwritten = text

    def event(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Show any job event."""
        if event_type == "progress":
            self.progress(data)
            return
        if event_type == "state" and data.get("state") in TERMINAL_STATES:
            return
        text = describe_event(event_type, data)
        if text is not None:
            self.console.print(text, markup=False)

    def close(self) -> None:
        """Leave the last progress on screen, so following output starts below it."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._unwritten is not None:
            self.console.print(self._unwritten, markup=False)
            self._unwritten = None
