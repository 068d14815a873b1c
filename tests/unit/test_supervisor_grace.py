"""`framefleet up` gives the worker enough time to finish or hand back its job before killing it."""

from __future__ import annotations

import pytest

from framefleet.cli.supervisor import (
    STOP_GRACE_SECONDS,
    WORKER_STOP_MARGIN_SECONDS,
    child_env,
    stop_grace,
)
from framefleet.config import Settings


def test_the_worker_outlasts_its_own_shutdown_grace() -> None:
    settings = Settings(shutdown_grace_seconds=20.0)

    assert stop_grace("worker", settings) == 20.0 + WORKER_STOP_MARGIN_SECONDS
    assert stop_grace("worker", settings) > settings.shutdown_grace_seconds


@pytest.mark.parametrize("name", ["redis", "api", "beat", "flower"])
def test_other_children_keep_the_default_grace(name: str) -> None:
    settings = Settings(shutdown_grace_seconds=20.0)

    assert stop_grace(name, settings) == STOP_GRACE_SECONDS
    assert stop_grace(name, settings, default=3.0) == 3.0


def test_the_worker_never_gets_less_than_the_default() -> None:
    settings = Settings(shutdown_grace_seconds=0.0)

    assert stop_grace("worker", settings) == STOP_GRACE_SECONDS
    assert stop_grace("worker", settings, default=2.0) == WORKER_STOP_MARGIN_SECONDS


def test_the_worker_child_runs_with_the_grace_the_supervisor_planned_for() -> None:
    settings = Settings(shutdown_grace_seconds=42.5)

    assert float(child_env(settings)["FRAMEFLEET_SHUTDOWN_GRACE_SECONDS"]) == 42.5


def test_up_serves_metrics_on_default_ports_unless_told_otherwise() -> None:
    env = child_env(Settings())
    assert env["FRAMEFLEET_WORKER_METRICS_PORT"] == "9101"
    assert env["FRAMEFLEET_BEAT_METRICS_PORT"] == "9102"
    assert env["FRAMEFLEET_WEBHOOKS_METRICS_PORT"] == "9103"
    # A port chosen in the settings wins, and 0 chosen there turns the endpoint off.
    env = child_env(Settings(worker_metrics_port=9301, beat_metrics_port=0))
    assert env["FRAMEFLEET_WORKER_METRICS_PORT"] == "9301"
    assert env["FRAMEFLEET_BEAT_METRICS_PORT"] == "0"
    assert env["FRAMEFLEET_WEBHOOKS_METRICS_PORT"] == "9103"
