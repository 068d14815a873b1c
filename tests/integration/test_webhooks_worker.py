"""A real job through a real transcode worker and a real `framefleet webhooks worker` process ends in
signed created/started/output/succeeded deliveries at a real receiver, in sequence order, with the
opt-in progress milestones between start and success."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from framefleet.config import Settings
from framefleet.db.models import WebhookDelivery
from framefleet.db.session import session_scope
from framefleet.webhooks import service, signing
from tests import services
from tests.conftest import library_uri
from tests.integration.test_observability import scrape, value
from tests.webhooks.receiver import receiver


@pytest.fixture(scope="module")
def webhooks_metrics_port() -> int:
    return services.free_port()


@pytest.fixture(scope="module")
def webhook_worker(
    worker_env: dict[str, str], session_dir: Path, webhooks_metrics_port: int
) -> Iterator[subprocess.Popen[bytes]]:
    log = session_dir / "logs" / "webhook-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **worker_env,
        "FRAMEFLEET_WEBHOOK_ALLOW_PRIVATE": "true",
        "FRAMEFLEET_WEBHOOKS_METRICS_PORT": str(webhooks_metrics_port),
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "framefleet.cli.main", "webhooks", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    services.wait_until(lambda: b"webhook worker ready." in log.read_bytes(), 30, "webhook worker", proc)
    yield proc
    services.stop(proc, timeout=10)


def test_real_job_produces_signed_ordered_deliveries(
    worker: Any,
    webhook_worker: Any,
    api: Any,
    tenant_key: tuple[str, str],
    clip: Path,
    webhooks_metrics_port: int,
) -> None:
    tenant, key = tenant_key
    headers = {"X-API-Key": key}
    delivered = scrape(webhooks_metrics_port)
    with receiver() as target:
        with session_scope() as session:
            tenant_id = _tenant_id(session, tenant)
            endpoint, secret = service.create_endpoint(
                session,
                tenant_id=tenant_id,
                url=target.url,
                event_types=["job.created", "job.started", "job.output_ready", "job.succeeded"],
                description="integration",
                enabled=True,
                secret_key=Settings().secret_key,
                allow_private=True,
            )
        spec = {
            "input": library_uri("clip.mp4"),
            "outputs": [{"name": "web", "container": "mp4", "video": {"width": 160, "height": 120}}],
        }
        job = api.post("/v1/jobs", json=spec, headers=headers).json()
        got = target.wait(
            lambda got: any(r.event["type"] in ("job.succeeded", "job.failed") for r in got), timeout=120
        )
        events = [r.event for r in got]
        assert [e["type"] for e in events] == [
            "job.created",
            "job.started",
            "job.output_ready",
            "job.succeeded",
        ]
        assert [e["sequence"] for e in events] == [1, 2, 3, 4]
        assert all(e["job"]["id"] == job["id"] for e in events)
        assert events[2]["output"] == "web"
        assert events[3]["job"]["outputs"][0]["name"] == "web"
        for r in got:
            signing.verify(r.body, r.headers["FrameFleet-Signature"], secret)
        assert endpoint.enabled
    # The sender counted the four accepted attempts (after recording each, hence the wait) and timed them.
    # It is shared with other tests' endpoints, so its counters may also move for theirs: this endpoint's
    # own deliveries are read from the database; the counters must have moved at least as much.
    def states() -> list[str]:
        with session_scope() as session:
            return sorted(
                session.scalars(
                    sa.select(WebhookDelivery.state).where(WebhookDelivery.endpoint_id == endpoint.id)
                ).all()
            )

    services.wait_until(lambda: states() == ["succeeded"] * 4, 10, "this endpoint's four deliveries recorded")
    services.wait_until(
        lambda: (
            value(scrape(webhooks_metrics_port), "framefleet_webhook_deliveries_total", outcome="succeeded")
            - value(delivered, "framefleet_webhook_deliveries_total", outcome="succeeded")
            >= 4
        ),
        10,
        "four succeeded deliveries counted",
    )
    after = scrape(webhooks_metrics_port)
    assert (
        value(after, "framefleet_webhook_delivery_seconds_count")
        - value(delivered, "framefleet_webhook_delivery_seconds_count")
        >= 4
    )


def test_real_job_reports_each_progress_milestone_once_in_order(
    worker: Any, webhook_worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path
) -> None:
    tenant, key = tenant_key
    with receiver() as target:
        with session_scope() as session:
            service.create_endpoint(
                session,
                tenant_id=_tenant_id(session, tenant),
                url=target.url,
                event_types=["job.started", "job.progress", "job.succeeded", "job.failed"],
                description="milestones",
                enabled=True,
                secret_key=Settings().secret_key,
                allow_private=True,
            )
        spec = {
            "input": library_uri("clip.mp4"),
            "outputs": [{"name": "web", "container": "mp4", "video": {"width": 160, "height": 120}}],
        }
        job = api.post("/v1/jobs", json=spec, headers={"X-API-Key": key}).json()
        got = target.wait(
            lambda got: any(r.event["type"] in ("job.succeeded", "job.failed") for r in got), timeout=120
        )
        assert [(r.event["type"], r.event.get("milestone")) for r in got] == [
            ("job.started", None),
            ("job.progress", 25),
            ("job.progress", 50),
            ("job.progress", 75),
            ("job.succeeded", None),
        ]
        sequences = [r.event["sequence"] for r in got]
        assert sequences == sorted(sequences) and all(r.event["job"]["id"] == job["id"] for r in got)


def _tenant_id(session: Any, name: str) -> int:
    from framefleet.tenancy.service import find_tenant

    found = find_tenant(session, name=name)
    assert found is not None
    return found.id
