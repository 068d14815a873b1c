"""GET /v1/slo: each priority's queue-wait objective judged from the job rows of a database of its own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from framefleet.config import Settings
from framefleet.observability.slo import Objective, summarise

SPEC = {"input": "file:///nowhere/in.mp4", "outputs": [{"name": "o", "container": "mp4"}]}


@pytest.fixture()
def slo_client(test_env: dict[str, str], own_database_url: str) -> Iterator[tuple[TestClient, str]]:
    from framefleet.api.app import create_app
    from framefleet.db.migrate import upgrade

    upgrade(own_database_url)
    settings = Settings(database_url=own_database_url)
    with TestClient(create_app(settings)) as client:
        yield client, own_database_url


def _jobs(url: str, key: str, waits: list[tuple[str, float | None, float]]) -> None:
    """Jobs of (priority, seconds waited or None if never claimed, days ago they were claimed)."""
    from framefleet.core.spec import JobSpec
    from framefleet.db.models import utcnow
    from framefleet.db.session import session_scope
    from framefleet.jobs import service
    from framefleet.keys import authenticate

    now = utcnow()
    with session_scope(url) as session:
        principal = authenticate(session, key)
        assert principal is not None
        rows = []
        for priority, waited, days_ago in waits:
            spec = JobSpec.model_validate({**SPEC, "priority": priority})
            row = service.new_job_row(principal=principal, spec=spec, document=spec.model_dump(mode="json"))
            started = now - timedelta(days=days_ago)
            row["queued_at"] = started - timedelta(seconds=waited or 0)
            if waited is not None:
                row.update(state="succeeded", started_at=started, finished_at=started + timedelta(seconds=1))
            rows.append(row)
        service.insert_jobs(session, rows)


def _key(url: str, role: str) -> str:
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    with session_scope(url) as session:
        raw, _ = create_key(session, tenant="slo", role=role)
    return raw


def test_slo_summary_from_the_job_rows(slo_client: tuple[TestClient, str]) -> None:
    client, url = slo_client
    admin = _key(url, "admin")
    waits: list[tuple[str, float | None, float]] = [("live", 1.0, 0.01)] * 98 + [("live", 10.0, 0.01)] * 2
    waits += [("live", 500.0, 40)]  # claimed before the 30-day window
    waits += [("live", None, 0)]  # still queued: not judged yet
    waits += [("normal", 100.0, 2)] * 3
    _jobs(url, admin, waits)

    response = client.get("/v1/slo", headers={"X-API-Key": _key(url, "operator")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window_seconds"] == 30 * 24 * 3600
    items = {item["priority"]: item for item in body["items"]}
    assert list(items) == ["live", "high", "normal", "low", "batch"]
    live = items["live"]
    assert (live["jobs"], live["within_threshold"], live["threshold_seconds"]) == (100, 98, 5.0)
    assert live["attained"] == 0.98 and live["met"] is False
    assert live["p99_wait_seconds"] == pytest.approx(10.0, abs=0.01)
    assert live["error_budget_remaining"] == pytest.approx(-1.0)
    normal = items["normal"]
    assert (normal["jobs"], normal["met"], normal["error_budget_remaining"]) == (3, True, 1.0)
    assert normal["p99_wait_seconds"] == pytest.approx(100.0, abs=0.01)
    assert items["batch"] == {**items["batch"], "jobs": 0, "attained": None, "met": None}

    # A shorter window leaves the normal jobs (two days old) out.
    recent = client.get("/v1/slo", params={"window_hours": 24}, headers={"X-API-Key": admin}).json()
    assert {i["priority"]: i["jobs"] for i in recent["items"]}["normal"] == 0

    refused = client.get("/v1/slo", headers={"X-API-Key": _key(url, "member")})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    bad = client.get("/v1/slo", params={"window_hours": 0}, headers={"X-API-Key": admin})
    assert bad.status_code == 422 and "window_hours" in bad.text


@pytest.mark.parametrize(
    ("jobs", "within", "expected"),
    [
        (0, 0, {"attained": None, "met": None, "error_budget_remaining": None}),
        (1000, 1000, {"attained": 1.0, "met": True, "error_budget_remaining": 1.0}),
        (1000, 995, {"attained": 0.995, "met": True, "error_budget_remaining": 0.5}),
        (1000, 990, {"attained": 0.99, "met": True, "error_budget_remaining": 0.0}),
    ],
)
def test_summarise(jobs: int, within: int, expected: dict[str, Any]) -> None:
    got = summarise(Objective("live", 5.0, 0.99), jobs=jobs, within=within, p99_seconds=None)
    assert {k: got[k] for k in expected} == expected
