"""CPU energy counters: RAPL package domains from sysfs, and the machine's busy CPU time from /proc/stat.

Reading is a thin edge (`read_rapl`, `read_busy_cpu_seconds`); everything else is pure so that tests can run
it on recorded counter files. RAPL counters are cumulative microjoules that wrap at `max_energy_range_uj`;
only package domains (`intel-rapl:N`, not their `intel-rapl:N:M` subdomains, which the package already
includes) are summed. On most distributions `energy_uj` is readable by root only: then there is no reading
and the job's energy is estimated (observability/cost.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
PROC_STAT = Path("/proc/stat")
_PACKAGE = re.compile(r"^intel-rapl:\d+$")


@dataclass(frozen=True)
class RaplCounter:
    energy_uj: int
    max_range_uj: int


def read_rapl(root: Path = POWERCAP) -> dict[str, RaplCounter]:
    """The package domains' counters now; empty when there are none or they cannot be read."""
    counters: dict[str, RaplCounter] = {}
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return {}
    for entry in entries:
        if not _PACKAGE.match(entry.name):
            continue
        try:
            energy = int((entry / "energy_uj").read_text().strip())
            max_range = int((entry / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            return {}  # one unreadable package makes the sum wrong: no reading at all
        counters[entry.name] = RaplCounter(energy, max_range)
    return counters


def counter_delta(before: int, after: int, max_range: int) -> int:
    """Microjoules between two readings of one counter, across at most one wrap-around."""
    if after >= before:
        return after - before
    return max_range - before + after


def rapl_joules(before: dict[str, RaplCounter], after: dict[str, RaplCounter]) -> float | None:
    """Joules all packages used between two readings; None when either reading is missing."""
    if not before or before.keys() != after.keys():
        return None
    micro = sum(
        counter_delta(before[name].energy_uj, after[name].energy_uj, after[name].max_range_uj)
        for name in before
    )
    return micro / 1e6


def busy_cpu_seconds(proc_stat: str, ticks_per_second: float) -> float:
    """CPU seconds every core spent not idle since boot, from the `cpu` line of /proc/stat's text."""
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
            values = [int(v) for v in fields[1:9]]
            busy = sum(values) - values[3] - values[4]
            return busy / ticks_per_second
    raise ValueError("no aggregate cpu line in /proc/stat")


def read_busy_cpu_seconds(path: Path = PROC_STAT) -> float | None:
    try:
        return busy_cpu_seconds(path.read_text(), float(os.sysconf("SC_CLK_TCK")))
    except (OSError, ValueError):
        return None


def apportion(joules: float, job_cpu_seconds: float, machine_cpu_seconds: float) -> float:
    """The job's part of the packages' energy: its share of all CPU time the machine spent meanwhile.

    The share is capped at 1: the job's rusage and /proc/stat tick at different granularities, so on an
    idle machine the job can appear to have used slightly more than everything.
    """
    if machine_cpu_seconds <= 0 or job_cpu_seconds <= 0:
        return 0.0
    return joules * min(1.0, job_cpu_seconds / machine_cpu_seconds)


@dataclass(frozen=True)
class EnergySample:
    """Counters read at one instant, taken before and after an attempt."""

    rapl: dict[str, RaplCounter]
    busy_cpu_seconds: float | None


def sample(root: Path = POWERCAP, proc_stat: Path = PROC_STAT) -> EnergySample:
    return EnergySample(read_rapl(root), read_busy_cpu_seconds(proc_stat))


def measured_joules(before: EnergySample, after: EnergySample, job_cpu_seconds: float) -> float | None:
    """The job's CPU energy from RAPL apportioned by CPU time, or None when the counters were unreadable."""
    total = rapl_joules(before.rapl, after.rapl)
    if total is None or before.busy_cpu_seconds is None or after.busy_cpu_seconds is None:
        return None
    return apportion(total, job_cpu_seconds, after.busy_cpu_seconds - before.busy_cpu_seconds)
