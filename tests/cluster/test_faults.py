"""Faults across hosts: a worker host's link cut mid-encode (and restored while its attempt still runs), the
leading beat killed while a job needs the reaper, an API replica killed under submission load, PostgreSQL
restarted, and the Redis primary killed during a run. Each prints its figure (docs/scaling.md quotes them).

The recovery bound checked is the documented one (docs/scaling.md, "Recovery from a lost worker host"):

    cut → next attempt running  ≤  TTL + reaper interval + min(retry cap, base) + promote interval + claim

with TTL the heartbeat TTL: the worker's last renewal is at most one TTL old when the reaper looks, the reaper
looks every interval, the first retry waits a jittered backoff of at most the base, the promotion pass runs
every promote interval, and the claim is one message and one transaction (`CLAIM_SLACK`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from tests.cluster.harness import LONG, PG_PORT, REDIS_PORTS, Cluster, host_of_worker
from tests.services import ffmpeg_pids

pytestmark = pytest.mark.integration

# Several seconds of encoding (the clip is longer in the long form): it outlasts the lease's fence period,
# so a cut always lands mid-encode.
SLOW_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "hevc", "preset": "slow", "height": 240},
}
TERMINAL = {"succeeded", "failed", "canceled"}
# Publishing the retried job, a worker fetching it and its claim's transaction, on a 2-core machine shared
# with other work (the leader's tick of 0.25 s included).
CLAIM_SLACK = 2.0


def recovery_bound(cluster: Cluster) -> float:
    ttl = cluster.setting("heartbeat_ttl_seconds", 30)
    reaper = cluster.setting("reaper_interval_seconds", 5)
    backoff = min(cluster.setting("retry_cap_seconds", 600), cluster.setting("retry_base_seconds", 10))
    promote = cluster.setting("retry_promote_interval_seconds", 1)
    return ttl + reaper + backoff + promote + CLAIM_SLACK


def row(cluster: Cluster, job_id: str) -> tuple[str, int, str | None]:
    assert cluster.client is not None
    found = cluster.client.sql("SELECT state, attempt, worker FROM jobs WHERE id = %(id)s", id=job_id)
    return found[0]  # type: ignore[return-value]


def transitions(cluster: Cluster, job_id: str) -> list[dict[str, Any]]:
    """The job's history, through the API behind the balancer."""
    return cluster.history(job_id)


def both_workers_alive(cluster: Cluster) -> bool:
    response = cluster.api("GET", "/v1/workers")
    alive = {w["node"].split("@")[0] for w in response.json()["items"] if w["status"] == "alive"}
    return alive >= {"w1", "w2"}


def start_slow_job(cluster: Cluster, clip_uri: str) -> tuple[str, str, list[int]]:
    """Submit through the balancer, wait until it encodes: (job id, its worker's host, ffmpeg pids)."""
    cluster.wait(lambda: both_workers_alive(cluster), "both workers alive", timeout=60)
    # Every test encodes for real: the result cache would otherwise copy the previous test's outputs.
    spec = {"input": clip_uri, "outputs": [SLOW_OUTPUT], "hardware": "cpu", "cache": False}
    response = cluster.api("POST", "/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    cluster.wait(
        lambda: row(cluster, job_id)[0] == "running" and ffmpeg_pids(job_id), "the encode", timeout=60
    )
    time.sleep(0.5)  # well into the encode
    state, attempt, worker = row(cluster, job_id)
    assert state == "running" and attempt == 1 and worker, (state, attempt, worker)
    return job_id, host_of_worker(worker), ffmpeg_pids(job_id)


def check_ran_once_more(cluster: Cluster, job_id: str, first_host: str) -> list[dict[str, Any]]:
    """Succeeded in its second attempt, one worker_lost in between, one set of outputs."""
    final = cluster.job(job_id)
    assert final["state"] == "succeeded", final
    assert final["attempt"] == 2, final
    steps = transitions(cluster, job_id)
    runs = [s for s in steps if s["to_state"] == "running"]
    assert [r["attempt"] for r in runs] == [1, 2], steps
    assert host_of_worker(runs[0]["worker"]) == first_host
    lost = [s for s in steps if s["from_state"] == "running" and s["to_state"] == "retrying"]
    assert len(lost) == 1, steps  # reaped once, by one beat (or recorded once by the old attempt itself)
    assert [s["to_state"] for s in steps].count("succeeded") == 1
    assert cluster.output_files(job_id) == ["main.mp4"]
    assert cluster.client is not None
    rows = cluster.client.sql("SELECT count(*) FROM job_outputs WHERE job_id = %(id)s", id=job_id)
    assert rows == [(1,)]
    return steps


