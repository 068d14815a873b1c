"""The ffmpeg process edge: run it in its own process group, stream progress, cancel and time out for real.

Whatever happens on the caller's side (cancel, timeout, an exception in a progress callback), the whole
process group is gone before run_ffmpeg returns or raises: no zombie, no orphan encoder left burning CPU.
On Linux ffmpeg also asks the kernel for SIGKILL when the process that started it dies, so a worker killed
with SIGKILL (or by the OOM killer) cannot leave an encoder running beside the attempt that replaces it.

The worker wraps each attempt in `attempt_limits(...)`; every ffmpeg the attempt runs then honours the
attempt's limits without the pipeline passing them along: one deadline for the whole attempt (fixed from
the media duration by the first ffmpeg), stall detection, and an abort check (shutdown, lost lease), asked
on a thread of its own so that a caller stuck in network I/O cannot keep a fenced encode running.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.media.progress import Progress, ProgressParser
from framefleet.observability import usage as attempt_usage

STDERR_TAIL_BYTES = 8192
TERM_GRACE_SECONDS = 1.0
# Encoder libraries that print their own banners get the same "errors only" treatment as ffmpeg.
QUIET_ENV = {"SVT_LOG": "1"}


PR_SET_PDEATHSIG = 1


class FfmpegAborted(Exception):
    """The attempt's abort check stopped ffmpeg (the worker is shutting down, or lost its lease)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class AttemptLimits:
    """Limits every ffmpeg of one attempt honours; see attempt_limits()."""

    # Maps the media duration (seconds, or None when unknown) to the attempt's run-time limit.
    limit_for: Callable[[float | None], float] | None = None
    stall_timeout: float | None = None
    # Returns a reason to stop (checked every poll), or None to carry on.
    abort: Callable[[], str | None] | None = None
    started: float = field(default_factory=time.monotonic)
    limit_seconds: float | None = None
    deadline: float | None = None

    def fix_deadline(self, duration: float | None) -> float | None:
        """The attempt's deadline (monotonic), fixed by the first ffmpeg from its media duration."""
        if self.deadline is None and self.limit_for is not None:
            self.limit_seconds = self.limit_for(duration)
            self.deadline = self.started + self.limit_seconds
        return self.deadline


_attempt: ContextVar[AttemptLimits | None] = ContextVar("framefleet_attempt_limits", default=None)


@contextlib.contextmanager
def attempt_limits(limits: AttemptLimits) -> Iterator[AttemptLimits]:
    """Within the block, run_ffmpeg applies `limits` on top of its own arguments."""
    token = _attempt.set(limits)
    try:
        yield limits
    finally:
        _attempt.reset(token)


def _load_libc() -> tuple[Callable[..., int], Callable[..., int]] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.signal.restype = ctypes.c_void_p
        return libc.prctl, libc.signal
    except (OSError, AttributeError):
        return None


# Resolved once, before any fork: the child side of Popen must not load libraries.
_LIBC = _load_libc()
SIG_DFL = 0


