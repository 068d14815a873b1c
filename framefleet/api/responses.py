"""Fast JSON answers: routes return these directly, skipping FastAPI's generic re-encoding of plain dicts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from starlette.responses import Response


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """`content` as compact JSON (datetimes in ISO 8601)."""
    body = json.dumps(content, default=_default, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")
