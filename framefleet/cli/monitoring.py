"""`framefleet prometheus`: a Prometheus server scraping this machine's stack with the shipped rules.

`framefleet up --monitoring` runs it as one of its children. The server is the operating system's own
(Debian and Ubuntu: `apt install prometheus`); nothing is downloaded. The configuration is written into the
data directory from the settings (the API's port and the worker's, beat's and webhook sender's metrics
ports), with the job names the rules and dashboards select, and the process then becomes Prometheus, so
signals and `framefleet up`'s clean-up reach it directly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from framefleet.config import Settings, get_settings

# The rules ship beside the package in a source checkout (config/alerts, also used by the compose profile).
RULES_DIR = Path(__file__).resolve().parents[2] / "config" / "alerts"
MISSING_SERVER = (
    "--monitoring needs a Prometheus server: none named `prometheus` is on PATH "
    "(Debian/Ubuntu: apt install prometheus)"
)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def rule_files(folder: Path = RULES_DIR) -> list[Path]:
    """The shipped alert and recording rules, or none when this installation has no config/ folder."""
    return sorted(folder.glob("*.yml")) if folder.is_dir() else []


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def prometheus_config(settings: Settings, *, rules: list[Path]) -> dict[str, Any]:
    """Scrape jobs for the API and each metrics port that is served (pure); job names as the rules expect."""
    targets = {"framefleet-api": f"{_local(settings.api_host)}:{settings.api_port}"}
    for job, port in (
        ("framefleet-workers", settings.worker_metrics_port),
        ("framefleet-beat", settings.beat_metrics_port),
        ("framefleet-webhooks", settings.webhooks_metrics_port),
    ):
        if port:
            targets[job] = f"{_local(settings.metrics_host)}:{port}"
    interval = f"{settings.prometheus_scrape_interval_seconds:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ],
    }


def prometheus_argv(binary: str, settings: Settings, config: Path) -> list[str]:
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={settings.data_dir / 'prometheus' / 'data'}",
        f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
        "--log.level=warn",
    ]


def run_prometheus() -> int:
    """Write the configuration and replace this process with the Prometheus server."""
    settings = get_settings()
    binary = prometheus_binary()
    if binary is None:
        raise SystemExit(f"framefleet prometheus: {MISSING_SERVER}")
    folder = settings.data_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(json.dumps(prometheus_config(settings, rules=rule_files()), indent=2) + "\n")
    os.execv(binary, prometheus_argv(binary, settings, config))
