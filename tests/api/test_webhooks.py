"""Webhooks through the API and a real webhook worker (in this process), to a real HTTP receiver on
loopback: signatures, retries, per-job order, rotation, replay, per-job notify, tenant isolation."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.core.states import JobState
from framefleet.db.models import WebhookEndpoint
from framefleet.db.session import session_scope
from framefleet.jobs import state_machine
from framefleet.redis_client import get_redis
from framefleet.tenancy import secrets
from framefleet.webhooks import signing
from framefleet.webhooks.delivery import WebhookWorker
from tests.api.conftest import KeyMaker, job_body
from tests.webhooks.receiver import Received, receiver


@pytest.fixture(scope="module")
def hook_settings(api_settings: Settings) -> Settings:
    # The receivers listen on loopback: these tests allow internal targets explicitly.
    return api_settings.model_copy(
        update={
            "webhook_allow_private": True,
            "webhook_retry_base_seconds": 0.05,
            "webhook_retry_cap_seconds": 0.2,
            "webhook_max_attempts": 6,
        }
    )


@pytest.fixture(scope="module")
def hook_client(hook_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings)) as test_client:
        yield test_client


@pytest.fixture()
def hook_worker(hook_settings: Settings) -> Iterator[WebhookWorker]:
    worker = WebhookWorker(hook_settings)
    worker.start()
    time.sleep(0.3)  # the fan-out takes its lease and joins the feed's consumer group
    yield worker
    worker.close()


def move(settings: Settings, job_id: str, *targets: str) -> None:
    """Walk a job through states with the real state machine and announce each, as a worker does."""
    for target in targets:
        with session_scope(settings.database_url) as session:
            job = state_machine.transition(session, job_id, JobState(target), reason=f"test: {target}")
        state_machine.announce(get_redis(settings.redis_url), job, reason="test", ttl_seconds=60)


def recipe_verify(received: Received, secret: str, tolerance: int = 300) -> bool:
    """The verification recipe of docs/workflows.md, written out as a receiver would."""
    header = received.headers["FrameFleet-Signature"]
    parts = [p.split("=", 1) for p in header.split(",")]
    timestamp = int(next(v for k, v in parts if k == "t"))
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


def test_secret_is_shown_once_and_stored_encrypted(hook_client: TestClient, make_key: KeyMaker) -> None:
    headers = make_key()
    created = hook_client.post("/v1/webhooks", json={"url": "https://hooks.example/a"}, headers=headers)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    shown = hook_client.get(f"/v1/webhooks/{created.json()['id']}", headers=headers).json()
    assert "secret" not in shown and secret not in str(
        hook_client.get("/v1/webhooks", headers=headers).json()
    )
    with session_scope() as session:
        row = session.get(WebhookEndpoint, created.json()["id"])
        assert row is not None
        stored = " ".join(str(v) for v in session.execute(sa.select(WebhookEndpoint.__table__)).all())
        assert secret not in stored
        assert secrets.decrypt(row.secret, secret_key=Settings().secret_key) == secret


def test_internal_targets_are_refused_unless_allowed(client: TestClient, make_key: KeyMaker) -> None:
    headers = make_key()
    for url in ("http://127.0.0.1:9/h", "http://10.0.0.1/h", "http://169.254.169.254/", "http://localhost/h"):
        answer = client.post("/v1/webhooks", json={"url": url}, headers=headers)
        assert answer.status_code == 422, (url, answer.text)
    bad = client.post("/v1/webhooks", json={"url": "ftp://x.example/"}, headers=headers)
    assert bad.status_code == 422
    types = client.post(
        "/v1/webhooks", json={"url": "https://x.example/", "event_types": ["nope"]}, headers=headers
    )
    assert types.status_code == 422


def test_another_tenant_cannot_see_or_touch_an_endpoint(hook_client: TestClient, make_key: KeyMaker) -> None:
    mine, theirs = make_key(), make_key()
    endpoint = hook_client.post("/v1/webhooks", json={"url": "https://hooks.example/b"}, headers=mine).json()
    path = f"/v1/webhooks/{endpoint['id']}"
    assert hook_client.get("/v1/webhooks", headers=theirs).json()["items"] == []
    assert hook_client.get(path, headers=theirs).status_code == 404
    assert hook_client.patch(path, json={"enabled": False}, headers=theirs).status_code == 404
    assert hook_client.post(f"{path}/rotate-secret", headers=theirs).status_code == 404
    assert hook_client.get(f"{path}/deliveries", headers=theirs).status_code == 404
    assert hook_client.post(f"{path}/deliveries/1/replay", headers=theirs).status_code == 404
    assert hook_client.delete(path, headers=theirs).status_code == 404
    assert hook_client.get(path, headers=mine).json()["enabled"] is True


def test_failing_receiver_gets_one_accepted_delivery_per_event_in_order(
    hook_client: TestClient, hook_settings: Settings, hook_worker: WebhookWorker, make_key: KeyMaker
) -> None:
    headers = make_key()
    with receiver(fail_first=3) as target:
        endpoint = hook_client.post("/v1/webhooks", json={"url": target.url}, headers=headers).json()
        job = hook_client.post("/v1/jobs", json=job_body(), headers=headers).json()
        move(hook_settings, job["id"], "running", "succeeded")
        wanted = ["job.created", "job.started", "job.succeeded"]
        accepted = target.wait(lambda got: len(got) >= 3)
        time.sleep(0.5)  # nothing more may arrive
        accepted = target.accepted()
        events = [r.event for r in accepted]
        assert [e["type"] for e in events] == wanted
        assert [e["sequence"] for e in events] == [1, 2, 3]
        assert len({e["id"] for e in events}) == 3
        assert all(e["job"]["id"] == job["id"] for e in events)
        assert events[-1]["job"]["state"] == "succeeded"
        # Each event was refused three times before its one accepted delivery, and never overtaken.
        with target.lock:
            order = [r.event["sequence"] for r in target.requests]
        assert order == sorted(order) and len(order) == 12
        for r in accepted:
            assert recipe_verify(r, endpoint["secret"])
            assert signing.verify(r.body, r.headers["FrameFleet-Signature"], endpoint["secret"]) > 0
            assert r.headers["Idempotency-Key"] == r.event["id"]
        log = hook_client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=headers).json()["items"]
        assert [(d["state"], d["attempts"], d["response_status"]) for d in log] == [("succeeded", 4, 200)] * 3
        assert all(d["latency_ms"] > 0 and d["response_excerpt"] == "ok" for d in log)
        # A forged or stale signature is refused by the helper.
        with pytest.raises(signing.SignatureError):
            signing.verify(
                accepted[0].body + b" ", accepted[0].headers["FrameFleet-Signature"], endpoint["secret"]
            )
        with pytest.raises(signing.SignatureError):
            signing.verify(
                accepted[0].body,
                accepted[0].headers["FrameFleet-Signature"],
                endpoint["secret"],
                now=time.time() + 600,
            )

        replay = hook_client.post(
            f"/v1/webhooks/{endpoint['id']}/deliveries/{log[0]['id']}/replay", headers=headers
        )
        assert replay.status_code == 202
        again = target.wait(lambda got: len(got) >= 4)
        assert again[-1].event["id"] == log[0]["event_id"]


def test_rotation_signs_with_both_secrets_during_the_grace(
    hook_client: TestClient, hook_settings: Settings, hook_worker: WebhookWorker, make_key: KeyMaker
) -> None:
    headers = make_key()
    with receiver() as target:
        endpoint = hook_client.post(
            "/v1/webhooks", json={"url": target.url, "event_types": ["job.canceled"]}, headers=headers
        ).json()
        rotated = hook_client.post(
            f"/v1/webhooks/{endpoint['id']}/rotate-secret", json={"grace_seconds": 600}, headers=headers
        )
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret != endpoint["secret"] and rotated.json()["previous_secret_until"]
        job = hook_client.post("/v1/jobs", json=job_body(), headers=headers).json()
        assert hook_client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers).status_code == 200
        (got,) = target.wait(lambda got: len(got) >= 1)
        assert got.event["type"] == "job.canceled"  # the only type this endpoint asked for
        assert got.headers["FrameFleet-Signature"].count("v1=") == 2
        assert recipe_verify(got, new_secret) and recipe_verify(got, endpoint["secret"])

        # Without a grace the old secret stops at once.
        again = hook_client.post(
            f"/v1/webhooks/{endpoint['id']}/rotate-secret", json={"grace_seconds": 0}, headers=headers
        ).json()
        job = hook_client.post("/v1/jobs", json=job_body(), headers=headers).json()
        hook_client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
        latest = target.wait(lambda got: len(got) >= 2)[-1]
        assert latest.headers["FrameFleet-Signature"].count("v1=") == 1
        assert recipe_verify(latest, again["secret"]) and not recipe_verify(latest, new_secret)


def test_per_job_notify_urls_are_signed_with_the_notify_secret(
    hook_client: TestClient, hook_settings: Settings, hook_worker: WebhookWorker, make_key: KeyMaker
) -> None:
    headers = make_key()
    secret = hook_client.post("/v1/webhooks/notify-secret", headers=headers).json()["secret"]
    with receiver() as target:
        notify: list[dict[str, Any]] = [{"url": target.url, "events": ["job.started", "job.failed"]}]
        job = hook_client.post("/v1/jobs", json=job_body(notify=notify), headers=headers)
        assert job.status_code == 201, job.text
        move(hook_settings, job.json()["id"], "running", "failed")
        got = target.wait(lambda got: len(got) >= 2)
        assert [r.event["type"] for r in got] == ["job.started", "job.failed"]
        assert all(recipe_verify(r, secret) for r in got)
    bad = hook_client.post("/v1/jobs", json=job_body(notify=[{"url": "file:///etc/passwd"}]), headers=headers)
    assert bad.status_code == 422


def test_an_unknown_job_event_makes_no_delivery(hook_settings: Settings) -> None:
    from framefleet.webhooks.delivery import fan_out

    with session_scope(hook_settings.database_url) as session:
        made = fan_out(
            session,
            source=f"{int(time.time() * 1000)}-{uuid.uuid4().int % 1000}",
            job_id=str(uuid.uuid4()),
            event_type="job.started",
            detail="",
            secret_key=hook_settings.secret_key,
        )
    assert made is None


def test_progress_milestones_are_opt_in_and_sent_once_per_job_across_attempts(
    hook_client: TestClient, hook_settings: Settings, hook_worker: WebhookWorker, make_key: KeyMaker
) -> None:
    from framefleet.worker.pipeline import ProgressReporter

    headers = make_key()
    with receiver() as opted, receiver() as plain:
        wanted = {"url": opted.url, "event_types": ["job.started", "job.progress", "job.succeeded"]}
        made = hook_client.post("/v1/webhooks", json=wanted, headers=headers)
        assert made.status_code == 201, made.text
        default = hook_client.post("/v1/webhooks", json={"url": plain.url}, headers=headers)
        assert "job.progress" not in default.json()["event_types"]
        job_id = hook_client.post("/v1/jobs", json=job_body(), headers=headers).json()["id"]
        move(hook_settings, job_id, "running")
        redis_client = get_redis(hook_settings.redis_url)
        first = ProgressReporter(job_id, 1, redis_client, hook_settings)
        for percent in (10.0, 30.0, 60.0):  # passes 25 and 50
            first.report(percent, None, "encode")
        # The attempt is lost; the next one starts from zero and passes 25 and 50 again, then 75.
        second = ProgressReporter(job_id, 2, redis_client, hook_settings)
        for percent in (20.0, 55.0, 80.0, 100.0):
            second.report(percent, None, "encode")
        move(hook_settings, job_id, "succeeded")
        got = opted.wait(lambda got: any(r.event["type"] == "job.succeeded" for r in got))
        assert [(r.event["type"], r.event.get("milestone")) for r in got] == [
            ("job.started", None),
            ("job.progress", 25),
            ("job.progress", 50),
            ("job.progress", 75),
            ("job.succeeded", None),
        ]
        # One sequence per job across targets: job.created (1) went to the other endpoint only.
        assert [r.event["sequence"] for r in got] == [2, 3, 4, 5, 6]
        others = plain.wait(lambda got: any(r.event["type"] == "job.succeeded" for r in got))
        assert [r.event["type"] for r in others] == ["job.created", "job.started", "job.succeeded"]


def test_the_fan_out_wakes_the_senders_only_for_entries_with_a_target(
    hook_client: TestClient, hook_settings: Settings, make_key: KeyMaker
) -> None:
    """Most job events have no target: recording them must not wake every sender to find nothing due
    (a transaction per sender per entry, several entries per job). Entries are acknowledged either way."""
    from framefleet.webhooks import feed

    redis_client = get_redis(hook_settings.redis_url)
    try:
        redis_client.xgroup_create(feed.FEED_KEY, feed.GROUP, id="$", mkstream=True)
    except redis.ResponseError as exc:
        assert "BUSYGROUP" in str(exc)
    fan_out = WebhookWorker(hook_settings)  # not started: this test reads the feed as its fan-out thread does

    def read(job_id: str) -> list[tuple[str, dict[str, str]]]:
        answer: Any = redis_client.xreadgroup(feed.GROUP, "fanout", {feed.FEED_KEY: ">"}, count=10_000)
        return [entry for entry in (answer[0][1] if answer else []) if entry[1]["job"] == job_id]

    def pending(entries: list[tuple[str, dict[str, str]]]) -> set[str]:
        waiting = redis_client.xpending_range(feed.FEED_KEY, feed.GROUP, min="-", max="+", count=100_000)
        return {str(p["message_id"]) for p in waiting} & {entry_id for entry_id, _ in entries}

    headers = make_key()
    job_id = hook_client.post("/v1/jobs", json=job_body(), headers=headers).json()["id"]
    move(hook_settings, job_id, "running")
    untargeted = read(job_id)
    assert [fields["type"] for _, fields in untargeted] == ["job.created", "job.started"]
    assert pending(untargeted)
    assert fan_out.fan_out_entries(untargeted) is False
    assert not pending(untargeted)
    with receiver() as target:
        made = hook_client.post("/v1/webhooks", json={"url": target.url}, headers=headers)
        assert made.status_code == 201, made.text
        move(hook_settings, job_id, "succeeded")
        targeted = read(job_id)
        assert [fields["type"] for _, fields in targeted] == ["job.succeeded"]
        assert fan_out.fan_out_entries(targeted) is True
        assert not pending(targeted)
