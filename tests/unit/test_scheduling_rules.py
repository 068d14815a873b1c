"""Pure scheduling rules: backoff, run-time limits, aging, admission, what follows a failed attempt, the
broker message format, and the parsers of the capability proof."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from framefleet.core.failures import FailureClass
from framefleet.core.retry import RetryPolicy, backoff_delay, decide, policy_for
from framefleet.core.states import JobState
from framefleet.core.timeouts import TimeLimits, clamp_override, override_error, run_limit
from framefleet.jobs.admission import WorkerView, admit, can_run_on, needs_of
from framefleet.scheduling.aging import aged_priority, is_higher
from framefleet.scheduling.broker import job_id_of
from framefleet.scheduling.retries import plan_failure
from framefleet.worker.trial import (
    Trial,
    gpus_from_nvidia_smi,
    gpus_from_nvml,
    parse_meminfo,
    parse_nvidia_smi,
    summarise,
)

POLICY = RetryPolicy(base_seconds=2.0, cap_seconds=30.0, max_attempts=4)


# ---------------------------------------------------------------- backoff


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    assert [POLICY.ceiling(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    assert RetryPolicy(1, 60, 3).ceiling(10_000) == 60  # no overflow


def test_full_jitter_spreads_delays_between_zero_and_the_ceiling() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(POLICY, 3, rng) for _ in range(2000)]
    assert all(0 <= d <= 8 for d in delays)
    assert min(delays) < 0.5 and max(delays) > 7.5, "full jitter uses the whole range"
    assert 3.5 < sum(delays) / len(delays) < 4.5


def test_decide_by_class_and_attempts() -> None:
    rng = random.Random(1)
    retry = decide(FailureClass.worker_lost, failures=1, policy=POLICY, rng=rng)
    assert retry.retry and 0 <= retry.delay_seconds <= 2
    assert not decide(FailureClass.input_invalid, failures=1, policy=POLICY).retry
    assert not decide(FailureClass.timeout, failures=1, policy=POLICY).retry
    last = decide(FailureClass.worker_lost, failures=4, policy=POLICY)
    assert not last.retry and "4 failed attempts" in last.reason


def test_policy_per_priority() -> None:
    overrides = {"live": {"base_seconds": 0.5, "max_attempts": 6}}
    live = policy_for("live", default=POLICY, overrides=overrides)
    assert live == RetryPolicy(0.5, 30.0, 6)
    assert policy_for("batch", default=POLICY, overrides=overrides) == POLICY


# ---------------------------------------------------------------- run-time limits

LIMITS = TimeLimits(factor=10, floor_seconds=300, ceiling_seconds=6 * 3600)


@pytest.mark.parametrize(
    ("duration", "override", "expected"),
    [
        (2.0, None, 300),  # floor
        (60.0, None, 600),  # duration x factor
        (7200.0, None, 6 * 3600),  # ceiling
        (None, None, 6 * 3600),  # unknown duration
        (float("nan"), None, 6 * 3600),
        (60.0, 5, 5),  # override wins, even below the floor
        (60.0, 10**9, 6 * 3600),  # but never above the ceiling
    ],
)
def test_run_limit(duration: float | None, override: float | None, expected: float) -> None:
    assert run_limit(duration, LIMITS, override) == expected


def test_override_bounds() -> None:
    assert override_error(5, LIMITS) is None
    assert override_error(0, LIMITS) == "must be at least 1 second"
    assert "at most 21600" in (override_error(10**6, LIMITS) or "")
    assert clamp_override(0.2, LIMITS) == 1
    with pytest.raises(ValueError):
        TimeLimits(factor=1, floor_seconds=10, ceiling_seconds=5)


# ---------------------------------------------------------------- aging


def test_aging_raises_one_step_per_period_up_to_the_ceiling() -> None:
    def age(priority: str, waited: float) -> str:
        return aged_priority(priority, waited, step_seconds=600, ceiling="high")

    assert age("batch", 599) == "batch"
    assert age("batch", 600) == "low"
    assert age("batch", 1200) == "normal"
    assert age("batch", 10**6) == "high"
    assert age("live", 10**6) == "live", "aging never lowers a job"
    assert aged_priority("batch", 10**6, step_seconds=0, ceiling="high") == "batch", "0 disables aging"
    assert is_higher("high", "normal") and not is_higher("batch", "low")


# ---------------------------------------------------------------- admission

CPU_CAPS = {
    "video": {"cpu": ["av1", "h264", "hevc", "vp9"], "gpu": []},
    "audio": ["aac", "mp3", "opus"],
    "filters": ["libvmaf"],
}
GPU_CAPS = {
    "video": {"cpu": ["h264", "hevc"], "gpu": ["h264", "hevc"]},
    "audio": ["aac", "opus"],
    "filters": ["libvmaf"],
}


def cpu_worker(live: bool = True) -> WorkerView:
    return WorkerView.from_capabilities("cpu@a:1", "cpu", live, CPU_CAPS)


def gpu_worker(live: bool = True, worker_id: str = "gpu@b:1") -> WorkerView:
    return WorkerView.from_capabilities(worker_id, "gpu", live, GPU_CAPS)


def spec(
    *codecs: str, hardware: str = "auto", fallback: str = "none", quality: bool = False
) -> dict[str, Any]:
    outputs = [
        {"name": f"o{i}", "container": "mkv", "video": {"codec": c}, "audio": {"codec": "aac"}}
        for i, c in enumerate(codecs)
    ]
    return {
        "input": "file:///x.mp4",
        "outputs": outputs,
        "hardware": hardware,
        "fallback": fallback,
        "quality": {"metrics": ["vmaf"]} if quality else None,
    }


def test_needs_of_finds_every_codec_with_its_field() -> None:
    needs = needs_of(spec("h264", "copy", "av1", quality=True))
    assert needs.video == (("outputs.0.video.codec", "h264"), ("outputs.2.video.codec", "av1"))
    assert ("outputs.0.audio.codec", "aac") in needs.audio
    assert needs.vmaf


def test_gpu_job_without_a_gpu_encoder_for_its_codec_is_refused_with_the_reason() -> None:
    decision = admit(spec("av1", hardware="gpu"), [cpu_worker(), gpu_worker()])
    assert not decision.accepted
    assert decision.reason == "no worker can encode av1 on a GPU"
    assert decision.field == "outputs.0.video.codec"


def test_gpu_job_when_no_gpu_pool_exists() -> None:
    decision = admit(spec("h264", hardware="gpu"), [cpu_worker()])
    assert decision.reason == "no worker can encode h264 on a GPU"
    # fallback: cpu routes it to the CPU pool instead
    assert admit(spec("h264", hardware="gpu", fallback="cpu"), [cpu_worker()]).pool == "cpu"


def test_gpu_job_waits_when_its_pool_is_known_but_empty_now() -> None:
    assert admit(spec("hevc", hardware="gpu"), [cpu_worker(), gpu_worker(live=False)]).pool == "gpu"


def test_auto_prefers_a_live_gpu_worker_that_can_run_every_output() -> None:
    assert admit(spec("h264", "hevc"), [cpu_worker(), gpu_worker()]).pool == "gpu"
    assert admit(spec("h264", "vp9"), [cpu_worker(), gpu_worker()]).pool == "cpu", "vp9 has no GPU encoder"
    assert admit(spec("h264"), [cpu_worker(), gpu_worker(live=False)]).pool == "cpu", "no live GPU worker"


def test_cpu_refusals_name_the_missing_capability() -> None:
    bare = WorkerView.from_capabilities(
        "cpu@c:1", "cpu", True, {"video": {"cpu": ["h264"]}, "audio": ["aac"]}
    )
    assert admit(spec("hevc", hardware="cpu"), [bare]).reason == "no worker can encode hevc on a CPU"
    assert admit(spec("h264", hardware="cpu", quality=True), [bare]).reason == (
        "no worker can compute quality metrics (libvmaf)"
    )
    assert admit(spec("h264", hardware="cpu"), [gpu_worker()]).reason == "no worker can encode h264 on a CPU"


def test_before_any_worker_registers_everything_valid_is_accepted() -> None:
    assert admit(spec("av1", hardware="gpu"), []).pool == "gpu"
    assert admit(spec("av1"), []).pool == "cpu"


def test_can_run_on_with_cpu_fallback() -> None:
    assert not can_run_on(gpu_worker(), spec("vp9", hardware="gpu"), "gpu")
    assert can_run_on(gpu_worker(), spec("hevc", hardware="gpu", fallback="cpu"), "gpu")


# ---------------------------------------------------------------- after a failed attempt


def test_worker_lost_is_retried_then_fails_after_max_attempts() -> None:
    plan = plan_failure(
        FailureClass.worker_lost, "lost", failures=1, pool="cpu", policy=POLICY, rng=random.Random(3)
    )
    assert plan.target is JobState.retrying and 0 <= plan.delay_seconds <= 2
    final = plan_failure(FailureClass.worker_lost, "lost", failures=4, pool="cpu", policy=POLICY)
    assert final.target is JobState.failed and "max 4" in final.reason


def test_non_retryable_and_canceled() -> None:
    assert (
        plan_failure(FailureClass.timeout, "t", failures=1, pool="cpu", policy=POLICY).target
        is JobState.failed
    )
    canceled = plan_failure(
        FailureClass.worker_lost, "x", failures=1, pool="cpu", policy=POLICY, cancel_requested=True
    )
    assert canceled.target is JobState.canceled


def test_hardware_unavailable_goes_to_another_gpu_then_falls_back_to_cpu() -> None:
    common: dict[str, Any] = {"pool": "gpu", "policy": POLICY, "fallback_cpu": True, "cpu_can_run": True}
    other = plan_failure(
        FailureClass.hardware_unavailable,
        "no gpu",
        failures=1,
        worker="g1",
        other_gpu_workers=["g1", "g2"],
        **common,
    )
    assert other.target is JobState.retrying and other.pool is None and other.avoid_workers == ("g1",)
    assert "another GPU worker" in other.reason
    # g2 failed too: no GPU left, the spec allows CPU
    fallback = plan_failure(
        FailureClass.hardware_unavailable,
        "no gpu",
        failures=2,
        worker="g2",
        avoid_workers=["g1"],
        other_gpu_workers=["g1", "g2"],
        **common,
    )
    assert fallback.target is JobState.retrying and fallback.pool == "cpu" and fallback.delay_seconds == 0
    assert fallback.avoid_workers == ("g1", "g2")
    # without fallback the normal policy applies on the GPU pool
    no_fallback = plan_failure(
        FailureClass.hardware_unavailable,
        "no gpu",
        failures=2,
        worker="g2",
        avoid_workers=["g1"],
        pool="gpu",
        policy=POLICY,
    )
    assert no_fallback.target is JobState.retrying and no_fallback.pool is None


# ---------------------------------------------------------------- broker messages


def test_job_id_of_a_celery_redis_message() -> None:
    body = base64.b64encode(json.dumps([["job-1"], {}, {}]).encode()).decode()
    raw = json.dumps(
        {"body": body, "headers": {"task": "framefleet.run_job"}, "properties": {"body_encoding": "base64"}}
    )
    assert job_id_of(raw) == "job-1"
    assert job_id_of("not json") is None
    assert job_id_of(json.dumps({"body": "x"})) is None


# ---------------------------------------------------------------- capability proof parsers


def test_parse_nvidia_smi() -> None:
    text = "0, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n1, NVIDIA L4, 23034, 550.54.15\n"
    assert parse_nvidia_smi(text) == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559, "driver": "550.54.15"},
        {"index": 1, "name": "NVIDIA L4", "memory_mb": 23034, "driver": "550.54.15"},
    ]
    assert parse_nvidia_smi("No devices were found\n") == []


def test_gpu_detection_without_nvidia_software_reports_why() -> None:
    nvml = gpus_from_nvml(load=lambda name: (_ for _ in ()).throw(OSError(f"{name}: not found")))
    assert nvml["source"] is None and nvml["devices"] == [] and "not found" in nvml["error"]
    smi = gpus_from_nvidia_smi("/nonexistent/nvidia-smi")
    assert smi["source"] is None and "nvidia-smi failed" in smi["error"]


def test_parse_meminfo_and_summary() -> None:
    assert parse_meminfo("MemTotal:       24684032 kB\nMemFree: 1 kB\n") == 24105
    trials = {
        name: Trial(name, ok, 0.1)
        for name, ok in [
            ("libx264", True),
            ("libx265", False),
            ("libsvtav1", True),
            ("libvpx-vp9", True),
            ("aac", True),
            ("libopus", True),
            ("libmp3lame", False),
            ("libvmaf", True),
            ("h264_nvenc", False),
            ("hevc_qsv", True),
            ("cuda", False),
        ]
    }
    summary = summarise(trials)
    assert summary["video"] == {"cpu": ["av1", "h264", "vp9"], "gpu": ["hevc"]}
    assert summary["audio"] == ["aac", "opus"]
    assert summary["filters"] == ["libvmaf"] and summary["decode"] == []
