"""Hosts made of Linux network namespaces: one namespace per host, each with an `eth0` veth whose peer sits on
a bridge inside a switch namespace of its own. Addresses live only inside the namespaces (a private /24), so
nothing here touches the machine's own network; removing a namespace removes its links with it.

The plan (names, addresses, argument lists) is pure; `ip` runs only in `run_ip` and the helpers below it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

# Every namespace the harness makes starts with this, so `down` can find leftovers of any run.
PREFIX = "ffc-"
SWITCH = f"{PREFIX}switch"
BRIDGE = "br0"
SUBNET = "10.77.14"  # a /24 that only exists inside the namespaces
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Host:
    """One host: its namespace, its address on the cluster network, and its link's name on the switch."""

    name: str
    octet: int

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.octet}"

    @property
    def port_on_switch(self) -> str:
        return f"p-{self.name}"[:15]  # interface names are at most 15 bytes


def link_argvs(host: Host) -> list[list[str]]:
    """The `ip` commands that create a host's namespace, wire it to the switch and give it its address."""
    inside = ["ip", "-n", host.netns]
    return [
        ["ip", "netns", "add", host.netns],
        # Both ends are created directly in their namespaces: nothing appears in the machine's own.
        [
            "ip",
            "link",
            "add",
            "eth0",
            "netns",
            host.netns,
            "type",
            "veth",
            "peer",
            "name",
            host.port_on_switch,
            "netns",
            SWITCH,
        ],
        ["ip", "-n", SWITCH, "link", "set", host.port_on_switch, "master", BRIDGE, "up"],
        [*inside, "addr", "add", f"{host.address}/24", "dev", "eth0"],
        [*inside, "link", "set", "lo", "up"],
        [*inside, "link", "set", "eth0", "up"],
    ]


def switch_argvs() -> list[list[str]]:
    return [
        ["ip", "netns", "add", SWITCH],
        ["ip", "-n", SWITCH, "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "-n", SWITCH, "link", "set", BRIDGE, "up"],
    ]


def link_state_argv(host: Host, up: bool) -> list[str]:
    """Cut (or restore) a host's only link, from inside the host, as `ip link set eth0 down` on it would."""
    return ["ip", "-n", host.netns, "link", "set", "eth0", "up" if up else "down"]


def in_host(host: Host, argv: list[str]) -> list[str]:
    """`argv` run inside the host's network namespace (`ip netns exec` execs it: same pid)."""
    return ["ip", "netns", "exec", host.netns, *argv]


def check_available() -> None:
    """Fail with a clear message unless this process may build namespaces (root, iproute2 with netns)."""
    if os.geteuid() != 0:
        raise RuntimeError("the cluster harness needs root (it builds network namespaces with `ip netns`)")
    if shutil.which("ip") is None:
        raise RuntimeError("`ip` (iproute2) is not installed")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise RuntimeError(f"`ip netns` is not available: {probe.stderr.strip()}")


def run_ip(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def leftovers() -> list[str]:
    """Namespaces of this harness that exist now (of this run or an earlier one that did not clean up)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(PREFIX)]


def remove_all() -> list[str]:
    """Kill every process inside the harness's namespaces, then delete them (their links go with them)."""
    names = leftovers()
    for name in names:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    for name in names:
        # A namespace whose last process is still exiting cannot be deleted yet: retry briefly.
        while subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False).returncode:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    return names


_libc = ctypes.CDLL(None, use_errno=True)


def enter(netns: str) -> None:
    """Move the calling thread into a namespace: sockets it opens afterwards live on that host's network.
    Only for a thread of its own (the test client's), never the main thread."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {netns}: {os.strerror(errno)}")
    finally:
        os.close(fd)
