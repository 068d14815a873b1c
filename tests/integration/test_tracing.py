"""One job, one trace: a real API server, worker and webhook sender export OTLP to a real receiver process.

The client sends its own W3C `traceparent`; every span of the job must be in that trace, with the parentage
the docs promise: request → intake → publish (context carried in the Celery message) → run → claim, fetch,
probe, ffmpeg, package, publish outputs, record; and the webhook deliveries under the intake, sent by another
process from the job row's stored context. The worker's log lines carry the trace and span ids.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import services
from tests.conftest import make_clip, make_own_database
from tests.webhooks.receiver import receiver

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
WEBHOOK_EVENTS = ["job.created", "job.started", "job.output_ready", "job.succeeded"]
RUN_CHILDREN = {
    "job.claim",
    "job.fetch",
    "job.probe",
    "ffmpeg.encode",
    "job.package",
    "job.publish_outputs",
    "job.record",
}


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def otlp(session_dir: Path) -> Iterator[tuple[str, Path]]:
    """The receiver process; yields its endpoint and the file of spans it decoded."""
    port = services.free_port()
    spans = session_dir / "otlp-spans.jsonl"
    spans.touch()
    proc = _start(
        [sys.executable, "-m", "tests.integration.otlp_receiver", str(port), str(spans)],
        {},
        session_dir / "logs" / "otlp-receiver.log",
    )
    services.wait_until(lambda: services.port_open(port), 30, "OTLP receiver", proc)
    yield f"http://127.0.0.1:{port}", spans
    services.stop(proc)


@pytest.fixture(scope="module")
def traced_env(
    worker_env: dict[str, str], database_url: str, session_dir: Path, otlp: tuple[str, Path]
) -> Iterator[dict[str, str]]:
    from framefleet.db.migrate import upgrade

    own_url = make_own_database(database_url, session_dir / "trace-db")
    upgrade(own_url)
    redis_server = services.start_redis(session_dir / "trace-redis")
    yield {
        **worker_env,
        "FRAMEFLEET_DATABASE_URL": own_url,
        "FRAMEFLEET_REDIS_URL": redis_server.url,
        "FRAMEFLEET_WEBHOOK_ALLOW_PRIVATE": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp[0],
        # Export each batch within 0.1 s, so the test need not wait out the default 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    services.stop(redis_server.proc)


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_job_is_one_trace(
    traced_env: dict[str, str], otlp: tuple[str, Path], ffmpeg: str, media_root: Path, session_dir: Path
) -> None:
    from framefleet.config import Settings
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key
    from framefleet.tenancy.service import find_tenant
    from framefleet.webhooks import service

    url = traced_env["FRAMEFLEET_DATABASE_URL"]
    with session_scope(url) as session:
        key, _ = create_key(session, tenant="traced")
    port = services.free_port()
    cli = [sys.executable, "-m", "framefleet.cli.main"]
    logs = session_dir / "logs"
    api = _start([*cli, "api", "--port", str(port)], traced_env, logs / "trace-api.log")
    sender = _start([*cli, "webhooks", "worker"], traced_env, logs / "trace-webhooks.log")
    worker = services.start_worker(traced_env, logs / "trace-worker.log", name="traced")
    source = make_clip(ffmpeg, media_root / "inputs" / "trace-1s.mp4", seconds=1)
    try:
        services.wait_until(lambda: services.port_open(port), 30, "API server", api)
        with receiver() as target:
            with session_scope(url) as session:
                tenant = find_tenant(session, name="traced")
                assert tenant is not None
                service.create_endpoint(
                    session,
                    tenant_id=tenant.id,
                    url=target.url,
                    event_types=WEBHOOK_EVENTS,
                    description="tracing",
                    enabled=True,
                    secret_key=Settings(database_url=url).secret_key,
                    allow_private=True,
                )
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=10)
            response = client.post(
                "/v1/jobs",
                json={
                    "input": source.as_uri(),
                    "outputs": [
                        {"name": "web", "container": "mp4", "video": {"height": 120, "preset": "ultrafast"}}
                    ],
                },
                headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
            )
            assert response.status_code == 201, response.text
            job_id = response.json()["id"]
            got = target.wait(lambda got: any(r.event["type"] == "job.succeeded" for r in got), timeout=120)
            # A receiver can continue the trace: each delivery carries its span's context.
            assert all(r.headers["traceparent"].split("-")[1] == CLIENT_TRACE for r in got)
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"

        def complete() -> bool:
            names = [s["name"] for s in _spans(otlp[1]) if s["trace_id"] == CLIENT_TRACE]
            return set(names) >= RUN_CHILDREN and names.count("webhook.deliver") >= len(WEBHOOK_EVENTS)

        services.wait_until(complete, 30, "the job's spans at the receiver")
    finally:
        for proc in (api, sender, worker):
            services.stop(proc, timeout=20)

    spans = _spans(otlp[1])
    mine = [s for s in spans if s["attributes"].get("framefleet.job_id") == job_id]
    assert mine and {s["trace_id"] for s in mine} == {CLIENT_TRACE}, "the job's spans are in one trace"
    trace = [s for s in spans if s["trace_id"] == CLIENT_TRACE]
    by_id = {s["span_id"]: s for s in trace}

    def one(name: str) -> dict[str, Any]:
        found = [s for s in trace if s["name"] == name]
        assert len(found) == 1, (name, [s["name"] for s in trace])
        return found[0]

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent_span_id"]]

    request = one("POST /v1/jobs")
    assert request["parent_span_id"] == CLIENT_SPAN and request["service"] == "framefleet-api"
    assert request["attributes"]["http.response.status_code"] == "201"
    assert request["attributes"]["http.route"] == "/v1/jobs"
    intake = one("job.intake")
    assert parent(intake) is request
    publish = one("job.publish")
    assert parent(publish) is intake and publish["service"] == "framefleet-api"
    run = one("job.run")
    assert parent(run) is publish and run["service"] == "framefleet-worker"
    assert run["attributes"]["framefleet.outcome"] == "succeeded"
    for name in RUN_CHILDREN:
        assert parent(one(name)) is run, name
    encode = one("ffmpeg.encode")
    assert {"progress.first", "progress.end"} <= set(encode["events"])
    assert run["start"] <= one("job.claim")["start"] < one("job.fetch")["start"] < one("job.probe")["start"]
    assert one("job.probe")["end"] <= encode["start"] < one("job.publish_outputs")["start"]
    deliveries = [s for s in trace if s["name"] == "webhook.deliver"]
    assert len(deliveries) == len(WEBHOOK_EVENTS)
    assert all(parent(s) is intake and s["service"] == "framefleet-webhooks" for s in deliveries)

    # Log lines written inside a span carry its ids.
    lines = [
        json.loads(line)
        for line in (logs / "trace-worker.log").read_text().splitlines()
        if line.startswith("{")
    ]
    started = [line for line in lines if line.get("event") == "job started" and line.get("job_id") == job_id]
    assert started and started[0]["trace_id"] == CLIENT_TRACE and started[0]["span_id"] == run["span_id"]


def test_a_split_jobs_chunks_are_spans_of_its_trace(
    worker_env: dict[str, str],
    otlp: tuple[str, Path],
    api: Any,
    tenant_key: tuple[str, str],
    ffmpeg: str,
    media_root: Path,
    session_dir: Path,
) -> None:
    from tests.integration.conftest import wait_for_state
    from tests.integration.test_worker_jobs import TERMINAL, fetch, submit

    _, key = tenant_key
    env = {**worker_env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp[0], "OTEL_BSP_SCHEDULE_DELAY": "100"}
    worker = services.start_worker(
        env, session_dir / "logs" / "trace-split-worker.log", concurrency=2, name="traced-split"
    )
    source = make_clip(ffmpeg, media_root / "inputs" / "trace-split.mp4", seconds=2, size="160x120")
    try:
        spec = {
            "input": source.as_uri(),
            "outputs": [{"name": "web", "container": "mp4", "video": {"preset": "ultrafast"}}],
            "parallel": {"chunks": 2},
        }
        job = submit(api, key, spec)
        final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 60)
        assert final["state"] == "succeeded", final

        def mine() -> list[dict[str, Any]]:
            return [s for s in _spans(otlp[1]) if s["attributes"].get("framefleet.job_id") == job["id"]]

        services.wait_until(lambda: sum(s["name"] == "chunk.run" for s in mine()) == 3, 30, "chunk spans")
    finally:
        services.stop(worker, timeout=20)
    spans = mine()
    (run,) = [s for s in spans if s["name"] == "job.run"]
    trace = [s for s in _spans(otlp[1]) if s["trace_id"] == run["trace_id"]]
    by_id = {s["span_id"]: s for s in trace}
    runs = sorted(
        (s for s in trace if s["name"] == "chunk.run"), key=lambda s: s["attributes"]["framefleet.chunk"]
    )
    assert [
        (s["attributes"]["framefleet.chunk"], s["attributes"]["framefleet.chunk.kind"]) for s in runs
    ] == [
        ("0", "encode"),
        ("1", "encode"),
        ("2", "join"),
    ]
    assert all(s["attributes"]["framefleet.outcome"] in ("done", "succeeded") for s in runs)
    # The chunks were published by the job's run; the join by the chunk that finished last.
    publisher = {s["span_id"]: by_id[s["parent_span_id"]]["parent_span_id"] for s in runs}
    assert all(by_id[s["parent_span_id"]]["name"] == "chunk.publish" for s in runs)
    assert publisher[runs[0]["span_id"]] == run["span_id"] == publisher[runs[1]["span_id"]]
    assert publisher[runs[2]["span_id"]] in {runs[0]["span_id"], runs[1]["span_id"]}
    # Each chunk's ffmpeg is a child of its chunk.run.
    encodes = [s for s in trace if s["name"] == "ffmpeg.chunk"]
    assert sorted(by_id[s["parent_span_id"]]["attributes"]["framefleet.chunk"] for s in encodes) == ["0", "1"]
