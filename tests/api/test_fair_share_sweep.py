"""Fair share on the real database: the cap scales with the tenant's weight, jobs beyond it wait in
submission order, a cancel hands the free place to the oldest waiting job at once, the beat's pass tops a
tenant back up to its cap, and with fair share turned off it lets every waiting job go."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.db.models import Job
from framefleet.db.session import session_scope
from framefleet.scheduling import fairshare
from tests.api.conftest import KeyMaker, submit


@pytest.fixture()
def fair(api_settings: Settings) -> Iterator[tuple[TestClient, Settings]]:
    settings = api_settings.model_copy(update={"fair_share_in_flight": 2})
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_fair_share_is_on_by_default() -> None:
    assert Settings.model_fields["fair_share_in_flight"].default > 0


def test_weight_scales_the_cap_and_freed_places_are_taken_in_order(
    fair: tuple[TestClient, Settings], make_key: KeyMaker, redis_client: redis.Redis
) -> None:
    client, settings = fair
    name = f"fs-{uuid.uuid4().hex[:8]}"
    weighted = {"name": name, "settings": {"fair_share": {"weight": 1.5}}}
    assert client.post("/v1/tenants", json=weighted, headers=make_key()).status_code == 201
    member = make_key(tenant=name, role="member")
    jobs = [submit(client, member, priority="low") for _ in range(6)]
    # 2 x 1.5 = 3 in the queue; the others wait, reason shown.
    assert [j["state"] for j in jobs] == ["queued"] * 3 + ["pending"] * 3
    assert {j["pending_reason"] for j in jobs[3:]} == {"fair-share"}
    # Another queue (priority) has a cap of its own.
    assert submit(client, member, priority="high")["state"] == "queued"
    assert fairshare.sweep(settings) == 0  # the tenant is at its cap

    def states() -> list[str]:
        return [client.get(f"/v1/jobs/{j['id']}", headers=member).json()["state"] for j in jobs]

    # A cancel frees a place: the oldest waiting job takes it in the cancel's own transaction and is
    # published at once, not at the beat's next pass.
    in_broker = redis_client.llen("cpu.low")
    assert client.post(f"/v1/jobs/{jobs[0]['id']}/cancel", headers=member).status_code == 200
    assert states() == ["canceled", "queued", "queued", "queued", "pending", "pending"]
    assert redis_client.llen("cpu.low") == in_broker + 1
    assert fairshare.sweep(settings) == 0

    # A place freed without a release (a job taken out of the queue by a claim that never released its
    # successor): the beat's pass tops the tenant up to its cap.
    with session_scope() as session:
        session.execute(sa.update(Job).where(Job.id == jobs[1]["id"]).values(state="running"))
    assert fairshare.sweep(settings) == 1
    assert states() == ["canceled", "running", "queued", "queued", "queued", "pending"]

    # Fair share turned off: what still waits from when it was on is let go (it would wait forever).
    # (Other tests' tenants may have jobs waiting in the shared database too: at least this one is let go.)
    assert fairshare.sweep(settings.model_copy(update={"fair_share_in_flight": 0})) >= 1
    assert states()[-1] == "queued"
