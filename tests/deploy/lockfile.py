"""docker/requirements.txt: the runtime dependency closure of FrameFleet, pinned to exact versions.

The images install exactly these versions (`pip install --no-deps -r`, then `pip check`), so an image holds
what the test suite ran against. Regenerate from a virtual environment where the suite passes:

    .venv/bin/python -m tests.deploy.lockfile > docker/requirements.txt
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK_PATH = ROOT / "docker" / "requirements.txt"
PROJECT = "framefleet"
HEADER = (
    "# Runtime dependencies of FrameFleet pinned to exact versions (generated: "
    "python -m tests.deploy.lockfile > docker/requirements.txt).\n"
    "# The images install exactly these with --no-deps and then run `pip check`.\n"
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")


# The Pythons the images run: Debian bookworm's (docker/Dockerfile), Ubuntu 24.04's (docker/Dockerfile.gpu).
# A requirement whose marker holds on any of them (or on this interpreter) is part of the lock.
TARGET_PYTHONS = ("3.11.2", "3.12.3")
# Requirements that only those Pythons need, so they are not installed here: pinned by hand.
EXTRA_PINS = {"async-timeout": "5.0.1"}


def _environments(extra: str) -> list[dict[str, str]]:
    envs = [{"extra": extra}]
    for full in TARGET_PYTHONS:
        envs.append({"extra": extra, "python_full_version": full, "python_version": full.rsplit(".", 1)[0]})
    return envs


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate(env) for extra in (*extras, "") for env in _environments(extra))


def runtime_closure(project: str = PROJECT) -> dict[str, str]:
    """{canonical name: installed version} for `project`'s runtime requirements, followed recursively."""
    pinned: dict[str, str] = {}
    wanted: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name not in EXTRA_PINS:
                raise LookupError(
                    f"{name} is required on a target Python but not installed: add it to EXTRA_PINS"
                ) from None
            pinned[name] = EXTRA_PINS[name]
            continue
        if canonicalize_name(name) != canonicalize_name(project):
            pinned[canonicalize_name(name)] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if _applies(req, extras):
                wanted.append((canonicalize_name(req.name), frozenset(req.extras)))
    return dict(sorted(pinned.items()))


def render(pins: dict[str, str]) -> str:
    """The lock file text for `pins`."""
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def parse(text: str) -> dict[str, str]:
    """{canonical name: version} of a lock file; raises ValueError on a line that is not an exact pin."""
    pins: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _PIN.match(stripped)
        if match is None:
            raise ValueError(f"line {number} is not an exact pin (name==version): {line!r}")
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


if __name__ == "__main__":
    sys.stdout.write(render(runtime_closure()))
