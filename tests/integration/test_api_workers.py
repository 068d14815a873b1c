"""Two real uvicorn worker processes behind one port: a scrape of /metrics from either counts the requests
both answered (prometheus_client's multiprocess mode, its folder emptied when `framefleet api` starts)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests import services

REQUESTS = 120


def _healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "http_requests_total"
                and sample.labels.get("route") == "/healthz"
                and sample.labels.get("status") == "200"
            ):
                return sample.value
    return 0.0


def test_two_api_workers_report_one_sum(test_env: dict[str, str], tmp_path: Path) -> None:
    port = services.free_port()
    folder = tmp_path / "api-metrics"
    folder.mkdir()
    stale = folder / "counter_999999.db"
    stale.write_bytes(b"left by an earlier run")
    env = {**test_env, "FRAMEFLEET_DATA_DIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    log = tmp_path / "api.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "framefleet.cli.main", "api", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        services.wait_until(
            lambda: services.port_open(port) and log.read_text().count("api started") == 2,
            60,
            "two workers",
            proc,
        )
        assert not stale.exists(), "the multiprocess folder is emptied at start"

        def hit(_: int) -> int:
            # A new connection each time, so the kernel hands them to both processes.
            with httpx.Client() as client:
                return client.get(f"{base}/healthz").status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hit, range(REQUESTS))) == {200}
        writers = {path.name.split("_")[-1] for path in folder.glob("*.db")}
        assert len(writers) == 2, f"both workers answered requests: {sorted(folder.iterdir())}"
        # Every scrape, whichever process answers it, counts all the requests.
        for _ in range(6):
            with httpx.Client() as client:
                assert _healthz_count(client.get(f"{base}/metrics").text) == REQUESTS
    finally:
        services.stop(proc)
