"""`GET /v1/slo`: how each priority stands against its queue-wait objective, from the job rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from framefleet.api.deps import SessionDep, SettingsDep, requires
from framefleet.api.responses import json_response
from framefleet.api.schemas import ProblemView
from framefleet.core.spec import PRIORITY_ORDER
from framefleet.db.models import utcnow
from framefleet.keys import Principal
from framefleet.observability import slo

router = APIRouter(prefix="/v1", tags=["workers"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "Only operators and admins may see the objectives"},
}


@router.get("/slo", responses=_AUTH, summary="Service-level objectives")
def slo_summary(
    session: SessionDep,
    _principal: Annotated[Principal, requires("slo:read")],
    settings: SettingsDep,
    window_hours: Annotated[
        int | None,
        Query(ge=1, le=90 * 24, description="hours to judge over (default: FRAMEFLEET_SLO_WINDOW_DAYS)"),
    ] = None,
) -> Response:
    """Per priority (all tenants): jobs claimed in the window, the share that started within the queue-wait
    threshold against the target, the 99th percentile wait, and the error budget left."""
    hours = window_hours or settings.slo_window_days * 24
    now = utcnow()
    objectives = [
        slo.Objective(priority.value, settings.slo_queue_wait_seconds[priority], settings.slo_target)
        for priority in PRIORITY_ORDER
        if priority in settings.slo_queue_wait_seconds
    ]
    items = slo.standing(session, objectives=objectives, since=now - timedelta(hours=hours))
    return json_response({"window_seconds": hours * 3600, "as_of": now, "items": items})
