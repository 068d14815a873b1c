"""Energy counters, apportioning and cost on recorded counter files (fake sysfs trees) and real ones."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from framefleet.observability import cost, energy, metrics
from framefleet.scheduling.maintenance import over_limit, queue_levels

RATES = cost.Rates(
    currency="EUR",
    price_per_kwh=0.36,
    cpu_hour_rate=0.05,
    gpu_hour_rate=1.0,
    watts_per_core=10.0,
    watts_per_gpu=50.0,
)


def powercap(root: Path, domains: dict[str, tuple[int, int]]) -> Path:
    """A recorded /sys/class/powercap: {domain: (energy_uj, max_energy_range_uj)}."""
    for name, (value, max_range) in domains.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "energy_uj").write_text(f"{value}\n")
        (folder / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


def test_rapl_sums_packages_only_and_handles_wrap_around(tmp_path: Path) -> None:
    big = 262_143_328_850
    root = powercap(
        tmp_path,
        {
            "intel-rapl:0": (big - 1_000_000, big),
            "intel-rapl:1": (5_000_000, big),
            "intel-rapl:0:0": (7, big),
        },
    )
    (tmp_path / "dtpm").mkdir()  # not a RAPL domain
    before = energy.read_rapl(root)
    assert set(before) == {"intel-rapl:0", "intel-rapl:1"}
    powercap(root, {"intel-rapl:0": (2_500_000, big), "intel-rapl:1": (9_000_000, big)})  # package 0 wrapped
    after = energy.read_rapl(root)
    assert energy.rapl_joules(before, after) == pytest.approx(3.5 + 4.0)


def test_unreadable_or_missing_counters_give_no_reading(tmp_path: Path) -> None:
    assert energy.read_rapl(tmp_path / "absent") == {}
    root = powercap(tmp_path, {"intel-rapl:0": (1, 10)})
    (root / "intel-rapl:0" / "energy_uj").write_text("garbage")
    assert energy.read_rapl(root) == {}
    assert energy.rapl_joules({}, {}) is None


PROC_STAT_BEFORE = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n"
PROC_STAT_AFTER = "cpu  300 5 150 1400 25 3 2 0 0 0\ncpu0 150 2 75 700 12 1 1 0 0 0\n"


def test_busy_cpu_seconds_from_proc_stat() -> None:
    assert energy.busy_cpu_seconds(PROC_STAT_BEFORE, 100) == pytest.approx((100 + 5 + 50 + 3 + 2) / 100)
    assert energy.busy_cpu_seconds(PROC_STAT_AFTER, 100) - energy.busy_cpu_seconds(
        PROC_STAT_BEFORE, 100
    ) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        energy.busy_cpu_seconds("intr 1 2 3\n", 100)


def test_measured_joules_apportioned_by_cpu_share(tmp_path: Path) -> None:
    root = powercap(tmp_path / "pc", {"intel-rapl:0": (10_000_000, 2**32)})
    stat = tmp_path / "stat"
    stat.write_text(PROC_STAT_BEFORE)
    before = energy.sample(root, stat)
    powercap(root, {"intel-rapl:0": (70_000_000, 2**32)})  # 60 J
    stat.write_text(PROC_STAT_AFTER)  # 3 busy CPU-seconds machine-wide
    after = energy.sample(root, stat)
    ticks = energy.read_busy_cpu_seconds(stat)
    assert ticks is not None
    # The sample scales ticks by the real CLK_TCK; the job used a quarter of the busy time.
    busy = after.busy_cpu_seconds - before.busy_cpu_seconds  # type: ignore[operator]
    assert energy.measured_joules(before, after, busy / 4) == pytest.approx(15.0)
    assert energy.measured_joules(before, after, busy * 2) == pytest.approx(60.0)  # share capped at 1
    assert energy.measured_joules(before, energy.EnergySample({}, None), 1.0) is None


def test_real_counters_of_this_machine() -> None:
    """Where the machine exposes readable RAPL counters they advance under load; elsewhere no reading."""
    first = energy.sample()
    assert first.busy_cpu_seconds is not None and first.busy_cpu_seconds > 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass
    second = energy.sample()
    assert second.busy_cpu_seconds is not None and second.busy_cpu_seconds >= first.busy_cpu_seconds
    if energy.POWERCAP.exists() and first.rapl:
        joules = energy.rapl_joules(first.rapl, second.rapl)
        assert joules is not None and joules > 0
    else:
        assert first.rapl == {} and energy.measured_joules(first, second, 0.3) is None


def test_cost_and_usage_record() -> None:
    estimated = cost.attempt_usage(cpu_seconds=36.0, wall_seconds=20.0, measured_joules=None, rates=RATES)
    assert estimated["joules"] == 360.0 and estimated["joules_source"] == "estimated"
    # 360 J = 0.0001 kWh * 0.36 + 0.01 CPU-h * 0.05
    assert estimated["cost"] == {"amount": pytest.approx(0.000036 + 0.0005), "currency": "EUR"}
    measured = cost.attempt_usage(
        cpu_seconds=3.6,
        wall_seconds=2.0,
        measured_joules=3600.0,
        rates=RATES,
        gpu_seconds=36.0,
        measured_gpu_joules=3600.0,
    )
    assert measured["joules_source"] == "rapl+nvml" and measured["joules"] == 7200.0
    assert measured["cost"]["amount"] == pytest.approx(0.002 * 0.36 + 0.001 * 0.05 + 0.01 * 1.0)
    total = cost.add_usage(cost.add_usage(None, measured), estimated)
    assert total["attempts"] == 2
    assert total["cpu_seconds"] == pytest.approx(39.6)
    assert total["joules_source"] == "estimated"  # one estimated attempt makes the sum an estimate
    assert total["cost"]["amount"] == pytest.approx(measured["cost"]["amount"] + estimated["cost"]["amount"])


def test_tenant_label_is_bounded() -> None:
    capped = metrics.TenantLabels([], cap=2)
    assert [capped(t) for t in ("a", "b", "c", "a")] == ["a", "b", metrics.OTHER_TENANT, "a"]
    allow = metrics.TenantLabels(["vip"], cap=100)
    assert allow("vip") == "vip" and allow("other") == metrics.OTHER_TENANT


def test_resolution_classes() -> None:
    assert [metrics.resolution_class(h) for h in (None, 240, 720, 1080, 2160, 4320)] == [
        "audio",
        "sd",
        "hd",
        "fhd",
        "uhd",
        "8k",
    ]


def test_queue_levels_cover_every_queue() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    depth, oldest = queue_levels(
        [("cpu", "live", now - timedelta(seconds=42), 3), ("gpu", "batch", now - timedelta(seconds=5), 1)],
        now,
    )
    assert (
        len(depth) == 10 and depth["cpu.live"] == 3 and depth["gpu.batch"] == 1 and depth["cpu.normal"] == 0
    )
    assert oldest["cpu.live"] == 42.0 and oldest["cpu.normal"] == 0.0
    snapshot = metrics.QueueSnapshot()
    snapshot.update(depth, oldest, over_limit={"cpu": 1, "gpu": 0}, endpoints={"ok": 2, "failing": 1})
    families = {family.name: family for family in snapshot.collect()}
    assert set(families) == {
        "framefleet_beat_leader",
        "framefleet_queue_depth",
        "framefleet_queue_oldest_job_age_seconds",
        "framefleet_jobs_running_over_limit",
        "framefleet_webhook_endpoints",
    }
    assert {s.labels["pool"]: s.value for s in families["framefleet_jobs_running_over_limit"].samples} == {
        "cpu": 1,
        "gpu": 0,
    }
    assert [(s.labels["status"], s.value) for s in families["framefleet_webhook_endpoints"].samples] == [
        ("failing", 1),
        ("ok", 2),
    ]
    snapshot.clear()
    assert {family.name for family in snapshot.collect()} == {"framefleet_beat_leader"}


def test_running_jobs_over_their_limit_are_counted_per_pool() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        ("cpu", now - timedelta(seconds=301), 300.0),  # past its limit
        ("cpu", now - timedelta(seconds=299), 300.0),  # within it
        ("cpu", None, 300.0),  # claimed, not started yet
        ("gpu", now - timedelta(hours=9), None),  # no limit recorded
    ]
    assert over_limit(rows, now) == {"cpu": 1, "gpu": 0}


def test_worker_work_dir_space_is_read_at_each_scrape(tmp_path: Path) -> None:
    families = {f.name: f for f in metrics.WorkDirSpace(tmp_path, "cpu").collect()}
    free = families["framefleet_worker_workdir_free_bytes"].samples[0]
    size = families["framefleet_worker_workdir_size_bytes"].samples[0]
    stats = os.statvfs(tmp_path)
    assert free.labels == {"pool": "cpu"} and size.value == stats.f_blocks * stats.f_frsize
    assert 0 < free.value <= size.value
    assert list(metrics.WorkDirSpace(tmp_path / "missing", "cpu").collect()) == []
