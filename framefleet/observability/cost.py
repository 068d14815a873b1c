"""The usage record of a job and its cost: pure functions of measured figures and configured rates.

cost = joules / 3.6e6 * price per kWh + CPU-seconds / 3600 * rate per CPU-hour
       + GPU-seconds / 3600 * rate per GPU-hour, in the configured currency.

A job's usage sums all of its attempts (a failed or handed-back attempt also burnt energy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JOULES_PER_KWH = 3.6e6
RAPL = "rapl"
ESTIMATED = "estimated"


@dataclass(frozen=True)
class Rates:
    currency: str
    price_per_kwh: float
    cpu_hour_rate: float
    gpu_hour_rate: float
    watts_per_core: float


def estimated_joules(cpu_seconds: float, watts_per_core: float) -> float:
    """The model used without a readable counter: each busy core draws `watts_per_core`."""
    return cpu_seconds * watts_per_core


def cost_of(*, joules: float, cpu_seconds: float, gpu_seconds: float, rates: Rates) -> float:
    return (
        joules / JOULES_PER_KWH * rates.price_per_kwh
        + cpu_seconds / 3600 * rates.cpu_hour_rate
        + gpu_seconds / 3600 * rates.gpu_hour_rate
    )


def attempt_usage(
    *,
    cpu_seconds: float,
    wall_seconds: float,
    measured_joules: float | None,
    rates: Rates,
    gpu_seconds: float = 0.0,
) -> dict[str, Any]:
    """One attempt's usage record (JSON-ready)."""
    if measured_joules is None:
        joules, source = estimated_joules(cpu_seconds, rates.watts_per_core), ESTIMATED
    else:
        joules, source = measured_joules, RAPL
    return {
        "cpu_seconds": round(cpu_seconds, 3),
        "wall_seconds": round(wall_seconds, 3),
        "gpu_seconds": round(gpu_seconds, 3),
        "joules": round(joules, 3),
        "joules_source": source,
        "cost": {
            "amount": round(
                cost_of(joules=joules, cpu_seconds=cpu_seconds, gpu_seconds=gpu_seconds, rates=rates), 12
            ),
            "currency": rates.currency,
        },
        "attempts": 1,
    }


def add_usage(total: dict[str, Any] | None, attempt: dict[str, Any]) -> dict[str, Any]:
    """The job's usage after one more attempt. Energy measured in one attempt and estimated in another makes
    the whole figure `estimated`; a change of currency between attempts keeps the latest rates' currency."""
    if not total:
        return attempt
    summed = {
        k: round(total.get(k, 0.0) + attempt[k], 3)
        for k in ("cpu_seconds", "wall_seconds", "gpu_seconds", "joules")
    }
    sources = {total.get("joules_source"), attempt["joules_source"]}
    return {
        **summed,
        "joules_source": RAPL if sources == {RAPL} else ESTIMATED,
        "cost": {
            "amount": round(total.get("cost", {}).get("amount", 0.0) + attempt["cost"]["amount"], 12),
            "currency": attempt["cost"]["currency"],
        },
        "attempts": int(total.get("attempts", 0)) + 1,
    }
