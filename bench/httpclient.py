"""A plain HTTP/1.1 client on asyncio streams, for generating load on the machine that runs the API.

A full-featured client library costs about as much CPU per request as the server does; this one costs a
tenth of that, so thousands of connections from one process measure the API rather than the client. It
speaks just enough HTTP/1.1 for FrameFleet's API: keep-alive requests with a Content-Length body, answers
with a Content-Length body, and chunked event streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


def request_bytes(
    method: str, path: str, host: str, port: int, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """One request, ready to write (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-case names) of an answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """A whole answer with a Content-Length body."""
    status, headers = await read_head(reader)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


class Connection:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> Answer:
        started = time.perf_counter()
        if self._writer is None or self._reader is None or self._reader.at_eof():
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(request_bytes(method, path, self.host, self.port, headers, body))
        status, answer_headers, answer_body = await read_answer(self._reader)
        if answer_headers.get("connection", "").lower() == "close":
            await self.close()
        return Answer(status, answer_headers, answer_body, time.perf_counter() - started)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: str


class EventStream:
    """An open event stream: the status and headers, then its events."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, headers: dict[str, str]
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            yield await self.reader.read()  # a problem document with a Content-Length, read to the end
            return
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return
            chunk = await self.reader.readexactly(size + 2)
            yield chunk[:-2]

    async def events(self) -> AsyncIterator[SseEvent]:
        """Each event until the server ends the stream (comments are skipped)."""
        buffer = b""
        async for chunk in self._chunks():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                fields: dict[str, str] = {}
                for line in block.decode().split("\n"):
                    if line and not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        fields[name] = value
                if "event" in fields or "data" in fields:
                    yield SseEvent(fields.get("id"), fields.get("event", "message"), fields.get("data", ""))

    def close(self) -> None:
        self.writer.close()


async def open_stream(
    host: str, port: int, path: str, headers: Mapping[str, str] | None = None
) -> EventStream:
    """GET an event stream on a connection of its own."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request_bytes("GET", path, host, port, {"Accept": "text/event-stream", **(headers or {})}))
    status, answer_headers = await read_head(reader)
    return EventStream(reader, writer, status, answer_headers)
