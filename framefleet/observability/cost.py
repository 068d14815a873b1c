"""The usage record of a job and its cost: pure functions of measured figures and configured rates.

cost = joules / 3.6e6 * price per kWh + CPU-seconds / 3600 * rate per CPU-hour
       + GPU-seconds / 3600 * rate per GPU-hour, in the configured currency,

where joules is the CPU energy (RAPL, else estimated per busy core) plus, for an attempt that encoded on a
GPU, the GPU energy (NVML, else estimated per GPU-second).

A job's usage sums all of its attempts (a failed or handed-back attempt also burnt energy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JOULES_PER_KWH = 3.6e6
RAPL = "rapl"
NVML = "nvml"
ESTIMATED = "estimated"
# The counters a measured figure came from, in the order `joules_source` names them ("rapl+nvml").
_COUNTERS = (RAPL, NVML)


@dataclass(frozen=True)
class Rates:
    currency: str
    price_per_kwh: float
    cpu_hour_rate: float
    gpu_hour_rate: float
    watts_per_core: float
    watts_per_gpu: float


def estimated_joules(cpu_seconds: float, watts_per_core: float) -> float:
    """The model used without a readable counter: each busy core draws `watts_per_core`."""
    return cpu_seconds * watts_per_core


def joules_source(parts: set[str]) -> str:
    """One source for energy summed from parts: `estimated` if any part is, else the counters used."""
    names = {name for part in parts for name in part.split("+")}
    if ESTIMATED in names or not names:
        return ESTIMATED
    return "+".join(counter for counter in _COUNTERS if counter in names)


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
    measured_gpu_joules: float | None = None,
) -> dict[str, Any]:
    """One attempt's usage record (JSON-ready). `gpu_seconds`: wall time of its GPU encodes;
    `measured_gpu_joules`: the NVML reading of them, None to estimate."""
    if measured_joules is None:
        joules, source = estimated_joules(cpu_seconds, rates.watts_per_core), ESTIMATED
    else:
        joules, source = measured_joules, RAPL
    gpu_joules, gpu_source = 0.0, None
    if gpu_seconds > 0:
        if measured_gpu_joules is None:
            gpu_joules, gpu_source = gpu_seconds * rates.watts_per_gpu, ESTIMATED
        else:
            gpu_joules, gpu_source = measured_gpu_joules, NVML
    joules += gpu_joules
    return {
        "cpu_seconds": round(cpu_seconds, 3),
        "wall_seconds": round(wall_seconds, 3),
        "gpu_seconds": round(gpu_seconds, 3),
        "joules": round(joules, 3),
        "joules_source": joules_source({source} | ({gpu_source} if gpu_source else set())),
        "gpu_joules": round(gpu_joules, 3),
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
        k: round(total.get(k, 0.0) + attempt.get(k, 0.0), 3)
        for k in ("cpu_seconds", "wall_seconds", "gpu_seconds", "joules", "gpu_joules")
    }
    sources = {str(total.get("joules_source", ESTIMATED)), attempt["joules_source"]}
    return {
        **summed,
        "joules_source": joules_source(sources),
        "cost": {
            "amount": round(total.get("cost", {}).get("amount", 0.0) + attempt["cost"]["amount"], 12),
            "currency": attempt["cost"]["currency"],
        },
        "attempts": int(total.get("attempts", 0)) + 1,
    }
