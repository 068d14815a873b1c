"""An output's per-frame quality scores, read from its quality log (what the console's chart draws)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from framefleet.api.deps import SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem
from framefleet.api.responses import json_response
from framefleet.api.routes.jobs import TenantQuery, as_tenant
from framefleet.api.schemas import ProblemView
from framefleet.jobs import service
from framefleet.jobs.quality_series import series
from framefleet.keys import Principal
from framefleet.storage import backend_for
from framefleet.storage.base import StorageError, StorageNotFound

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
    404: {"model": ProblemView, "description": "No such job, output, or no quality log for it"},
    503: {"model": ProblemView, "description": "The store holding the log cannot be read now"},
}


@router.get("/{job_id}/quality/{name}", responses=_RESPONSES, summary="An output's per-frame quality")
def output_quality(
    job_id: str,
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    caller: Annotated[Principal, requires("jobs:read")],
    tenant: TenantQuery = None,
    points: Annotated[int, Query(ge=10, le=5000, description="at most this many points per metric")] = 800,
) -> Response:
    """Per-frame VMAF/PSNR/SSIM over time, thinned to `points` by keeping each span's lowest score (so dips
    stay visible), with the log's summary and its worst segment."""
    principal = as_tenant(session, caller, tenant)
    try:
        job = service.get_job(session, principal=principal, job_id=job_id)
    except service.JobNotFound as exc:
        raise Problem("not-found", f"no job {job_id}") from exc
    output = next((o for o in service.outputs_of(session, job.id) if o.name == name), None)
    if output is None or not output.metrics_log_uri:
        raise Problem("not-found", f"job {job_id} has no quality log for an output named {name!r}")
    uri = output.metrics_log_uri
    session.close()
    try:
        with tempfile.TemporaryDirectory(prefix="framefleet-quality-") as workdir:
            path = backend_for(uri, settings).fetch(uri, Path(workdir), name="quality.json")
            document = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, StorageNotFound) as exc:
        raise Problem("not-found", f"the quality log of {name!r} is gone (retention removed it?)") from exc
    except StorageError as exc:
        raise Problem("unavailable", f"the quality log cannot be read now: {exc}") from exc
    return json_response({"job_id": job.id, "output": name, **series(document, points=points)})