@functools.cache
def _helper(name: str, option: bytes) -> str | None:
    """The path of the helper binary `name` when its --help lists `option`, else None. Asked once."""
    path = shutil.which(name)
    if path is None or not sys.platform.startswith("linux"):
        return None
    try:
        shown = subprocess.run([path, "--help"], capture_output=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if option in shown else None


def _spawn(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """The argument list to start and the preexec hook: ffmpeg dies with the thread starting it, and gets
    default SIGTERM/SIGINT handling.

    Any preexec hook makes Python fork the whole calling process (page tables, copy-on-write faults)
    rather than vfork: from a pool process of ~150 MB that costs tens of milliseconds per start, more than
    a short job's encode. So where they exist, small exec'd helpers do the hook's work and Python starts
    them with vfork: util-linux's `setpriv --pdeathsig` (2.33+) sets the death signal, which survives the
    execs after it, and, only when this process ignores SIGTERM or SIGINT (a worker's pool process does;
    an ignored signal stays ignored across exec), coreutils' `env --default-signal` (8.31+) restores them.
    One thing the hook did that they cannot: refuse to start when the parent died before the request
    took effect. That leaves the instant between vfork and setpriv's prctl; an encoder started then by a
    worker killed then runs on to its input's end, into a dead attempt's folder that nothing publishes.
    """
    setpriv = _helper("setpriv", b"--pdeathsig")
    if setpriv is None:
        return argv, _die_with_parent(os.getpid())
    if shutil.which(argv[0]) is None:
        # A helper would report it as its own failed exec; say it as a missing binary, as Popen does.
        raise OSError(errno.ENOENT, "not found or not executable", argv[0])
    spawned = [setpriv, "--pdeathsig", "KILL", "--"]
    if signal.SIG_IGN in (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)):
        env = _helper("env", b"--default-signal")
        if env is None:
            return argv, _die_with_parent(os.getpid())
        spawned += [env, "--default-signal=TERM,INT", "--"]
    return [*spawned, *argv], None


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec hook: SIGKILL this ffmpeg when the thread that started it dies (Linux), else None.

    It also gives ffmpeg default SIGTERM/SIGINT handling: an ignored signal would stay ignored across
    exec, making every stop wait for the SIGKILL.
    """
    if _LIBC is None:
        return None
    prctl, set_signal = _LIBC

    def hook() -> None:
        set_signal(int(signal.SIGTERM), SIG_DFL)
        set_signal(int(signal.SIGINT), SIG_DFL)
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before the request took effect

    return hook


@dataclass
class FfmpegResult:
    returncode: int
    stderr_tail: str
    canceled: bool
    timed_out: bool
    last_progress: Progress | None = None
    elapsed_seconds: float = 0.0
    pid: int = 0
    cpu_seconds: float = 0.0


_EOF = object()


def _read_progress(stream: IO[bytes], parser: ProgressParser, samples: queue.Queue[object]) -> None:
    try:
        for raw in stream:
            sample = parser.feed(raw.decode("utf-8", errors="replace"))
            if sample is not None:
                samples.put(sample)
    except (OSError, ValueError):
        pass  # the pipe was closed under us while stopping the process
    finally:
        samples.put(_EOF)


def _read_tail(stream: IO[bytes], tail: bytearray, lock: threading.Lock) -> None:
    try:
        while chunk := os.read(stream.fileno(), 4096):
            with lock:
                tail.extend(chunk)
                if len(tail) > STDERR_TAIL_BYTES:
                    del tail[: len(tail) - STDERR_TAIL_BYTES]
    except (OSError, ValueError):
        return


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once the leader has exited, WITHOUT reaping it: while it is a zombie its pid still names our
    process group, so signalling the group can never hit an unrelated process that reused the number."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the leader has exited (not reaped), False after `timeout` seconds.

    A pidfd wakes the moment it exits: ffmpeg's output pipes close as it exits, and a fixed sleep here
    added up to its length to every job. Polling where the kernel has no pidfd (Linux < 5.3)."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(proc.pid) if proc.returncode is None else None
    except (AttributeError, OSError):
        pidfd = None
    exited = select.poll()  # poll, not select: a busy process's descriptor numbers may pass 1024
    if pidfd is not None:
        exited.register(pidfd, select.POLLIN)
    try:
        while not _has_exited(proc):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pidfd is None:
                time.sleep(min(0.02, left))
            else:
                exited.poll(left * 1000)
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.returncode is not None:
        return  # reaped: the group id may already belong to someone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes]) -> float:
    """Reap the leader; return the CPU seconds (user + system) the kernel accounted for it.

    wait4 reports the leader together with every descendant it waited for (ffmpeg's own helpers), and
    only that process tree: unlike RUSAGE_CHILDREN deltas it stays exact when other threads of this
    process reap their own children meanwhile.
    """
    if proc.returncode is not None:
        return 0.0
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler): no accounting for it
        proc.wait()
        return 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return rusage.ru_utime + rusage.ru_stime


class _AbortWatch:
    """Asks the attempt's abort check on a thread of its own and stops ffmpeg the moment it answers.

    The caller's thread cannot be trusted to ask in time: its progress callback and cancel check write to and
    read from the network, and a worker cut off from the network loses its lease exactly while those calls
    hang (for as long as TCP and the clients' retries take). The lease is there so that the old encode stops
    before the reaper hands the job to another worker; a check that waits for a hung write lets both run.
    The abort check reads only this process's memory, so asking it from here is cheap and never blocks.
    An aborted encode is thrown away, so it is killed outright: a SIGTERM's grace would only let it run on
    into the moment the reaper may hand its job on.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], abort: Callable[[], str | None], interval: float
    ) -> None:
        self.reason: str | None = None
        self._proc = proc
        self._abort = abort
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ffmpeg-abort-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(self._interval):
            reason = self._abort()
            if reason is not None:
                self.reason = reason
                # The leader is not reaped before close() returns, so its group id is still ours.
                _kill_group(self._proc, signal.SIGKILL)
                return

    def close(self) -> None:
        """Stop watching; returns once the watcher can no longer signal the group (before it is reaped)."""
        self._done.set()
        self._thread.join()


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = TERM_GRACE_SECONDS) -> float:
    """SIGTERM the process group, SIGKILL it after `grace` seconds, then reap the leader.

    Returns the CPU seconds of the leader and the descendants it reaped (see _reap)."""
    if not _has_exited(proc):
        _kill_group(proc, signal.SIGTERM)
        if not _wait_exit(proc, grace):
            _kill_group(proc, signal.SIGKILL)
            _wait_exit(proc, 10.0)
    # Anything the leader started is still in the group; the unreaped leader keeps the id ours.
    _kill_group(proc, signal.SIGKILL)
    return _reap(proc)


