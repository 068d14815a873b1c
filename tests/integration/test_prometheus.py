"""The dashboards and alert rules in config/ against a real Prometheus that scraped a real stack.

A real `prometheus` server (Debian's package) scrapes a real API server, the beat, the webhook sender and a
worker, each on its own port, every second, and loads config/alerts with every `for:` shortened. With jobs
queued and no worker the "no worker for queued jobs" alert must fire for real; then a worker runs a job that
succeeds and one that fails, and every panel query of every dashboard and every rule expression is evaluated
through the HTTP API: an error fails the test, and so does an empty result for a panel that must show data
after those jobs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import services
from tests.conftest import make_clip, make_own_database

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "config" / "alerts" / "framefleet.yml"
# Series names in PromQL (ours and the API's unprefixed ones); label names never start so.
SERIES = re.compile(r"\b(?:framefleet_[a-z_]+|http_[a-z_]+|jobs_submitted_total)\b")

# Panels, and series, that may legitimately be absent after one succeeded and one failed job, with why:
# retries need a second attempt, and this stack runs one attempt per job (FRAMEFLEET_RETRY_MAX_ATTEMPTS=1).
MAY_BE_EMPTY = {"Retries / s by pool and priority"}
MAY_BE_UNSCRAPED = {"framefleet_job_retries_total"}

SPEC_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "h264", "height": 120, "preset": "ultrafast"},
}


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every target of every panel, rows included."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        panels = list(board["panels"])
        while panels:
            panel = panels.pop()
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def rule_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for g in groups for rule in g["rules"]]


class Prometheus:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=10)

    def query(self, expr: str) -> dict[str, Any]:
        """The query's `data`; a PromQL error fails with Prometheus's message."""
        response = self.client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        data: dict[str, Any] = body["data"]
        return data

    def value(self, expr: str) -> float | None:
        result = self.query(expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def alert_state(self, name: str) -> str | None:
        alerts = self.client.get("/api/v1/alerts").json()["data"]["alerts"]
        states = {a["state"] for a in alerts if a["labels"]["alertname"] == name}
        return "firing" if "firing" in states else (states.pop() if states else None)

    def wait(self, what: str, check: Any, timeout: float = 30) -> None:
        services.wait_until(check, timeout, what)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {name: services.free_port() for name in ("api", "worker", "beat", "webhooks", "prometheus")}


@pytest.fixture(scope="module")
def stack_env(
    worker_env: dict[str, str], ports: dict[str, int], database_url: str, session_dir: Path
) -> Iterator[dict[str, str]]:
    """A stack of its own: its own database and Redis, so queue depths and job counts are this test's alone
    (the suite's other jobs, queued and never run, would otherwise be counted and run here)."""
    from framefleet.db.migrate import upgrade

    own_url = make_own_database(database_url, session_dir / "prom-db")
    upgrade(own_url)
    redis_server = services.start_redis(session_dir / "prom-redis")
    yield {
        **worker_env,
        "FRAMEFLEET_DATABASE_URL": own_url,
        "FRAMEFLEET_REDIS_URL": redis_server.url,
        "FRAMEFLEET_WORKER_METRICS_PORT": str(ports["worker"]),
        "FRAMEFLEET_BEAT_METRICS_PORT": str(ports["beat"]),
        "FRAMEFLEET_WEBHOOKS_METRICS_PORT": str(ports["webhooks"]),
        "FRAMEFLEET_QUEUE_METRICS_INTERVAL_SECONDS": "0.5",
    }
    services.stop(redis_server.proc)


@pytest.fixture(scope="module")
def api_and_beat(stack_env: dict[str, str], ports: dict[str, int], session_dir: Path) -> Iterator[str]:
    """A real API server, the beat and the webhook sender, each serving /metrics; yields the API's URL."""
    cli = [sys.executable, "-m", "framefleet.cli.main"]
    logs = session_dir / "logs"
    api = start([*cli, "api", "--port", str(ports["api"])], stack_env, logs / "prom-api.log")
    beat = start([*cli, "beat"], stack_env, logs / "prom-beat.log")
    webhooks = start([*cli, "webhooks", "worker"], stack_env, logs / "prom-webhooks.log")
    try:
        services.wait_until(lambda: services.port_open(ports["api"]), 30, "API server", api)
        services.wait_until(lambda: services.port_open(ports["beat"]), 30, "beat metrics", beat)
        services.wait_until(lambda: services.port_open(ports["webhooks"]), 30, "webhook metrics", webhooks)
        yield f"http://127.0.0.1:{ports['api']}"
    finally:
        for proc in (api, beat, webhooks):
            services.stop(proc)


@pytest.fixture(scope="module")
def prometheus(ports: dict[str, int], session_dir: Path, api_and_beat: str) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "the prometheus server is missing: tests/setup/system-deps.sh installs it"
    root = session_dir / "prometheus"
    root.mkdir()
    # The shipped rules with every `for:` shortened so that an alert can fire within the test.
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    (root / "rules.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(root / "rules.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{ports[port]}"]}]}
            for job, port in (
                ("framefleet-api", "api"),
                ("framefleet-workers", "worker"),
                ("framefleet-beat", "beat"),
                ("framefleet-webhooks", "webhooks"),
            )
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = start(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
        {},
        session_dir / "logs" / "prometheus.log",
    )
    server = Prometheus(f"http://127.0.0.1:{ports['prometheus']}")
    try:
        services.wait_until(
            lambda: (
                services.port_open(ports["prometheus"]) and server.client.get("/-/ready").status_code == 200
            ),
            30,
            "prometheus",
            proc,
        )
        yield server
    finally:
        services.stop(proc)


def test_dashboards_and_alerts_against_a_real_prometheus(
    prometheus: Prometheus,
    api_and_beat: str,
    stack_env: dict[str, str],
    ffmpeg: str,
    media_root: Path,
    session_dir: Path,
) -> None:
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    with session_scope(stack_env["FRAMEFLEET_DATABASE_URL"]) as session:
        key, _ = create_key(session, tenant="prom")
    client = httpx.Client(base_url=api_and_beat, headers={"X-API-Key": key}, timeout=10)
    source = make_clip(ffmpeg, media_root / "inputs" / "prom-1s.mp4", seconds=1)

    def submit(uri: str) -> str:
        response = client.post("/v1/jobs", json={"input": uri, "outputs": [SPEC_OUTPUT]})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    # Jobs queued and no worker: the alert fires for real (its `for:` shortened to 2 s).
    jobs = [submit(source.as_uri()), submit((media_root / "inputs" / "prom-missing.mp4").as_uri())]
    prometheus.wait(
        "FrameFleetNoWorkerForQueuedJobs firing",
        lambda: prometheus.alert_state("FrameFleetNoWorkerForQueuedJobs") == "firing",
    )
    assert prometheus.value('sum(framefleet_queue_depth{queue="cpu.normal"})') == 2

    worker = services.start_worker(stack_env, session_dir / "logs" / "prom-worker.log", name="prom")
    try:
        for job_id in jobs:
            services.wait_until(
                lambda job_id=job_id: (
                    client.get(f"/v1/jobs/{job_id}").json()["state"] in {"succeeded", "failed"}
                ),
                120,
                f"job {job_id}",
            )
        states = sorted(client.get(f"/v1/jobs/{job_id}").json()["state"] for job_id in jobs)
        assert states == ["failed", "succeeded"]
        # Wait for scrapes that saw both attempts end and the queue drain.
        prometheus.wait(
            "a scrape after both jobs",
            lambda: (
                prometheus.value("sum(framefleet_jobs_finished_total)") == 2
                and prometheus.value("sum(framefleet_queue_depth)") == 0
            ),
        )
        # rate() and increase() need two samples of a series: the counters were born when the jobs ended.
        names = prometheus.client.get("/api/v1/label/__name__/values").json()["data"]
        young = " or ".join(
            f"count_over_time({name}[5m]) < 2"
            for name in names
            if name.startswith("framefleet_") and name.endswith(("_total", "_count", "_bucket"))
        )
        try:
            prometheus.wait("two samples of every series", lambda: not prometheus.query(young)["result"])
        except RuntimeError:
            pytest.fail(f"series with fewer than two samples: {prometheus.query(young)['result'][:5]}")
        prometheus.wait(
            "the alert to resolve",
            lambda: prometheus.alert_state("FrameFleetNoWorkerForQueuedJobs") is None,
        )
        empty = []
        for board, title, expr in panel_queries():
            if not prometheus.query(expr)["result"] and title not in MAY_BE_EMPTY:
                empty.append(f"{board}: {title}: {expr}")
        assert not empty, "panels without data after real jobs:\n" + "\n".join(empty)
        for _alert, expr in rule_queries():
            prometheus.query(expr)  # an invalid or erroring expression fails here
        # `or vector(0)` keeps a stat panel from going blank, and an alert expression is meant to be empty:
        # neither shows a misspelt or vanished series, so every series named anywhere must have been scraped.
        exprs = [expr for _, _, expr in panel_queries()] + [expr for _, expr in rule_queries()]
        named = {name for expr in exprs for name in SERIES.findall(expr)}
        scraped = set(prometheus.client.get("/api/v1/label/__name__/values").json()["data"])
        assert named and not named - scraped - MAY_BE_UNSCRAPED, sorted(named - scraped - MAY_BE_UNSCRAPED)
    finally:
        services.stop(worker, timeout=20)