def watch(
    cluster: Cluster, job_id: str, old_ffmpeg: list[int], cut: float, timeout: float
) -> dict[str, float]:
    """Follow the job to its end; seconds after the cut at which the old ffmpeg stopped, the job was taken
    back, the next attempt ran, and the job ended."""
    seen: dict[str, float] = {}
    deadline = cut + timeout
    while time.monotonic() < deadline:
        now = time.monotonic() - cut
        if "old ffmpeg stopped" not in seen and not any(p in ffmpeg_pids(job_id) for p in old_ffmpeg):
            seen["old ffmpeg stopped"] = now
            seen["old ffmpeg stopped (wall clock)"] = time.time()
        state, attempt, _ = row(cluster, job_id)
        if attempt == 1 and state in ("retrying", "queued"):
            seen.setdefault("taken back", now)
        if attempt >= 2 and state == "running":
            seen.setdefault("taken back", now)
            seen.setdefault("next attempt running", now)
        if state in TERMINAL:
            seen["ended"] = now
            return seen
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not end within {timeout}s of the cut; seen {seen}")


def test_a_worker_hosts_link_cut_mid_encode_is_recovered_on_the_other_host(
    cluster: Cluster, slow_clip: Any
) -> None:
    job_id, host, old_ffmpeg = start_slow_job(cluster, slow_clip.as_uri())
    cluster.set_link(host, up=False)
    cut = time.monotonic()
    try:
        seen = watch(cluster, job_id, old_ffmpeg, cut, timeout=recovery_bound(cluster) + 120)
    finally:
        cluster.set_link(host, up=True)
    steps = check_ran_once_more(cluster, job_id, host)
    runs = [s for s in steps if s["to_state"] == "running"]
    assert host_of_worker(runs[1]["worker"]) != host  # the cut host could not have claimed it
    # The partitioned attempt fenced itself (its lease lapsed) before the reaper took the job back (the
    # transition's time, written by the beat on this machine's clock): never two encodes at once.
    lost = next(s for s in steps if s["from_state"] == "running" and s["to_state"] == "retrying")
    margin = datetime.fromisoformat(lost["at"]).timestamp() - seen["old ffmpeg stopped (wall clock)"]
    assert margin > 0, (margin, seen)
    fence = cluster.setting("heartbeat_ttl_seconds", 30) - cluster.setting("heartbeat_interval_seconds", 10)
    assert seen["old ffmpeg stopped"] <= fence + CLAIM_SLACK, seen
    assert seen["next attempt running"] <= recovery_bound(cluster), (seen, recovery_bound(cluster))
    print(
        f"\nlink cut mid-encode: old ffmpeg stopped {seen['old ffmpeg stopped']:.1f}s (fence {fence:g}s), "
        f"taken back {seen['taken back']:.1f}s ({margin:.2f}s after it stopped), "
        f"next attempt running {seen['next attempt running']:.1f}s "
        f"(bound {recovery_bound(cluster):.1f}s), done {seen['ended']:.1f}s after the cut"
    )


def test_b_link_back_while_the_old_attempt_runs_publishes_once(cluster: Cluster, slow_clip: Any) -> None:
    job_id, host, old_ffmpeg = start_slow_job(cluster, slow_clip.as_uri())
    cluster.set_link(host, up=False)
    cut = time.monotonic()
    try:
        # The old encode is stopped by its own lease (nothing else can reach it), then the link comes back:
        # its Celery task is still in its ending, trying to record it, and the reaper may not have acted yet.
        cluster.wait(
            lambda: not any(p in ffmpeg_pids(job_id) for p in old_ffmpeg), "the lease to stop ffmpeg", 60
        )
        stopped = time.monotonic() - cut
    finally:
        cluster.set_link(host, up=True)
    restored = time.monotonic() - cut
    seen = watch(cluster, job_id, [], cut, timeout=recovery_bound(cluster) + 120)
    check_ran_once_more(cluster, job_id, host)
    # The host is back in service: its heartbeat is renewed and it takes work again.
    cluster.wait(lambda: both_workers_alive(cluster), "the cut worker to beat again", timeout=60)
    print(
        f"\nlink back while the old attempt runs: old ffmpeg stopped by its lease {stopped:.1f}s after the "
        "cut, "
        f"link back at {restored:.1f}s, next attempt running {seen['next attempt running']:.1f}s, "
        f"done {seen['ended']:.1f}s; one run recorded lost, one set of outputs"
    )


