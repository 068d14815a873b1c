"""The shipped SLO rules measure the objectives the settings define by default, on buckets that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from framefleet.config import Settings
from framefleet.observability.metrics import QUEUE_WAIT

RULES = Path(__file__).resolve().parents[2] / "config" / "alerts" / "framefleet.yml"
BOUND = re.compile(r'priority="(\w+)", le="([0-9.]+)"')
# `> (14.4 * 0.01)` or `> 0.01`: the budget is the last number.
COMPARE = re.compile(r"> (?:\([0-9.]+ \* ([0-9.]+)\)|([0-9.]+))")


def _slo_group() -> list[dict[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules: list[dict[str, str]] = next(g["rules"] for g in groups if g["name"] == "framefleet-slo")
    return rules


def test_each_window_measures_every_default_objective_on_a_real_bucket() -> None:
    defaults = Settings().slo_queue_wait_seconds
    expected = {priority.value: float(seconds) for priority, seconds in defaults.items()}
    buckets = set(QUEUE_WAIT._upper_bounds)
    records = [rule for rule in _slo_group() if "record" in rule]
    assert [r["record"].rsplit(":", 1)[1] for r in records] == [
        f"rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    ]
    for rule in records:
        found = {priority: float(le) for priority, le in BOUND.findall(rule["expr"])}
        assert found == expected, rule["record"]
        assert set(found.values()) <= buckets, "a threshold that is no bucket bound cannot be measured"


def test_alerts_spend_the_default_budget() -> None:
    budget = round(1 - Settings().slo_target, 6)
    alerts = [rule for rule in _slo_group() if "alert" in rule]
    assert len(alerts) == 3
    for rule in alerts:
        spent = {
            float(x) for x in re.findall(r"\* ([0-9.]+)\)|> ([0-9.]+)$", rule["expr"], re.M) for x in x if x
        }
        assert spent == {budget}, (rule["alert"], spent)
