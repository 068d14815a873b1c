"""A small Server-Sent Events reader: turns the lines of a text/event-stream into events.

It follows the HTML living standard's parsing rules for the fields FrameFleet uses (event, data, id,
retry); comment lines (starting with ':') are the server's keep-alives and are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data field decoded as JSON."""
        return json.loads(self.data)


class SseParser:
    """Incremental parser: feed it one line at a time (without the line break)."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None

    def feed(self, line: str) -> SseEvent | None:
        """Consume one line; returns an event when a blank line completes one."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            # An id holding NUL is ignored by the standard (it could never be sent back in a header).
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return SseEvent(event=event or "message", data="\n".join(data), id=self.last_event_id, retry=retry)


def iter_events(lines: Iterable[str], parser: SseParser | None = None) -> Iterator[SseEvent]:
    """Every complete event in `lines`; an unterminated event at the end is dropped, as the standard says."""
    parser = parser or SseParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