def test_c_leading_beat_killed_the_standby_leads_and_reaps_once(cluster: Cluster, slow_clip: Any) -> None:
    leader = cluster.beat_leader()
    assert leader in ("beat1", "beat2"), leader
    standby = "beat2" if leader == "beat1" else "beat1"
    job_id, host, old_ffmpeg = start_slow_job(cluster, slow_clip.as_uri())
    # Both at once: the reaper's work must be done by the standby, which leads only once the lock expires.
    cluster.kill(leader, signal.SIGKILL)
    cluster.set_link(host, up=False)
    cut = time.monotonic()
    try:
        cluster.wait(lambda: cluster.beat_leader() == standby, "the standby to lead", timeout=60)
        took_over = time.monotonic() - cut
        seen = watch(cluster, job_id, old_ffmpeg, cut, timeout=recovery_bound(cluster) + 120)
    finally:
        cluster.set_link(host, up=True)
    ttl = cluster.setting("beat_leader_ttl_seconds", 15)
    assert took_over <= ttl + 1.0, (took_over, ttl)  # the lock's TTL, plus one tick and a lookup
    steps = check_ran_once_more(cluster, job_id, host)
    lost = next(s for s in steps if s["from_state"] == "running" and s["to_state"] == "retrying")
    assert "lost" in lost["reason"], lost
    acquired = cluster.log(standby).read_text().count("beat leadership acquired")
    assert acquired == 1, acquired
    print(
        f"\nleading beat killed: standby leads {took_over:.1f}s later (lock TTL {ttl:g}s); the job was "
        f"taken back once at {seen['taken back']:.1f}s and finished once at {seen['ended']:.1f}s"
    )


TINY_OUTPUT = {"name": "main", "container": "ts", "video": {"preset": "ultrafast"}}
# Logical jobs submitted while an API replica is killed: enough that requests are in flight on it at the kill.
API_KILL_JOBS = 200 if LONG else 24
API_KILL_CLIENTS = 4
# What a client retries (with the same Idempotency-Key): the balancer's answers for a replica that died under
# the request, and an overloaded or unavailable service.
RETRIED_STATUSES = {502, 503, 504}
# How long the replica hangs before it is killed (less than the balancer's two failed health checks).
API_HANG_SECONDS = 0.5


def jobs_outcome(cluster: Cluster, ids: list[str]) -> list[tuple[str, str, int, int, int]]:
    """Per job: id, state, `succeeded` transitions, `running` transitions, job_outputs rows."""
    assert cluster.client is not None
    return cluster.client.sql(  # type: ignore[return-value]
        "SELECT j.id, j.state,"
        " (SELECT count(*) FROM job_transitions t WHERE t.job_id = j.id AND t.to_state = 'succeeded'),"
        " (SELECT count(*) FROM job_transitions t WHERE t.job_id = j.id AND t.to_state = 'running'),"
        " (SELECT count(*) FROM job_outputs o WHERE o.job_id = j.id)"
        " FROM jobs j WHERE j.id = ANY(%(ids)s)",
        ids=ids,
    )


def wait_all_ended(cluster: Cluster, ids: list[str], timeout: float) -> None:
    done = (
        "SELECT count(*) FROM jobs WHERE id = ANY(%(ids)s) AND state IN ('succeeded', 'failed', 'canceled')"
    )
    cluster.wait(
        lambda: cluster.client and cluster.client.sql(done, ids=ids)[0][0] == len(ids),
        "every job to end",
        timeout=timeout,
    )


def check_each_succeeded_once(cluster: Cluster, ids: list[str], file: str) -> int:
    """Every job succeeded, once, with one set of outputs; how many ran a second attempt."""
    per_job = jobs_outcome(cluster, ids)
    assert len(per_job) == len(ids)
    assert all(state == "succeeded" for _, state, _, _, _ in per_job), per_job  # 0 lost
    assert all(succeeded == 1 and outputs == 1 for _, _, succeeded, _, outputs in per_job), per_job
    assert all(cluster.output_files(job_id) == [file] for job_id in ids)
    return sum(1 for _, _, _, runs, _ in per_job if runs > 1)


