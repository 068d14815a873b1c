"""The embedded stack: `framefleet up` runs redis, api, a cpu worker, beat and Flower as child processes.

Each child is `python -m framefleet.cli.main <service>` in its own process group, so the terminal's
Ctrl-C reaches only the supervisor, which then stops every group in order (SIGTERM, then SIGKILL after a
grace period; Redis last so the others can disconnect cleanly). The worker's grace outlasts its own
graceful shutdown (FRAMEFLEET_SHUTDOWN_GRACE_SECONDS), so a running job can finish or be handed back
first. Children also ask the kernel to send them SIGTERM if the supervisor itself dies (Linux), so even a
killed supervisor leaves no orphans.

Policy when a child dies unexpectedly: the supervisor reports it with the end of that child's log, stops
everything and exits non-zero. Restarting in place would hide crash loops in a development stack; a
production deployment restarts services with its own process manager.

A pid file (<data_dir>/framefleet.pid) keeps two stacks from sharing one data directory.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Annotated, Any, TextIO
from urllib.parse import urlsplit

import httpx
import typer

from framefleet.cli import monitoring
from framefleet.cli.admin import display_url
from framefleet.cli.client import demo_key_path
from framefleet.config import Settings, get_settings
from framefleet.redis_url import parse_redis_url

PID_FILE = "framefleet.pid"
DEMO_TENANT = "demo"
SUPERVISOR_ENV = "FRAMEFLEET_SUPERVISOR_PID"
WORKER_READY = "worker ready."
TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 10.0
# Past its own shutdown grace a worker still stops ffmpeg, hands the job back and lets Celery exit.
WORKER_STOP_MARGIN_SECONDS = 5.0


class StackError(RuntimeError):
    """The stack could not start, or a part of it failed."""


class AlreadyRunning(StackError):
    """Another live supervisor holds this data directory."""


# ---------------------------------------------------------------- pid file


def pid_file_path(settings: Settings) -> Path:
    return settings.data_dir / PID_FILE


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None when it is missing or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def is_framefleet_process(pid: int) -> bool:
    """Whether `pid` is alive and runs FrameFleet (a reused pid of another program does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True  # no /proc: a live pid is the best evidence available
    try:
        return b"framefleet" in cmdline.read_bytes()
    except OSError:
        return False


def acquire_pid_file(path: Path) -> None:
    """Claim the data directory for this process; refuses if a live FrameFleet supervisor holds it."""
    pid = read_pid(path)
    if pid is not None and pid != os.getpid() and is_framefleet_process(pid):
        raise AlreadyRunning(
            f"FrameFleet is already running from this data directory (pid {pid}, see {path})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def release_pid_file(path: Path) -> None:
    """Remove the pid file if it is still ours."""
    if read_pid(path) == os.getpid():
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- children


def stop_grace(name: str, settings: Settings, default: float = STOP_GRACE_SECONDS) -> float:
    """Seconds a child gets between SIGTERM and SIGKILL: `default`, the worker its shutdown grace and more."""
    if name == "worker":
        return max(default, settings.shutdown_grace_seconds + WORKER_STOP_MARGIN_SECONDS)
    return default


def die_with_parent() -> None:
    """In a supervised child: have the kernel send SIGTERM when the supervisor dies (Linux only)."""
    expected = os.environ.pop(SUPERVISOR_ENV, None)
    if not expected or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != expected:
        # The supervisor died before the request above took effect.
        raise SystemExit("supervisor is gone; not starting")


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None
    reaped: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> bool:
        """Whether the child has ended, without reaping it (its pid, and so its group id, stay reserved)."""
        if self.proc is None or self.reaped:
            return True
        if self.proc.returncode is not None:
            return True
        if hasattr(os, "waitid"):
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            return info is not None
        return self.proc.poll() is not None

    def exit_code(self) -> int | None:
        """The exit status once ended (negative: killed by that signal), still without reaping."""
        if self.proc is None:
            return None
        if self.proc.returncode is not None or not hasattr(os, "waitid"):
            return self.proc.poll()
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.proc.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None or self.reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def reap(self, timeout: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if not self.reaped:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
            self.reaped = self.proc.returncode is not None
        return self.proc.returncode


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _local_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def write_secret(path: Path, text: str) -> None:
    """Write a file readable only by its owner (mode 0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_demo_key(settings: Settings) -> str:
    """The demo tenant's API key: the one kept in <data_dir>/demo-api-key if still valid, else a new one."""
    from framefleet.db.session import session_scope
    from framefleet.keys import authenticate, create_key

    path = demo_key_path(settings)
    try:
        kept = path.read_text().strip()
    except OSError:
        kept = ""
    if kept:
        with session_scope(settings.database_url) as session:
            if authenticate(session, kept) is not None:
                return kept
    with session_scope(settings.database_url) as session:
        raw, _ = create_key(session, tenant=DEMO_TENANT, role="admin")
    write_secret(path, raw)
    return raw


def prepare_storage(settings: Settings) -> list[Path]:
    """Create every storage root with the demo tenant's folders in it (a fresh data directory has none,
    and a missing root makes /readyz answer 503); returns the demo tenant's folders."""
    from framefleet.storage.namespace import namespace_for

    folders = namespace_for(settings, DEMO_TENANT).local_roots(write=True)
    for folder in [*settings.storage_roots, *folders]:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


# `framefleet up` serves the worker's, the beat's and the webhook sender's /metrics on these ports unless the
# settings name others (0 there turns one off): a local Prometheus can then scrape the whole stack
# (docs/observability.md).
UP_METRICS_PORTS = {"worker": 9101, "beat": 9102, "webhooks": 9103}


def metrics_ports(settings: Settings) -> dict[str, int]:
    """Metrics port per child of the embedded stack (0: not served)."""
    return {
        name: getattr(settings, f"{name}_metrics_port")
        if f"{name}_metrics_port" in settings.model_fields_set
        else default
        for name, default in UP_METRICS_PORTS.items()
    }


def child_env(settings: Settings) -> dict[str, str]:
    """Environment for the children: the supervisor's settings, pinned, so every child agrees."""
    env = dict(os.environ)
    ports = metrics_ports(settings)
    env.update(
        {
            "FRAMEFLEET_DATA_DIR": str(settings.data_dir),
            "FRAMEFLEET_DATABASE_URL": settings.database_url,
            "FRAMEFLEET_REDIS_URL": settings.redis_url,
            "FRAMEFLEET_STORAGE_ROOTS": json.dumps([str(p) for p in settings.storage_roots]),
            "FRAMEFLEET_OUTPUT_ROOT": settings.output_root,
            "FRAMEFLEET_API_HOST": settings.api_host,
            "FRAMEFLEET_API_PORT": str(settings.api_port),
            "FRAMEFLEET_PUBLIC_URL": settings.public_url,
            "FRAMEFLEET_FLOWER_PORT": str(settings.flower_port),
            **{f"FRAMEFLEET_{name.upper()}_METRICS_PORT": str(port) for name, port in ports.items()},
            # The supervisor's stop grace for the worker is derived from this one.
            "FRAMEFLEET_SHUTDOWN_GRACE_SECONDS": str(settings.shutdown_grace_seconds),
            "FRAMEFLEET_LOG_FORMAT": "console",
            "PYTHONUNBUFFERED": "1",
            SUPERVISOR_ENV: str(os.getpid()),
        }
    )
    return env


# ---------------------------------------------------------------- the stack


def _interrupt_main_thread() -> None:
    """Raise KeyboardInterrupt in the main thread, waking it from a blocking read (a real SIGINT on POSIX)."""
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
    else:
        _thread.interrupt_main()


class EmbeddedStack:
    """Redis, API, a CPU worker, beat and Flower as supervised child processes.

    Use as `with EmbeddedStack(settings) as stack: ...` (stack.api_url, stack.api_key) from the main
    thread. Inside the block, SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so Ctrl-C, a kill and a
    closed terminal all leave through the block's exit, which stops every child. `grace_seconds` is how long a
    child may take to stop before it is killed; the worker gets longer (see stop_grace).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        out: TextIO | None = None,
        echo_logs: bool = True,
        start_timeout: float = 180.0,
        grace_seconds: float = STOP_GRACE_SECONDS,
        monitoring: bool = False,
    ) -> None:
        self.settings = settings or get_settings()
        self.monitoring = monitoring
        self.prometheus_url = f"http://127.0.0.1:{self.settings.prometheus_port}"
        self.out = out or sys.stdout
        self.echo_logs = echo_logs
        self.start_timeout = start_timeout
        self.grace_seconds = grace_seconds
        self.api_key = ""
        self.sample_clip: Path | None = None
        self.failure: Child | None = None
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._hurry = False
        self._started = False
        self._saved_handlers: dict[int, Any] = {}
        host = _local_host(self.settings.api_host)
        self.api_url = f"http://{host}:{self.settings.api_port}"
        self.docs_url = f"{self.api_url}/docs"
        self.flower_url = f"http://127.0.0.1:{self.settings.flower_port}"
        if parse_redis_url(self.settings.redis_url).is_sentinel:
            raise StackError(
                "the embedded stack runs its own Redis: FRAMEFLEET_REDIS_URL must be a redis:// URL, "
                "not a Sentinel group"
            )
        redis = urlsplit(self.settings.redis_url)
        self.redis_host = _local_host(redis.hostname or "127.0.0.1")
        self.redis_port = redis.port or 6379
        self.pid_file = pid_file_path(self.settings)
        self.key_file = demo_key_path(self.settings)
        self.log_dir = self.settings.data_dir / "logs"

    # -- context manager

    def __enter__(self) -> EmbeddedStack:
        self._install_signal_handlers()
        try:
            self.start()
        except BaseException:
            self._restore_signal_handlers()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            self._restore_signal_handlers()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def _terminate(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        # SIGINT too, explicitly: a stack started from a script (`framefleet up &`) or under nohup inherits
        # SIGINT ignored, and Ctrl-C would then do nothing.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._saved_handlers[signum] = signal.signal(signum, _terminate)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._saved_handlers.items():
            signal.signal(signum, handler)
        self._saved_handlers.clear()

    # -- start

    def start(self) -> None:
        """Migrate the database, start every service and wait until they answer."""
        if self.monitoring and monitoring.prometheus_binary() is None:
            raise StackError(monitoring.MISSING_SERVER)
        acquire_pid_file(self.pid_file)
        self._started = True
        try:
            self._preflight()
            self._say("Migrating the database ...")
            from framefleet.db.migrate import upgrade

            upgrade(self.settings.database_url)
            self.api_key = ensure_demo_key(self.settings)
            from framefleet.cli.demo import make_demo_clip

            # A clip in the demo tenant's folder (made once), which the README tour and examples/ use.
            self.sample_clip = make_demo_clip(self.settings)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            names = "redis, api, worker, beat, the webhook sender and flower"
            self._say(f"Starting {names} (logs in {self.log_dir}) ...")
            self._spawn("redis")
            self._wait_for("redis", lambda: port_open(self.redis_host, self.redis_port))
            for name in ("api", "worker", "beat", "webhooks", "flower"):
                self._spawn(name)
            self._wait_for("api", self._api_healthy)
            self._wait_for("flower", lambda: port_open("127.0.0.1", self.settings.flower_port))
            self._wait_for("worker", self.children["worker"].ready.is_set)
            if self.monitoring:
                # Last: its first scrapes find every target up.
                self._spawn("prometheus")
                self._wait_for("prometheus", self._prometheus_ready)
        except BaseException:
            self.stop()
            raise

    def _preflight(self) -> None:
        for what, host, port in (
            ("redis", self.redis_host, self.redis_port),
            ("api", _local_host(self.settings.api_host), self.settings.api_port),
            ("flower", "127.0.0.1", self.settings.flower_port),
            *((("prometheus", "127.0.0.1", self.settings.prometheus_port),) if self.monitoring else ()),
            *(
                (f"{name} metrics", _local_host(self.settings.metrics_host), port)
                for name, port in metrics_ports(self.settings).items()
                if port
            ),
        ):
            if port_open(host, port):
                raise StackError(
                    f"port {port} (for {what}) is already in use on {host}; free it or set another"
                )

    def _argv(self, name: str) -> list[str]:
        base = [sys.executable, "-m", "framefleet.cli.main"]
        if name == "worker":
            return [*base, "worker", "--pool", "cpu", "--name", "cpu@%h"]
        if name == "webhooks":
            return [*base, "webhooks", "worker"]
        return [*base, name]

    def _spawn(self, name: str) -> Child:
        child = Child(name=name, argv=self._argv(name), log_path=self.log_dir / f"{name}.log")
        child.proc = subprocess.Popen(
            child.argv,
            env=child_env(self.settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children[name] = child
        child.reader = threading.Thread(target=self._pump, args=(child,), name=f"log-{name}", daemon=True)
        child.reader.start()
        return child

    def _pump(self, child: Child) -> None:
        """Copy a child's output to its log file (and the console), watching for the worker's ready line."""
        assert child.proc is not None and child.proc.stdout is not None
        stream: IO[bytes] = child.proc.stdout
        with child.log_path.open("wb") as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                text = raw.decode(errors="replace").rstrip()
                child.tail.append(text)
                if WORKER_READY in text:
                    child.ready.set()
                if self.echo_logs:
                    self._write(f"{child.name:<8} | {text}\n")

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.out.write(text)
                self.out.flush()
            except (OSError, ValueError):
                pass  # the console went away (closed pipe); the log files still have everything

    def print_block(self, text: str) -> None:
        """Print lines to the stack's console without interleaving them with the children's output."""
        self._write(text.rstrip("\n") + "\n")

    def _say(self, text: str) -> None:
        self._write(f"{'up':<6} | {text}\n" if self.echo_logs else f"{text}\n")

    def _api_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _prometheus_ready(self) -> bool:
        try:
            return httpx.get(f"{self.prometheus_url}/-/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _wait_for(self, name: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            dead = self.failed_child()
            if dead is not None:
                raise StackError(self.describe_failure(dead, "while starting"))
            if check():
                return
            time.sleep(0.1)
        raise StackError(
            f"{name} did not become ready within {self.start_timeout:.0f}s (log: {self.log_dir})"
        )

    # -- running

    def failed_child(self) -> Child | None:
        """The first child that has exited, if any."""
        return next((c for c in self.children.values() if c.exited()), None)

    def wait(self, timeout: float | None = None) -> Child | None:
        """Block until a child exits (returned) or `timeout` passes (None returned)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            dead = self.failed_child()
            if dead is not None:
                return dead
            time.sleep(0.2)
        return None

    @contextlib.contextmanager
    def interrupt_on_failure(self) -> Iterator[None]:
        """Within the block, a child's death raises KeyboardInterrupt in the main thread; see .failure."""
        # A client blocked on the stack (an event stream, say) would otherwise wait forever for a dead worker.
        done = threading.Event()
        guard = threading.Lock()

        def _watch() -> None:
            while not done.is_set():
                dead = self.wait(timeout=0.5)
                with guard:
                    if dead is not None and not done.is_set():
                        self.failure = dead
                        _interrupt_main_thread()
                        return

        watcher = threading.Thread(target=_watch, name="stack-watchdog", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            with guard:
                done.set()
            watcher.join(2.0)

    def describe_failure(self, child: Child, when: str = "unexpectedly") -> str:
        """A report of a dead child: its exit code and the last lines it wrote."""
        code = child.exit_code()
        if child.reader is not None:
            child.reader.join(2.0)
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        tail = "\n".join(f"    {line}" for line in list(child.tail)[-15:])
        return f"{child.name} {how} {when}; last output ({child.log_path}):\n{tail}"

    def summary(self) -> list[str]:
        """The readable start-up lines: where everything is."""
        s = self.settings
        host = _local_host(s.metrics_host)
        metrics = [f"{self.api_url}/metrics"] + [
            f"http://{host}:{port}/metrics" for port in metrics_ports(s).values() if port
        ]
        monitoring_lines = []
        if self.monitoring:
            rules = monitoring.rule_files()
            loaded = f"rules from {rules[0].parent}" if rules else "no rules: no config/ in this installation"
            monitoring_lines = [
                f"  Prometheus {self.prometheus_url} (scraping the stack; {loaded})",
                "            Grafana is not started: import config/grafana/dashboards into your own, "
                "or use the compose monitoring profile",
            ]
        return [
            "FrameFleet is up.",
            f"  API       {self.api_url}",
            f"  API docs  {self.docs_url}",
            f"  Flower    {self.flower_url}",
            f"  Metrics   {', '.join(metrics)}",
            *monitoring_lines,
            f"  Data      {s.data_dir}",
            f"  Database  {display_url(s.database_url)}",
            f"  Media     {s.storage_roots[0]}",
            f"  Sample    {self.sample_clip}",
            f"  Redis     {display_url(s.redis_url)}",
            f"  Logs      {self.log_dir}",
            f"  API key   {self.api_key}",
            f"            (tenant '{DEMO_TENANT}'; kept in {self.key_file}, mode 0600; the database holds "
            "only its hash)",
        ]

    # -- stop

    def stop(self) -> None:
        """Stop every child (SIGTERM to its group, SIGKILL after its grace period); release the pid file."""
        if not self._started:
            return
        self._started = False
        hurry_handlers = self._hurry_on_signals()
        try:
            others = [c for name, c in self.children.items() if name != "redis"]
            self._stop_group_of(others)
            self._stop_group_of([c for name, c in self.children.items() if name == "redis"])
            for child in self.children.values():
                if child.reader is not None:
                    child.reader.join(2.0)
        finally:
            for signum, handler in hurry_handlers.items():
                signal.signal(signum, handler)
            release_pid_file(self.pid_file)

    def _hurry_on_signals(self) -> dict[int, Any]:
        """While stopping, a second Ctrl-C or SIGTERM skips the grace period instead of aborting the stop."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def _hurry(signum: int, frame: FrameType | None) -> None:
            self._hurry = True

        return {sig: signal.signal(sig, _hurry) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def _stop_group_of(self, children: list[Child]) -> None:
        running = [c for c in children if not c.exited()]
        for child in running:
            child.signal_group(signal.SIGTERM)
        started = time.monotonic()
        deadlines = {c.name: started + stop_grace(c.name, self.settings, self.grace_seconds) for c in running}
        while running and not self._hurry:
            now = time.monotonic()
            for child in running:
                # Killed at its own deadline, not when the slowest child (the worker) is done.
                if now >= deadlines[child.name]:
                    child.signal_group(signal.SIGKILL)
            running = [c for c in running if not c.exited() and now < deadlines[c.name]]
            if running:
                time.sleep(0.1)
        for child in children:
            # Also sweeps what a child left behind in its group (pool processes, encoders); the group id
            # cannot have been reused because the leader is not reaped yet.
            child.signal_group(signal.SIGKILL)
        for child in children:
            child.reap()


def run_up(settings: Settings | None = None, *, monitoring: bool = False) -> int:
    """`framefleet up`: run the stack in the foreground until Ctrl-C, SIGTERM, or a child's failure.
    `monitoring`: also a Prometheus scraping it (cli/monitoring.py)."""
    settings = settings or get_settings()
    try:
        stack = EmbeddedStack(settings, monitoring=monitoring)
        with stack:
            stack.print_block("\n".join([*stack.summary(), "Press Ctrl-C to stop."]))
            dead = stack.wait()
            if dead is not None:
                print(f"\n{stack.describe_failure(dead)}\nStopping everything.", file=sys.stderr, flush=True)
                return 1
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
        return 0
    except StackError as exc:
        print(f"framefleet up: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def up(
    monitoring: Annotated[
        bool,
        typer.Option(
            "--monitoring",
            help="also run the system's Prometheus (127.0.0.1:FRAMEFLEET_PROMETHEUS_PORT) scraping the "
            "stack, "
            "with the shipped alert rules",
        ),
    ] = False,
) -> None:
    """Run the whole stack on this machine (redis, api, worker, beat, webhook sender, flower)."""
    code = run_up(monitoring=monitoring)
    if code:
        raise typer.Exit(code)
