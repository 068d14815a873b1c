"""GET /v1/jobs: filters and cursor pagination."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.api.conftest import submit

PRIORITIES = ("live", "high", "normal", "low", "batch")


def test_cursor_pagination_walks_every_job_once(client: TestClient, auth: dict[str, str]) -> None:
    created = [submit(client, auth, priority=PRIORITIES[i % 5])["id"] for i in range(25)]

    seen: list[str] = []
    pages = 0
    params: dict[str, str | int] = {"limit": 10}
    while True:
        page = client.get("/v1/jobs", params=params, headers=auth)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [job["id"] for job in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        params = {"limit": 10, "cursor": body["next_cursor"]}

    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert seen == list(reversed(created))  # newest first


def test_filters(client: TestClient, auth: dict[str, str]) -> None:
    jobs = [submit(client, auth, priority=p) for p in ("high", "high", "low", "normal")]
    client.post(f"/v1/jobs/{jobs[0]['id']}/cancel", headers=auth)

    def ids(**params: str) -> list[str]:
        response = client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["items"]]

    assert ids(priority="high") == [jobs[1]["id"], jobs[0]["id"]]
    assert ids(state="canceled") == [jobs[0]["id"]]
    assert ids(state="queued", priority="high") == [jobs[1]["id"]]
    assert ids(state="running") == []

    middle = jobs[2]["created_at"]
    assert ids(created_after=middle) == [jobs[3]["id"]]
    assert ids(created_before=middle) == [jobs[1]["id"], jobs[0]["id"]]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert ids(created_after=future) == []
    # A time without an offset is taken as UTC.
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert len(ids(created_before=naive)) == 4


def test_list_items_have_no_outputs_key(client: TestClient, auth: dict[str, str]) -> None:
    submit(client, auth)
    item = client.get("/v1/jobs", headers=auth).json()["items"][0]
    assert item["state"] == "queued"
    assert "outputs" not in item


def test_bad_query_parameters_are_422(client: TestClient, auth: dict[str, str]) -> None:
    # A cursor with a naive timestamp is well-formed base64 but never one the API hands out.
    hand_made = base64.urlsafe_b64encode(b"2024-01-01T00:00:00|some-id").decode()
    cases: list[tuple[str, dict[str, str | int]]] = [
        ("cursor", {"cursor": "not-a-cursor!"}),
        ("cursor", {"cursor": hand_made}),
        ("limit", {"limit": 0}),
        ("limit", {"limit": 101}),
        ("state", {"state": "sleeping"}),
        ("created_after", {"created_after": "yesterday"}),
    ]
    for field, params in cases:
        response = client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in response.json()["errors"]] == [field]