def submit_retrying(cluster: Cluster, spec: dict[str, Any], key: str, deadline: float) -> dict[str, Any]:
    """One logical job as a real client submits it: the same Idempotency-Key on every try, again after a
    connection error or a 502/503/504 (after Retry-After, at most a second). Runs on a client thread.
    `gap`: from sending the first try that failed to the answer that created (or replayed) the job."""
    import httpx

    tries: list[tuple[float, str]] = []
    first_failure: float | None = None
    with httpx.Client(
        base_url=cluster.client_base_url(), timeout=30, headers={"X-API-Key": cluster.key}
    ) as http:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                response = http.post("/v1/jobs", json=spec, headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                tries.append((time.monotonic(), type(exc).__name__))
                first_failure = first_failure or sent
                time.sleep(0.2)
                continue
            tries.append((time.monotonic(), str(response.status_code)))
            if response.status_code in RETRIED_STATUSES:
                first_failure = first_failure or sent
                time.sleep(min(1.0, float(response.headers.get("retry-after", "0.2"))))
                continue
            return {
                "key": key,
                "status": response.status_code,
                "id": response.json().get("id"),
                "body": response.text[:300],
                "tries": tries,
                "gap": time.monotonic() - first_failure if first_failure is not None else 0.0,
            }
    return {"key": key, "status": None, "id": None, "body": "", "tries": tries, "gap": None}


def test_d_api_replica_killed_under_submission_load_no_duplicate_no_lost_job(
    cluster: Cluster, tiny_clip: Any
) -> None:
    assert cluster.client is not None
    cluster.wait(lambda: both_workers_alive(cluster), "both workers alive", timeout=60)
    spec = {"input": tiny_clip.as_uri(), "outputs": [TINY_OUTPUT], "hardware": "cpu", "cache": False}
    keys = [f"api-kill-{uuid.uuid4()}" for _ in range(API_KILL_JOBS)]
    deadline = time.monotonic() + 120
    accepted = itertools.count()
    submitted: list[int] = [0]

    def one(key: str) -> dict[str, Any]:
        result = submit_retrying(cluster, spec, key, deadline)
        submitted[0] = next(accepted) + 1
        return result

    with ThreadPoolExecutor(1) as background:
        running = background.submit(cluster.client.in_threads, one, keys, API_KILL_CLIENTS)
        # A quarter of the way in, the replica hangs for a moment (the balancer keeps sending it requests
        # until its health check fails twice), then is killed: requests die in flight on it.
        cluster.wait(lambda: submitted[0] >= API_KILL_JOBS // 4, "the first submissions", timeout=60)
        cluster.signal("api1", signal.SIGSTOP)
        time.sleep(API_HANG_SECONDS)
        cluster.kill("api1")
        killed = time.monotonic()
        results = running.result()
    # The load went on through the kill.
    assert any(when > killed for r in results for when, _ in r["tries"]), results
    assert [r["status"] for r in results if r["status"] not in (200, 201)] == [], results  # no 500, none lost
    by_key = {r["key"]: r["id"] for r in results}
    rows = cluster.client.sql(
        "SELECT idempotency_key, id FROM jobs WHERE idempotency_key = ANY(%(keys)s)", keys=keys
    )
    assert len(rows) == len(keys), (len(rows), len(keys))  # no duplicate (the key is unique per tenant)
    assert dict(rows) == by_key  # every client holds the one job its key created
    ids = list(by_key.values())
    wait_all_ended(cluster, ids, timeout=60 + 3 * API_KILL_JOBS)
    rerun = check_each_succeeded_once(cluster, ids, "main.ts")
    failed = [t for r in results for t in r["tries"] if t[1] not in ("200", "201")]
    retried_jobs = sum(1 for r in results if len(r["tries"]) > 1)
    replays = sum(1 for r in results if r["status"] == 200)
    gap = max(r["gap"] for r in results)
    # Back to two replicas for the tests that follow.
    cluster.start_api("api1")
    cluster.wait(cluster.both_apis_serve, "haproxy to send requests to api1 again", timeout=60)
    print(
        f"\nAPI replica killed under {API_KILL_CLIENTS} clients submitting {len(keys)} jobs: "
        f"{len(failed)} requests failed and were retried ({sorted({t[1] for t in failed})}) for "
        f"{retried_jobs} jobs, {replays} answered as replays; max client-visible gap {gap:.2f}s; "
        f"{len(keys)} jobs, each once, all succeeded ({rerun} ran a second attempt)"
    )


# The database is down at least this long (stop to start). In the short form an encode running through the
# outage must keep its lease (it lapses TTL - interval = 3 s after the last renewal, at most 1 s before the
# stop); the long form keeps the defaults (20 s) and is down as long as a slow restart.
OUTAGE_SECONDS = 10.0 if LONG else 2.0
PG_QUEUED_JOBS = 8 if LONG else 4
# The API's answer must come within this even while the database is away: refusals are fast, never a hang.
ANSWER_WITHIN_SECONDS = 5.0
HEVC_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "hevc", "preset": "slow", "height": 240},
}


