"""HTTP client for the FrameFleet API, as the CLI uses it: submit, get, cancel, and the SSE event stream."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from framefleet.cli.sse import SseEvent, SseParser, iter_events
from framefleet.config import Settings

DEMO_KEY_FILE = "demo-api-key"
# The server sends a keep-alive comment every few seconds; a read this long without one means it is gone.
STREAM_READ_TIMEOUT = 90.0
STREAM_RETRIES = 5
TUS_VERSION = "1.0.0"


class ApiError(Exception):
    """An error answer from the API (RFC 7807 problem details when the server sent them)."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))
        self.status = status
        self.title = title
        self.detail = detail


def demo_key_path(settings: Settings) -> Path:
    return settings.data_dir / DEMO_KEY_FILE


def default_api_url(settings: Settings) -> str:
    """FRAMEFLEET_API_URL, else the configured public URL."""
    return (os.environ.get("FRAMEFLEET_API_URL") or settings.public_url).rstrip("/")


def default_api_key(settings: Settings) -> str | None:
    """FRAMEFLEET_API_KEY, else the key `framefleet up` keeps for the demo tenant."""
    key = os.environ.get("FRAMEFLEET_API_KEY")
    if key:
        return key.strip()
    path = demo_key_path(settings)
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def raise_for_problem(response: httpx.Response) -> None:
    """Raise ApiError for an error answer, with the problem details the server sent."""
    if response.is_success:
        return
    title, detail = response.reason_phrase, ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = str(body.get("title") or title)
        raw = body.get("detail") or ""
        detail = raw if isinstance(raw, str) else str(raw)
        errors = body.get("errors")
        if isinstance(errors, list) and (len(errors) > 1 or (errors and not detail)):
            detail = (detail + " " if detail else "") + "; ".join(
                f"{e.get('field', '?')}: {e.get('message', '')}" if isinstance(e, dict) else str(e)
                for e in errors
            )
    elif response.text:
        detail = response.text[:500]
    raise ApiError(response.status_code, title, detail)


class ApiClient:
    """Talks to one API with one key."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Accept": "application/json", "User-Agent": "framefleet-cli"}
        if api_key:
            headers["X-API-Key"] = api_key
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job spec; returns the job (the first one again for a repeated idempotency key)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._http.post("/v1/jobs", json=spec, headers=headers)
        raise_for_problem(response)
        return dict(response.json())

    def call(self, method: str, path: str, body: Any = None, /, **params: Any) -> Any:
        """Any /v1/ route: its JSON answer (None for 204); ApiError for a problem. Keyword arguments are the
        query (None left out)."""
        query = {k: v for k, v in params.items() if v is not None}
        response = self._http.request(method, path, json=body, params=query)
        raise_for_problem(response)
        return None if response.status_code == 204 else response.json()

    def download(
        self, path: str, *, chunks: Callable[[int | None], Callable[[int], None]]
    ) -> Iterator[bytes]:
        """A file route's body a chunk at a time; `chunks(total)` returns what to tell each chunk's size."""
        with self._http.stream("GET", path, follow_redirects=True) as response:
            if not response.is_success:
                response.read()
                raise_for_problem(response)
            length = response.headers.get("Content-Length")
            advance = chunks(int(length) if length and length.isdigit() else None)
            for chunk in response.iter_bytes():
                advance(len(chunk))
                yield chunk

    def tus_create(self, *, length: int, filename: str) -> str:
        """A new tus upload of `length` bytes; its path."""
        metadata = "filename " + base64.b64encode(filename.encode()).decode()
        response = self._http.post(
            "/v1/uploads",
            headers={"Tus-Resumable": TUS_VERSION, "Upload-Length": str(length), "Upload-Metadata": metadata},
        )
        raise_for_problem(response)
        return str(response.headers["Location"])

    def tus_offset(self, path: str) -> int:
        """Where an upload resumes (HEAD's Upload-Offset)."""
        response = self._http.head(path, headers={"Tus-Resumable": TUS_VERSION})
        raise_for_problem(response)
        return int(response.headers["Upload-Offset"])

    def tus_append(self, path: str, *, offset: int, chunk: bytes) -> int:
        """PATCH one chunk at `offset`; the new offset."""
        response = self._http.patch(
            path,
            content=chunk,
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        raise_for_problem(response)
        return int(response.headers["Upload-Offset"])

    def tus_delete(self, path: str) -> None:
        """Abandon an upload."""
        raise_for_problem(self._http.delete(path, headers={"Tus-Resumable": TUS_VERSION}))

    def submit_batch(
        self, items: list[Any], *, atomic: bool = False, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST /v1/jobs/batch: one result per item, in order."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._http.post("/v1/jobs/batch", json={"atomic": atomic, "items": items}, headers=headers)
        raise_for_problem(response)
        return dict(response.json())

    def get(self, job_id: str) -> dict[str, Any]:
        """The job, with its outputs."""
        response = self._http.get(f"/v1/jobs/{job_id}")
        raise_for_problem(response)
        return dict(response.json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the API to cancel the job; returns the job as it stands."""
        response = self._http.post(f"/v1/jobs/{job_id}/cancel")
        raise_for_problem(response)
        return dict(response.json())

    def change_priority(self, job_id: str, priority: str) -> dict[str, Any]:
        """Move a waiting job to another priority's queue; returns the job."""
        response = self._http.patch(f"/v1/jobs/{job_id}", json={"priority": priority})
        raise_for_problem(response)
        return dict(response.json())

    def events(self, job_id: str) -> Iterator[SseEvent]:
        """The job's events from the start until `done`, resuming with Last-Event-ID if the stream drops."""
        parser = SseParser()
        failures = 0
        timeout = httpx.Timeout(30.0, read=STREAM_READ_TIMEOUT)
        while True:
            headers = {"Accept": "text/event-stream"}
            if parser.last_event_id:
                headers["Last-Event-ID"] = parser.last_event_id
            try:
                with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
                ) as response:
                    if not response.is_success:
                        response.read()
                        raise_for_problem(response)
                    for event in iter_events(response.iter_lines(), parser):
                        failures = 0
                        yield event
                        if event.event == "done":
                            return
            except httpx.TransportError:
                failures += 1
                if failures > STREAM_RETRIES:
                    raise
            # The server closed the stream before `done` (a restart, a proxy timeout): pick up where it left.
            time.sleep(min(0.5 * 2**failures, 5.0))
