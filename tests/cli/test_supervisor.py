"""`framefleet up`: the whole embedded stack as child processes, stopped without leaving orphans.

Each test starts the real supervisor (redis, api, worker, beat, flower) on free ports with its own data
directory, and records every descendant process from /proc to check that none survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from framefleet.cli.supervisor import ensure_demo_key, prepare_storage, write_secret
from framefleet.config import Settings
from tests.conftest import fresh_stack_settings, make_clip
from tests.services import free_port, wait_until

START_TIMEOUT = 150
STOP_TIMEOUT = 60
READY_LINE = "Press Ctrl-C to stop."

Identity = tuple[int, int]  # (pid, start time): a pid alone could be reused by an unrelated process


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> set[Identity]:
    """Every live process below `root`, found by walking /proc's parent links."""
    parents: dict[int, list[Identity]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None and info[0] != "Z":
                parents.setdefault(info[1], []).append((int(entry.name), info[2]))
    found: set[Identity] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def alive(identity: Identity) -> bool:
    info = _stat(identity[0])
    return info is not None and info[0] != "Z" and info[2] == identity[1]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    data_dir: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['FRAMEFLEET_API_PORT']}"

    def wait_started(self) -> None:
        try:
            wait_until(lambda: READY_LINE in self.output, START_TIMEOUT, "framefleet up", self.proc)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n--- output ---\n{self.output[-6000:]}")

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"framefleet up did not stop within {STOP_TIMEOUT}s\n{self.output[-4000:]}")