def probe_api(
    cluster: Cluster, job_id: str, spec: dict[str, Any], key: str, stop: threading.Event
) -> list[tuple[float, str, int, str | None, float]]:
    """A client reading a job and submitting one (the same Idempotency-Key each time) until `stop`:
    (when, what, status, Retry-After, seconds the answer took) per request. Runs on a client thread."""
    import httpx

    seen: list[tuple[float, str, int, str | None, float]] = []
    with httpx.Client(
        base_url=cluster.client_base_url(), timeout=30, headers={"X-API-Key": cluster.key}
    ) as http:
        while not stop.is_set():
            for what, send in (
                ("GET", lambda: http.get(f"/v1/jobs/{job_id}")),
                ("POST", lambda: http.post("/v1/jobs", json=spec, headers={"Idempotency-Key": key})),
            ):
                sent = time.monotonic()
                response = send()
                seen.append(
                    (
                        sent,
                        what,
                        response.status_code,
                        response.headers.get("retry-after"),
                        time.monotonic() - sent,
                    )
                )
            time.sleep(0.1)
    return seen


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def test_e_postgres_restart_api_answers_503_and_workers_hold_their_results(
    cluster: Cluster, short_clip: Any, tiny_clip: Any
) -> None:
    assert cluster.client is not None
    cluster.wait(lambda: both_workers_alive(cluster), "both workers alive", timeout=60)
    held_spec = {"input": short_clip.as_uri(), "outputs": [HEVC_OUTPUT], "hardware": "cpu", "cache": False}
    tiny_spec = {"input": tiny_clip.as_uri(), "outputs": [TINY_OUTPUT], "hardware": "cpu", "cache": False}
    response = cluster.api("POST", "/v1/jobs", json=held_spec)
    assert response.status_code == 201, response.text
    held = response.json()["id"]
    queued = []
    for _ in range(PG_QUEUED_JOBS):
        response = cluster.api("POST", "/v1/jobs", json=tiny_spec)
        assert response.status_code == 201, response.text
        queued.append(response.json()["id"])
    key = f"pg-restart-{uuid.uuid4()}"
    stop = threading.Event()
    with ThreadPoolExecutor(1) as background:
        probing = background.submit(
            cluster.client.in_threads, lambda _: probe_api(cluster, held, tiny_spec, key, stop), [None], 1
        )
        try:
            cluster.wait(lambda: ffmpeg_pids(held), "the encode to start", timeout=60)
            pids = ffmpeg_pids(held)
            client = cluster.client
            # Paused while the database stops, so a fast machine cannot finish the encode before the outage.
            signal_all(pids, signal.SIGSTOP)
            try:
                cluster.stop_postgres()
                cluster.wait(lambda: not client.port_open("db", PG_PORT), "PostgreSQL down")
            finally:
                signal_all(pids, signal.SIGCONT)
            stopped = time.monotonic()
            # The encode ends during the outage (its worker cannot record it) ...
            cluster.wait(lambda: not ffmpeg_pids(held), "the encode to end", timeout=60)
            encoded = time.monotonic() - stopped
            time.sleep(max(0.0, stopped + OUTAGE_SECONDS - time.monotonic()))
            cluster.start_postgres()
            restarted = time.monotonic()
            cluster.wait(
                lambda: cluster.client and cluster.client.port_open("db", PG_PORT), "PostgreSQL back"
            )
            # ... and is recorded, from the result the worker held, once the database is back.
            cluster.wait(lambda: row(cluster, held)[0] in TERMINAL, "the held result recorded", timeout=60)
            recorded = time.monotonic() - restarted
            wait_all_ended(cluster, [held, *queued], timeout=60 + 3 * PG_QUEUED_JOBS)
        finally:
            stop.set()
            answers = probing.result()[0]
    outage = restarted - stopped
    assert answers and not any(status >= 500 and status != 503 for _, _, status, _, _ in answers), answers
    refused = [a for a in answers if a[2] == 503]
    assert refused, answers  # the outage was seen by the client
    assert all(retry_after is not None and int(retry_after) > 0 for _, _, _, retry_after, _ in refused), (
        refused
    )
    assert all(took < ANSWER_WITHIN_SECONDS for *_, took in answers), max(a[4] for a in answers)
    assert all(status < 400 for sent, _, status, _, _ in answers if sent < stopped - 1.0), answers
    back = min(sent + took for sent, _, status, _, took in answers if sent >= restarted and status < 400)
    # The held job: encoded once (attempt 1 only), its result recorded after the outage.
    assert row(cluster, held)[:2] == ("succeeded", 1)
    check_each_succeeded_once(cluster, [held], "main.mp4")
    rerun = check_each_succeeded_once(cluster, queued, "main.ts")
    log = next(
        cluster.log(w).read_text() for w in ("worker1", "worker2") if held in cluster.log(w).read_text()
    )
    assert f"the ownership check of job {held} before publishing" in log, log[-3000:]
    assert "database back; held work recorded" in log
    created = cluster.client.sql("SELECT count(*) FROM jobs WHERE idempotency_key = %(key)s", key=key)
    assert created == [(1,)], created  # the probe's submission, retried through the outage, is one job
    print(
        f"\npostgresql restarted: down {outage:.1f}s; the API answered {len(refused)} requests 503 with "
        f"Retry-After (none 500, slowest answer {max(a[4] for a in answers):.2f}s); first success "
        f"{back - restarted:.2f}s after the restart; an encode that ended {encoded:.1f}s into the outage was "
        f"held and recorded {recorded:.1f}s after the restart in its first attempt; "
        f"{len(queued)} queued jobs all succeeded once ({rerun} ran a second attempt)"
    )