def run_ffmpeg(
    argv: list[str],
    *,
    on_progress: Callable[[Progress], None] | None,
    duration: float | None,
    should_cancel: Callable[[], bool] | None = None,
    poll_interval: float = 0.2,
    timeout: float | None = None,
    stall_timeout: float | None = None,
) -> FfmpegResult:
    """Run ffmpeg (`argv` includes the binary), reporting progress; cancel or time out by killing its group.

    `on_progress` and `should_cancel` are called on the caller's thread, so an exception they raise
    propagates after the process group has been killed. A binary that cannot start raises
    JobFailure(hardware_unavailable). No progress for `stall_timeout` seconds (default: the attempt's)
    raises JobFailure(stalled); the attempt's abort check raises FfmpegAborted. Either way after the kill.
    """
    parser = ProgressParser(duration)
    samples: queue.Queue[object] = queue.Queue()
    tail = bytearray()
    tail_lock = threading.Lock()
    canceled = timed_out = False
    stalled: float | None = None
    aborted: str | None = None
    last: Progress | None = None
    started = time.monotonic()
    deadline = started + timeout if timeout is not None else None
    limits = _attempt.get()
    abort = None
    if limits is not None:
        attempt_deadline = limits.fix_deadline(duration)
        if attempt_deadline is not None:
            deadline = attempt_deadline if deadline is None else min(deadline, attempt_deadline)
        if stall_timeout is None:
            stall_timeout = limits.stall_timeout
        abort = limits.abort
    if stall_timeout is not None and stall_timeout <= 0:
        stall_timeout = None
    last_marker: tuple[int | None, float | None] | None = None
    moved_at = started

    try:
        spawned, preexec = _spawn(argv)
        proc = subprocess.Popen(
            spawned,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec,
            env={**os.environ, **{k: v for k, v in QUIET_ENV.items() if k not in os.environ}},
        )
    except OSError as exc:
        # This worker's ffmpeg is missing or not executable; another worker may have a working one.
        raise JobFailure(FailureClass.hardware_unavailable, f"cannot start {argv[0]}: {exc}") from None
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_read_progress, args=(proc.stdout, parser, samples), daemon=True),
        threading.Thread(target=_read_tail, args=(proc.stderr, tail, tail_lock), daemon=True),
    ]
    for reader in readers:
        reader.start()
    watch = _AbortWatch(proc, abort, poll_interval) if abort is not None else None
    try:
        progress_open = True
        cancel_due = started
        while True:
            if not progress_open and _has_exited(proc):
                break
            if should_cancel is not None and time.monotonic() >= cancel_due:
                # At most once per poll interval: progress samples wake this loop too, and each ask is a
                # round trip to Redis.
                cancel_due = time.monotonic() + poll_interval
                if should_cancel():
                    canceled = True
                    break
            if abort is not None and (aborted := abort()) is not None:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if stall_timeout is not None and progress_open and now - moved_at >= stall_timeout:
                stalled = now - moved_at
                break
            wait = poll_interval
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            if not progress_open:
                # Progress pipe closed: ffmpeg is exiting; wait for it without reaping (see _has_exited).
                _wait_exit(proc, wait)
                continue
            try:
                item = samples.get(timeout=wait)
            except queue.Empty:
                continue
            while True:
                if item is _EOF:
                    progress_open = False
                elif isinstance(item, Progress):
                    last = item
                    marker = (item.frame, item.out_time)
                    if marker != last_marker:
                        # ffmpeg repeats its last block while stuck: only a change counts as progress.
                        last_marker, moved_at = marker, time.monotonic()
                    if on_progress is not None:
                        on_progress(item)
                try:
                    item = samples.get_nowait()
                except queue.Empty:
                    break
    finally:
        # Runs on every exit path: a finished ffmpeg is just reaped, a live one is stopped first.
        if watch is not None:
            watch.close()
            aborted = aborted or watch.reason
        cpu_seconds = stop_process_group(proc)
        usage = attempt_usage.current()
        if usage is not None:
            usage.cpu_seconds += cpu_seconds
            usage.ffmpeg_wall_seconds += time.monotonic() - started
            if last is not None and last.frame:
                usage.frames += last.frame
            if last is not None and last.out_time:
                usage.media_seconds += last.out_time
        for reader in readers:
            reader.join(timeout=2.0)
        for pipe in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
    with tail_lock:
        stderr_tail = tail.decode("utf-8", errors="replace")
    if aborted is not None:
        raise FfmpegAborted(aborted)
    if stalled is not None:
        raise JobFailure(FailureClass.stalled, f"ffmpeg made no progress for {stalled:.0f}s and was stopped")
    return FfmpegResult(
        returncode=proc.returncode,
        stderr_tail=stderr_tail,
        canceled=canceled,
        timed_out=timed_out,
        # Not parser.last: a stopped ffmpeg still prints a final "progress=end" block that claims 100 %.
        last_progress=last,
        elapsed_seconds=round(time.monotonic() - started, 3),
        pid=proc.pid,
        cpu_seconds=round(cpu_seconds, 3),
    )
