"""Incremental parser of ffmpeg's `-progress` output: key=value lines, one block per `progress=` line."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    percent: float | None
    fps: float | None
    speed: float | None
    eta_seconds: float | None
    frame: int | None
    out_time: float | None
    done: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().rstrip("x").strip()
    if not text or text.upper() == "N/A":
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None  # drop NaN/inf


def _int(value: str | None) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _clock(value: str | None) -> float | None:
    """Seconds from an HH:MM:SS.micro clock, the fallback when out_time_us is N/A."""
    if value is None or value.strip().upper() == "N/A" or value.strip().startswith("-"):
        return None
    parts = value.strip().split(":")
    if len(parts) != 3:
        return None
    try:
        hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


class ProgressParser:
    """Feed it ffmpeg -progress lines; every `progress=continue|end` line yields a Progress sample."""

    def __init__(self, duration: float | None) -> None:
        self.duration = duration if duration is not None and duration > 0 else None
        self._block: dict[str, str] = {}
        self.last: Progress | None = None

    def feed(self, line: str) -> Progress | None:
        """Take one line; return a sample when it closes a block, else None."""
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        key, value = key.strip(), value.strip()
        if key != "progress":
            self._block[key] = value
            return None
        sample = self._sample(done=value == "end")
        self._block = {}
        self.last = sample
        return sample

    def _out_time(self) -> float | None:
        # out_time_ms is also in microseconds (a long-standing ffmpeg misnomer); prefer out_time_us.
        for key in ("out_time_us", "out_time_ms"):
            micros = _float(self._block.get(key))
            if micros is not None:
                return max(0.0, micros / 1_000_000)
        seconds = _clock(self._block.get("out_time"))
        return None if seconds is None else max(0.0, seconds)

    def _sample(self, *, done: bool) -> Progress:
        out_time = self._out_time()
        if out_time is None and self.last is not None:
            # ffmpeg reports N/A between muxer flushes; keep the last position so percent never goes blank.
            out_time = self.last.out_time
        speed = _float(self._block.get("speed"))
        if speed is not None and speed <= 0:
            speed = None
        fps = _float(self._block.get("fps"))
        percent: float | None = None
        eta: float | None = None
        if self.duration is not None:
            if done:
                percent, eta = 100.0, 0.0
            elif out_time is not None:
                percent = min(100.0, max(0.0, out_time / self.duration * 100))
                if speed is not None:
                    eta = max(0.0, self.duration - out_time) / speed
        elif done:
            eta = 0.0
        return Progress(
            percent=None if percent is None else round(percent, 2),
            fps=fps,
            speed=speed,
            eta_seconds=None if eta is None else round(eta, 2),
            frame=_int(self._block.get("frame")),
            out_time=out_time,
            done=done,
        )