@pytest.fixture()
def up_env(tmp_path: Path, own_database_url: str) -> dict[str, str]:
    """A stack of its own: fresh data dir, free ports and an empty database on the suite's kind of server
    (its beat would otherwise reconcile, and its worker run, other tests' jobs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEFLEET_")}
    env.update(
        {
            "FRAMEFLEET_ENV": "test",
            "FRAMEFLEET_DATA_DIR": str(tmp_path / "data"),
            "FRAMEFLEET_DATABASE_URL": own_database_url,
            "FRAMEFLEET_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "FRAMEFLEET_API_PORT": str(free_port()),
            "FRAMEFLEET_FLOWER_PORT": str(free_port()),
            "FRAMEFLEET_WORKER_METRICS_PORT": str(free_port()),
            "FRAMEFLEET_BEAT_METRICS_PORT": str(free_port()),
            "FRAMEFLEET_WEBHOOKS_METRICS_PORT": str(free_port()),
        }
    )
    return env


StartUp = Callable[..., "Up"]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture()
def start_up(tmp_path: Path) -> Iterator[StartUp]:
    """Starts `framefleet up` processes; whatever a failing test leaves running is killed afterwards."""
    started: list[Up] = []

    def _start(env: dict[str, str], *args: str, sigint_ignored: bool = False) -> Up:
        """`sigint_ignored`: started as `cmd &` from a script or under nohup, which inherit SIGINT ignored."""
        log = tmp_path / f"up-{len(started)}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "framefleet.cli.main", "up", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        handle.close()
        up = Up(proc=proc, log=log, env=env, data_dir=Path(env["FRAMEFLEET_DATA_DIR"]))
        started.append(up)
        return up

    yield _start
    for up in started:
        if up.proc.poll() is None:
            left = descendants(up.proc.pid)
            up.proc.send_signal(signal.SIGTERM)
            try:
                up.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                up.proc.kill()
            for identity in left:
                if alive(identity):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(identity[0], signal.SIGKILL)


def framefleet(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framefleet.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_all_gone(processes: set[Identity]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in processes):
        time.sleep(0.1)
    left = [f"{pid}: {cmdline(pid)}" for pid, start in processes if alive((pid, start))]
    assert not left, f"processes left behind: {left}"


def test_up_serves_and_stops_cleanly_on_ctrl_c(
    start_up: StartUp, up_env: dict[str, str], ffmpeg: str
) -> None:
    from framefleet.db.session import session_scope
    from framefleet.keys import authenticate

    # Started the way a script's `framefleet up &` starts it: Ctrl-C (SIGINT) must still stop it.
    up = start_up(up_env, sigint_ignored=True)
    up.wait_started()
    out = up.output
    data = up.data_dir.resolve()
    for expected in (
        f"API       {up.api_url}",
        f"API docs  {up.api_url}/docs",
        f"Flower    http://127.0.0.1:{up_env['FRAMEFLEET_FLOWER_PORT']}",
        f"Metrics   {up.api_url}/metrics, "
        f"http://127.0.0.1:{up_env['FRAMEFLEET_WORKER_METRICS_PORT']}/metrics, "
        f"http://127.0.0.1:{up_env['FRAMEFLEET_BEAT_METRICS_PORT']}/metrics, "
        f"http://127.0.0.1:{up_env['FRAMEFLEET_WEBHOOKS_METRICS_PORT']}/metrics",
        f"Data      {data}",
        f"Media     {data / 'media'}",
        "Database  ",
    ):
        assert expected in out, out

    # The demo key: printed, kept mode 0600, and accepted by the database (which holds only its hash).
    key_file = data / "demo-api-key"
    key = key_file.read_text().strip()
    assert f"API key   {key}" in out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with session_scope(up_env["FRAMEFLEET_DATABASE_URL"]) as session:
        principal = authenticate(session, key)
    assert principal is not None and principal.tenant == "demo"

    pid_file = data / "framefleet.pid"
    assert pid_file.read_text().strip() == str(up.proc.pid)
    assert httpx.get(f"{up.api_url}/healthz", timeout=5).status_code == 200
    # A fresh data directory gets its media root and the demo tenant's folder, so storage is ready.
    assert (data / "media" / "tenants" / "demo").is_dir()
    ready = httpx.get(f"{up.api_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    # The worker, the beat and the webhook sender serve their series (on the ports set here; 9101-9103 by
    # default).
    for port, series in (
        (up_env["FRAMEFLEET_WORKER_METRICS_PORT"], "framefleet_worker_slots"),
        (up_env["FRAMEFLEET_BEAT_METRICS_PORT"], "framefleet_beat_leader"),
        (up_env["FRAMEFLEET_WEBHOOKS_METRICS_PORT"], "framefleet_webhook_deliveries_total"),
    ):
        wait_until(
            lambda port=port, series=series: (
                series in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            ),
            30,
            f"{series} on port {port}",
        )
    children = descendants(up.proc.pid)
    names = " | ".join(cmdline(pid) for pid, _ in children)
    for service in (
        "redis-server",
        "main api",
        "main worker",
        "main beat",
        "main webhooks worker",
        "main flower",
    ):
        assert service in names, names

    # A second supervisor on the same data directory refuses to start.
    second = framefleet("up", env=up_env, timeout=60)
    assert second.returncode == 1
    assert f"already running from this data directory (pid {up.proc.pid}" in second.stderr

    # The client commands against the running stack: submit --wait, get, and cancel of a finished job.
    # Where the README tour puts a file: the demo tenant's own folder.
    clip = make_clip(ffmpeg, data / "media" / "tenants" / "demo" / "tiny.mp4", seconds=1, size="160x120")
    spec = {
        "input": clip.as_uri(),
        "outputs": [{"name": "small", "container": "mp4", "video": {"codec": "h264", "preset": "ultrafast"}}],
        "quality": {"metrics": ["psnr"]},
    }
    spec_path = up.data_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    client_env = {**up_env, "FRAMEFLEET_API_URL": up.api_url}
    submitted = framefleet("submit", str(spec_path), "--wait", env=client_env)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "succeeded." in submitted.stdout
    assert "small" in submitted.stdout and " dB" in submitted.stdout
    job_id = submitted.stdout.split()[1]
    got = framefleet("get", job_id, env=client_env)
    assert got.returncode == 0, got.stderr
    job = json.loads(got.stdout)
    assert job["state"] == "succeeded"
    assert job["outputs"][0]["uri"].endswith("small.mp4")
    canceled = framefleet("cancel", job_id, env=client_env)
    assert canceled.returncode == 1  # the API refused (docs/cli.md: exit codes)
    assert "already ended" in canceled.stderr
    # The output through the API, byte for byte; following a finished job prints its result at once.
    target = up.data_dir / "downloaded.mp4"
    fetched = framefleet("jobs", "download", job_id, "small", "--to", str(target), env=client_env)
    assert fetched.returncode == 0, fetched.stderr
    assert target.read_bytes() == Path(job["outputs"][0]["uri"].removeprefix("file://")).read_bytes()
    watched = framefleet("watch", job_id, "-o", "json", env=client_env)
    assert watched.returncode == 0 and json.loads(watched.stdout)["state"] == "succeeded"

    children |= descendants(up.proc.pid)
    up.proc.send_signal(signal.SIGINT)
    assert up.wait_exit() == 0, up.output[-4000:]
    assert "Stopped." in up.output
    assert_all_gone(children)
    assert not pid_file.exists()


def test_up_replaces_a_stale_pid_file_and_stops_everything_when_a_child_dies(
    start_up: StartUp, up_env: dict[str, str]
) -> None:
    data = Path(up_env["FRAMEFLEET_DATA_DIR"])
    data.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (data / "framefleet.pid").write_text(f"{gone.pid}\n")

    up = start_up(up_env)
    up.wait_started()
    assert (data / "framefleet.pid").read_text().strip() == str(up.proc.pid)
    children = descendants(up.proc.pid)
    (flower,) = [pid for pid, _ in children if "framefleet.cli.main flower" in cmdline(pid)]

    os.kill(flower, signal.SIGKILL)
    assert up.wait_exit() == 1
    assert "flower was killed by signal 9 unexpectedly" in up.output
    assert_all_gone(children)
    assert not (data / "framefleet.pid").exists()


def test_up_refuses_a_port_in_use(up_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(up_env["FRAMEFLEET_API_PORT"])))
        busy.listen()
        result = framefleet("up", env=up_env, timeout=60)
    assert result.returncode == 1
    assert f"port {up_env['FRAMEFLEET_API_PORT']} (for api) is already in use" in result.stderr
    assert not (Path(up_env["FRAMEFLEET_DATA_DIR"]) / "framefleet.pid").exists()


def test_up_monitoring_runs_a_prometheus_that_scrapes_the_stack(
    start_up: StartUp, up_env: dict[str, str]
) -> None:
    env = {
        **up_env,
        "FRAMEFLEET_PROMETHEUS_PORT": str(free_port()),
        "FRAMEFLEET_PROMETHEUS_SCRAPE_INTERVAL_SECONDS": "1",
    }
    up = start_up(env, "--monitoring")
    up.wait_started()
    prometheus = f"http://127.0.0.1:{env['FRAMEFLEET_PROMETHEUS_PORT']}"
    assert f"Prometheus {prometheus} (scraping the stack; rules from " in up.output
    children = descendants(up.proc.pid)
    assert any(Path(cmdline(pid).split(" ")[0]).name == "prometheus" for pid, _ in children)

    def targets_up() -> dict[str, float]:
        result = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}, timeout=5).json()
        return {s["metric"]["job"]: float(s["value"][1]) for s in result["data"]["result"]}

    jobs = {"framefleet-api", "framefleet-workers", "framefleet-beat", "framefleet-webhooks"}
    try:
        wait_until(lambda: targets_up() == dict.fromkeys(jobs, 1.0), 30, "every target scraped and up")
    except RuntimeError:
        pytest.fail(f"targets: {targets_up()}")
    # The shipped rules are loaded, the SLO recording rules among them.
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"FrameFleetNoWorkerForQueuedJobs", "framefleet:slo_queue_wait_error_ratio:rate5m"} <= names

    up.proc.send_signal(signal.SIGINT)
    assert up.wait_exit() == 0
    assert_all_gone(children)


def test_up_monitoring_without_a_prometheus_server_says_so(up_env: dict[str, str]) -> None:
    env = {**up_env, "PATH": str(Path(sys.executable).parent)}
    result = framefleet("up", "--monitoring", env=env, timeout=60)
    assert result.returncode == 1
    assert "--monitoring needs a Prometheus server" in result.stderr
    assert "apt install prometheus" in result.stderr
    assert not (Path(up_env["FRAMEFLEET_DATA_DIR"]) / "framefleet.pid").exists()


def test_demo_key_is_kept_private_and_reused(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    first = ensure_demo_key(settings)
    key_file = settings.data_dir / "demo-api-key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert ensure_demo_key(settings) == first

    # A key the database does not know (say, after the database was replaced) is replaced too.
    write_secret(key_file, "ff_unknown")
    fresh = ensure_demo_key(settings)
    assert fresh not in (first, "ff_unknown")
    assert key_file.read_text().strip() == fresh


def test_prepare_storage_makes_a_fresh_data_dir_ready(tmp_path: Path) -> None:
    from framefleet.storage import backend_for
    from framefleet.storage.base import StorageUnavailable

    settings = fresh_stack_settings(tmp_path / "fresh")
    media = tmp_path / "fresh" / "media"
    with pytest.raises(StorageUnavailable):
        backend_for(settings.output_root, settings).check()  # what /readyz asks: no media root yet
    folders = prepare_storage(settings)
    assert folders == [media / "tenants" / "demo", media / "outputs" / "tenants" / "demo"]
    assert all(folder.is_dir() for folder in folders)
    backend_for(settings.output_root, settings).check()
    assert prepare_storage(settings) == folders, "idempotent"
