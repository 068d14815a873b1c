"""GPU energy from NVML's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, Volta and newer).

The counter is cumulative millijoules since the driver loaded. The worker reads the device its encodes run
on before and after a GPU attempt; the difference, divided evenly among the worker's slots (every pool
process of a worker encodes on that same device), is the job's GPU energy. Reading is a thin edge over the
`pynvml` module (nvidia-ml-py, which loads the driver's libnvidia-ml at run time); everything else is pure,
so tests run it on recorded counters through a stand-in module. Without a driver, a GPU, or a counter the
device supports, there is no reading and the GPU energy is estimated (observability/cost.py).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NVML = "nvml"


@dataclass(frozen=True)
class GpuReading:
    """One device's counter at one instant."""

    uuid: str
    energy_mj: int


def encode_device(visible: str | None, uuids: Sequence[str]) -> str | None:
    """The UUID of the device ffmpeg's NVENC uses (the first CUDA-visible one) among NVML's devices in NVML
    order; None when there is none. `visible` is CUDA_VISIBLE_DEVICES: indexes or `GPU-…` UUIDs (prefixes
    allowed), unset meaning all devices."""
    if visible is None:
        return uuids[0] if uuids else None
    first = visible.split(",")[0].strip()
    if not first or first == "-1":
        return None
    if first.isdigit():
        index = int(first)
        return uuids[index] if index < len(uuids) else None
    return next((uuid for uuid in uuids if uuid.startswith(first)), None)


def gpu_joules(before: GpuReading | None, after: GpuReading | None) -> float | None:
    """Joules the device used between two readings; None when either is missing, they are of different
    devices, or the counter went back (the driver reloaded)."""
    if before is None or after is None or before.uuid != after.uuid or after.energy_mj < before.energy_mj:
        return None
    return (after.energy_mj - before.energy_mj) / 1000.0


def job_share(joules: float, *, slots: int) -> float:
    """The job's part of its device's energy: an even split among the worker's slots on that device."""
    return joules / max(1, slots)


class Reader:
    """Reads one device's counter through an NVML module (`pynvml`, or a stand-in with its functions)."""

    def __init__(self, nvml: Any = None, visible: str | None = None) -> None:
        self._nvml = nvml
        self._visible = visible
        self._lock = threading.Lock()
        self._handle: Any = None
        self._uuid: str | None = None
        self._failed = False

    def _open(self) -> bool:
        # NVML is initialised once per process, on first use (after the pool process was forked).
        if self._handle is not None:
            return True
        if self._failed:
            return False
        try:
            nvml = self._nvml if self._nvml is not None else importlib.import_module("pynvml")
            nvml.nvmlInit()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            uuids = [_text(nvml.nvmlDeviceGetUUID(handle)) for handle in handles]
            uuid = encode_device(self._visible, uuids)
            if uuid is None:
                self._failed = True
                return False
            self._nvml, self._handle, self._uuid = nvml, handles[uuids.index(uuid)], uuid
            return True
        except Exception:  # no driver, no device, an old driver: no reading, never a failed job
            self._failed = True
            return False

    def read(self) -> GpuReading | None:
        """The encode device's counter now, or None when it cannot be read."""
        with self._lock:
            if not self._open():
                return None
            try:
                energy = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
            except Exception:  # e.g. NVML_ERROR_NOT_SUPPORTED before Volta
                return None
            assert self._uuid is not None
            return GpuReading(self._uuid, energy)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
