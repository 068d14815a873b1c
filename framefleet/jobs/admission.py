"""Admission and routing (pure): can any known pool run this spec, and which pool should it go to?

Workers prove their capabilities with trial encodes (worker/trial.py) and advertise them with their
heartbeat. From those advertisements:

- `hardware: cpu` needs a CPU worker that can encode every requested codec.
- `hardware: gpu` needs a GPU worker with a GPU encoder for every requested video codec (with
  `fallback: cpu`, a codec its GPU lacks may be encoded on that worker's CPU, and if no GPU worker could
  run the job at all it goes to the CPU pool).
- `hardware: auto` goes to the GPU pool when a *live* GPU worker can run every output, else to the CPU pool.

A job no known worker could ever run is refused, with a reason naming the missing capability. A job whose
pool is known but has no live worker right now is accepted and waits in its queue. Before any worker has
ever registered nothing is known, and every valid job is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Codecs whose encoders are proven by trial; others (image codecs, flac, copy, none) need nothing special.
TRIALED_VIDEO = frozenset({"h264", "hevc", "av1", "vp9"})
TRIALED_AUDIO = frozenset({"aac", "opus", "mp3"})
HARDWARE_WORDS = {"cpu": "a CPU", "gpu": "a GPU"}


@dataclass(frozen=True)
class WorkerView:
    """What one worker advertised, and whether its heartbeat is current."""

    id: str
    pool: str
    live: bool
    video: Mapping[str, frozenset[str]] = field(default_factory=dict)  # "cpu"/"gpu" -> codecs
    audio: frozenset[str] = frozenset()
    filters: frozenset[str] = frozenset()

    @classmethod
    def from_capabilities(cls, worker_id: str, pool: str, live: bool, caps: Mapping[str, Any]) -> WorkerView:
        """Build from the capabilities document a worker publishes."""
        video = caps.get("video") or {}
        return cls(
            id=worker_id,
            pool=pool,
            live=live,
            video={kind: frozenset(video.get(kind) or ()) for kind in ("cpu", "gpu")},
            audio=frozenset(caps.get("audio") or ()),
            filters=frozenset(caps.get("filters") or ()),
        )


@dataclass(frozen=True)
class Needs:
    """What a spec asks of the worker that runs it: (field path, codec) pairs and the filters it needs."""

    video: tuple[tuple[str, str], ...]
    audio: tuple[tuple[str, str], ...]
    vmaf: bool


@dataclass(frozen=True)
class Admission:
    pool: str | None
    reason: str | None = None
    field: str | None = None

    @property
    def accepted(self) -> bool:
        return self.pool is not None


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """(kind, path, codec) for every `video`/`audio` block with a codec anywhere in the spec document."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if (
                key in ("video", "audio")
                and isinstance(value, Mapping)
                and isinstance(value.get("codec"), str)
            ):
                yield key, f"{child}.codec", value["codec"]
            yield from _walk(value, child)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}.{index}")


def needs_of(spec: Mapping[str, Any]) -> Needs:
    """The trialed codecs and filters a (normalised) spec document asks for."""
    video: list[tuple[str, str]] = []
    audio: list[tuple[str, str]] = []
    for kind, path, codec in _walk({k: v for k, v in spec.items() if k != "quality"}, ""):
        if kind == "video" and codec in TRIALED_VIDEO:
            video.append((path, codec))
        elif kind == "audio" and codec in TRIALED_AUDIO:
            audio.append((path, codec))
    return Needs(video=tuple(video), audio=tuple(audio), vmaf=spec.get("quality") is not None)


def missing(
    worker: WorkerView, needs: Needs, hardware: str, *, cpu_fallback: bool = False
) -> tuple[str, str] | None:
    """The first thing `worker` lacks to run the job on `hardware` ("cpu"/"gpu"), as (field, reason)."""
    own = worker.video.get(hardware, frozenset())
    spare = worker.video.get("cpu", frozenset()) if cpu_fallback and hardware == "gpu" else frozenset()
    for path, codec in needs.video:
        if codec not in own and codec not in spare:
            return path, f"no worker can encode {codec} on {HARDWARE_WORDS[hardware]}"
    for path, codec in needs.audio:
        if codec not in worker.audio:
            return path, f"no worker can encode {codec} audio"
    if needs.vmaf and "libvmaf" not in worker.filters:
        return "quality", "no worker can compute quality metrics (libvmaf)"
    return None


def _first_gap(
    workers: Sequence[WorkerView], needs: Needs, hardware: str, cpu_fallback: bool
) -> tuple[str, str]:
    gaps = [missing(w, needs, hardware, cpu_fallback=cpu_fallback) for w in workers]
    found = [g for g in gaps if g is not None]
    if found:
        return found[0]
    # No worker of that pool at all: name the first thing the job needs from it.
    if needs.video:
        path, codec = needs.video[0]
        return path, f"no worker can encode {codec} on {HARDWARE_WORDS[hardware]}"
    return "hardware", f"no {hardware.upper()} worker has registered"


def _can_run(workers: Sequence[WorkerView], needs: Needs, hardware: str, cpu_fallback: bool) -> bool:
    return any(missing(w, needs, hardware, cpu_fallback=cpu_fallback) is None for w in workers)


def admit(spec: Mapping[str, Any], workers: Sequence[WorkerView]) -> Admission:
    """Route a normalised spec document to a pool, or refuse it with the missing capability."""
    hardware = str(spec.get("hardware") or "auto")
    cpu_fallback = str(spec.get("fallback") or "none") == "cpu"
    if not workers:
        # Nothing has registered yet: accept, and let the job wait for the first worker.
        return Admission("gpu" if hardware == "gpu" else "cpu")
    needs = needs_of(spec)
    cpu = [w for w in workers if w.pool == "cpu"]
    gpu = [w for w in workers if w.pool == "gpu"]
    if hardware == "cpu":
        if _can_run(cpu, needs, "cpu", False):
            return Admission("cpu")
        return _refuse(*_first_gap(cpu, needs, "cpu", False))
    if hardware == "gpu":
        if _can_run(gpu, needs, "gpu", cpu_fallback):
            return Admission("gpu")
        if cpu_fallback and _can_run(cpu, needs, "cpu", False):
            return Admission("cpu", "no GPU worker can run this job; falling back to CPU as the spec allows")
        return _refuse(*_first_gap(gpu, needs, "gpu", cpu_fallback))
    # auto
    if _can_run([w for w in gpu if w.live], needs, "gpu", False):
        return Admission("gpu")
    if _can_run(cpu, needs, "cpu", False):
        return Admission("cpu")
    if _can_run(gpu, needs, "gpu", False):
        return Admission("gpu")  # only a GPU worker could ever run it: wait for one
    return _refuse(*_first_gap(cpu or gpu, needs, "cpu" if cpu else "gpu", False))


def _refuse(path: str, reason: str) -> Admission:
    return Admission(None, reason, path)


def can_run_on(worker: WorkerView, spec: Mapping[str, Any], pool: str) -> bool:
    """Whether `worker` could run the spec in `pool` (GPU encoders for the gpu pool, CPU ones otherwise)."""
    hardware = "gpu" if pool == "gpu" else "cpu"
    cpu_fallback = str(spec.get("fallback") or "none") == "cpu"
    return missing(worker, needs_of(spec), hardware, cpu_fallback=cpu_fallback) is None
