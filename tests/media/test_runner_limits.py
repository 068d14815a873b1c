"""The runner's attempt limits and the capability proof, against the real ffmpeg.

- an ffmpeg dies with the process that started it (kill -9 of a worker leaves no encoder behind);
- one deadline for a whole attempt, stall detection on a really stuck ffmpeg, the abort check;
- trial encodes prove what this ffmpeg can do, and say why the rest cannot run here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.media.runner import AttemptLimits, FfmpegAborted, attempt_limits, run_ffmpeg
from framefleet.worker.trial import prove_capabilities
from tests.media.helpers import paced_encode

pytestmark = pytest.mark.integration

ENDLESS = paced_encode("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_ffmpeg_dies_with_the_process_that_started_it(ffmpeg: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "ffmpeg.pid"
    script = textwrap.dedent(
        f"""
        import threading, time
        from framefleet.media import runner
        real_popen = runner.subprocess.Popen
        def recording_popen(*args, **kwargs):
            proc = real_popen(*args, **kwargs)
            if {ffmpeg!r} in args[0]:  # not a helper's --help asked on the way
                open({str(pid_file)!r}, "w").write(str(proc.pid))
            return proc
        runner.subprocess.Popen = recording_popen
        runner.run_ffmpeg([{ffmpeg!r}, *{ENDLESS!r}], on_progress=None, duration=None)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        assert wait_for(pid_file.exists, 20), "ffmpeg never started"
        time.sleep(0.2)
        ffmpeg_pid = int(pid_file.read_text())
        assert alive(ffmpeg_pid)
        # ffmpeg has its own session: a signal to the parent's group would not reach it; only the
        # parent-death signal can.
        assert os.getsid(ffmpeg_pid) != os.getsid(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        assert wait_for(lambda: not alive(ffmpeg_pid), 2), "ffmpeg outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_an_encoder_started_from_a_pool_process_is_not_forked_from_it(tmp_path: Path) -> None:
    """A worker's pool process ignores SIGTERM and SIGINT. What it starts must still get both at their
    defaults and die with it, without any Python running between fork and exec (a preexec hook makes
    Python fork the whole ~150 MB process instead of using vfork: tens of ms per start)."""
    started = tmp_path / "started"
    script = textwrap.dedent(
        f"""
        import json, signal
        from framefleet.media import runner
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        real_popen = runner.subprocess.Popen
        def recording_popen(*args, **kwargs):
            proc = real_popen(*args, **kwargs)
            if args[0][-2:] == ["sleep", "60"]:  # not a helper's --help asked on the way
                hook = kwargs.get("preexec_fn") is not None
                open({str(started)!r}, "w").write(json.dumps({{"pid": proc.pid, "preexec": hook}}))
            return proc
        runner.subprocess.Popen = recording_popen
        runner.run_ffmpeg(["sleep", "60"], on_progress=None, duration=None)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        assert wait_for(started.exists, 20), "the process never started"
        record = json.loads(started.read_text())
        pid = record["pid"]
        assert record["preexec"] is False, "a preexec hook forks the whole calling process"
        # The helpers exec'd in between are gone: the process is the binary asked for.
        assert wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep", 5)
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        ignored = int(next(line for line in status if line.startswith("SigIgn")).split()[1], 16)
        assert not ignored & (1 << (signal.SIGTERM - 1)), "SIGTERM stayed ignored: a stop would need SIGKILL"
        assert not ignored & (1 << (signal.SIGINT - 1))
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        assert wait_for(lambda: not alive(pid), 2), "it outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_one_deadline_for_the_whole_attempt(ffmpeg: str) -> None:
    limits = AttemptLimits(limit_for=lambda duration: 1.0)
    started = time.monotonic()
    with attempt_limits(limits):
        first = run_ffmpeg([ffmpeg, *ENDLESS], on_progress=None, duration=60.0, timeout=3600)
        second = run_ffmpeg([ffmpeg, *ENDLESS], on_progress=None, duration=60.0, timeout=3600)
    assert first.timed_out and second.timed_out
    assert limits.limit_seconds == 1.0
    assert time.monotonic() - started < 3.0, "the second ffmpeg got a fresh limit"
    # Outside the attempt nothing is imposed.
    short = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=25:duration=1.5",
        "-c:v",
        "libx264",
        "-f",
        "null",
        "-",
    ]
    free = run_ffmpeg(short, on_progress=None, duration=None)
    assert free.returncode == 0 and not free.timed_out


def test_a_stuck_ffmpeg_is_stopped_as_stalled(ffmpeg: str, tmp_path: Path) -> None:
    fifo = tmp_path / "frames"
    os.mkfifo(fifo)
    frame = bytes(64 * 64)
    stop = threading.Event()

    def feed() -> None:
        # A few frames, then the writer keeps the pipe open and sends nothing: ffmpeg waits forever.
        with open(fifo, "wb") as pipe:
            for _ in range(10):
                pipe.write(frame)
            pipe.flush()
            stop.wait(30)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.1",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "-s",
        "64x64",
        "-r",
        "25",
        "-i",
        str(fifo),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "null",
        "-",
    ]
    started = time.monotonic()
    try:
        with pytest.raises(JobFailure) as caught:
            run_ffmpeg(argv, on_progress=None, duration=None, stall_timeout=1.5)
    finally:
        stop.set()
    assert caught.value.failure_class is FailureClass.stalled
    assert caught.value.retryable
    assert 1.4 < time.monotonic() - started < 6


def test_the_abort_check_stops_ffmpeg(ffmpeg: str) -> None:
    asked_at = time.monotonic() + 0.5

    def abort() -> str | None:
        return "worker shutting down" if time.monotonic() >= asked_at else None

    with attempt_limits(AttemptLimits(abort=abort)), pytest.raises(FfmpegAborted) as caught:
        run_ffmpeg([ffmpeg, *ENDLESS], on_progress=None, duration=None)
    assert caught.value.reason == "worker shutting down"
    assert time.monotonic() - asked_at < 2


def test_trial_encodes_prove_what_this_ffmpeg_can_do(ffmpeg: str) -> None:
    caps = prove_capabilities(ffmpeg, timeout=30)
    assert caps["video"]["cpu"] == ["av1", "h264", "hevc", "vp9"]
    assert caps["audio"] == ["aac", "mp3", "opus"]
    assert caps["filters"] == ["libvmaf"]
    for name in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "libvmaf"):
        assert caps["trials"][name]["ok"], caps["trials"][name]
    assert caps["host"]["cpu_count"] >= 1 and caps["host"]["memory_mb"] > 0
    if not caps["gpus"]["devices"]:
        # This machine has no NVIDIA GPU: the NVENC and CUDA trials must fail and say why.
        assert caps["video"]["gpu"] == [] or any(e.endswith(("_qsv", "_vaapi")) for e in caps["gpu_encoders"])
        for name in ("h264_nvenc", "hevc_nvenc", "av1_nvenc", "cuda"):
            assert not caps["trials"][name]["ok"]
            assert caps["trials"][name]["error"], name


def test_a_broken_ffmpeg_proves_nothing(tmp_path: Path) -> None:
    caps = prove_capabilities(str(tmp_path / "no-ffmpeg"), timeout=5)
    assert caps["video"] == {"cpu": [], "gpu": []} and caps["audio"] == [] and caps["filters"] == []
    assert all(not trial["ok"] for trial in caps["trials"].values())


def _runs(pid: int, program: str) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == program.encode()
    except OSError:
        return False


def test_the_abort_check_stops_ffmpeg_while_the_caller_is_stuck(ffmpeg: str) -> None:
    """A partitioned worker: its lease lapses exactly while a progress write hangs on the dead network. The
    encode must stop at once all the same, not when the write gives up, or it runs beside its replacement."""
    asked_at = time.monotonic() + 0.5
    stopped: list[float] = []
    seen: list[int] = []

    def abort() -> str | None:
        return "heartbeat lease lost" if time.monotonic() >= asked_at else None

    def stuck_progress(_sample: object) -> None:
        if stopped:
            return
        # ffmpeg's pid: the child of this process running the endless encode (in a whole suite the process
        # has other children too: servers and workers that other tests' fixtures started).
        tasks = Path(f"/proc/{os.getpid()}/task").glob("*/children")
        children = [int(pid) for task in tasks for pid in task.read_text().split()]
        pids = [pid for pid in children if _runs(pid, ffmpeg)]
        seen.extend(pids)
        deadline = time.monotonic() + 4  # the "network write" hangs this long
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.02)
        stopped.append(time.monotonic())
        time.sleep(max(0.0, deadline - time.monotonic()))

    with attempt_limits(AttemptLimits(abort=abort)), pytest.raises(FfmpegAborted) as caught:
        run_ffmpeg([ffmpeg, *ENDLESS], on_progress=stuck_progress, duration=None)
    assert caught.value.reason == "heartbeat lease lost"
    assert seen, "the endless ffmpeg was not found among this process's children"
    assert stopped and stopped[0] - asked_at < 1.5, "ffmpeg ran on while the caller's thread was stuck"
