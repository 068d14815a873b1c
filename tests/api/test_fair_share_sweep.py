"""Fair share on the real database: the cap scales with the tenant's weight, jobs beyond it wait in
submission order, and the beat's pass tops a tenant back up to its cap after a cancel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.scheduling import fairshare
from tests.api.conftest import KeyMaker, submit


@pytest.fixture()
def fair(api_settings: Settings) -> Iterator[tuple[TestClient, Settings]]:
    settings = api_settings.model_copy(update={"fair_share_in_flight": 2})
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_weight_scales_the_cap_and_the_sweep_refills_it(
    fair: tuple[TestClient, Settings], make_key: KeyMaker
) -> None:
    client, settings = fair
    name = f"fs-{uuid.uuid4().hex[:8]}"
    weighted = {"name": name, "settings": {"fair_share": {"weight": 1.5}}}
    assert client.post("/v1/tenants", json=weighted, headers=make_key()).status_code == 201
    member = make_key(tenant=name, role="member")
    jobs = [submit(client, member, priority="low") for _ in range(5)]
    # 2 x 1.5 = 3 in the queue; the others wait, reason shown.
    assert [j["state"] for j in jobs] == ["queued"] * 3 + ["pending"] * 2
    assert {j["pending_reason"] for j in jobs[3:]} == {"fair-share"}
    # Another queue (priority) has a cap of its own.
    assert submit(client, member, priority="high")["state"] == "queued"
    assert fairshare.sweep(settings) == 0  # the tenant is at its cap
    assert client.post(f"/v1/jobs/{jobs[0]['id']}/cancel", headers=member).status_code in (200, 202)
    assert fairshare.sweep(settings) == 1
    states = [client.get(f"/v1/jobs/{j['id']}", headers=member).json()["state"] for j in jobs]
    # The oldest waiting job took the free place.
    assert states == ["canceled", "queued", "queued", "queued", "pending"]