# Jobs in flight when the Redis primary dies: a handful in `make test`, 200 in the long form.
FAILOVER_JOBS = 200 if LONG else 12


def test_f_redis_primary_killed_during_a_run_loses_and_duplicates_nothing(
    cluster: Cluster, tiny_clip: Any
) -> None:
    """Last in the module: the cluster has no replica left afterwards."""
    assert cluster.client is not None
    cluster.wait(lambda: both_workers_alive(cluster), "both workers alive", timeout=60)
    spec = {"input": tiny_clip.as_uri(), "outputs": [TINY_OUTPUT], "hardware": "cpu", "cache": False}
    ids = []
    for _ in range(FAILOVER_JOBS):
        response = cluster.api("POST", "/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    done = (
        "SELECT count(*) FROM jobs WHERE id = ANY(%(ids)s) AND state IN ('succeeded', 'failed', 'canceled')"
    )
    # Into the run: a few jobs done, the rest queued or running.
    cluster.wait(lambda: cluster.client and cluster.client.sql(done, ids=ids)[0][0] >= 2, "the first jobs")
    cluster.kill("redis-primary")
    killed = time.monotonic()
    cluster.wait(lambda: cluster.redis_master_port() == REDIS_PORTS[1], "Sentinel to promote the replica", 30)
    promoted = time.monotonic() - killed
    cluster.wait(
        lambda: cluster.client and cluster.client.sql(done, ids=ids)[0][0] == len(ids),
        "every job to end",
        timeout=60 + FAILOVER_JOBS,
    )
    finished = time.monotonic() - killed
    states = cluster.client.sql(
        "SELECT state, count(*) FROM jobs WHERE id = ANY(%(ids)s) GROUP BY state", ids=ids
    )
    assert dict(states) == {"succeeded": len(ids)}, states  # 0 lost
    per_job = cluster.client.sql(
        "SELECT j.id,"
        " (SELECT count(*) FROM job_transitions t WHERE t.job_id = j.id AND t.to_state = 'succeeded'),"
        " (SELECT count(*) FROM job_transitions t WHERE t.job_id = j.id AND t.to_state = 'running'),"
        " (SELECT count(*) FROM job_outputs o WHERE o.job_id = j.id)"
        " FROM jobs j WHERE j.id = ANY(%(ids)s)",
        ids=ids,
    )
    assert all(succeeded == 1 and outputs == 1 for _, succeeded, _, outputs in per_job), (
        per_job
    )  # 0 duplicated
    assert all(cluster.output_files(job_id) == ["main.ts"] for job_id in ids)
    rerun = sum(1 for _, _, runs, _ in per_job if runs > 1)
    print(
        f"\nredis primary killed during {len(ids)} jobs: replica promoted {promoted:.1f}s later, all done "
        f"{finished:.1f}s after the kill; 0 lost, 0 duplicated ({rerun} ran a second attempt)"
    )
