"""Capability proof: what this worker's ffmpeg can really do, shown by encoding a few frames with each.

An encoder listed by `ffmpeg -encoders` may still be unusable (no GPU, no driver, no render node, a library
that fails to load), so every candidate gets a tiny trial: a handful of lavfi frames into the null muxer.
The result, with the GPUs (NVML or nvidia-smi when present), CPU count and memory, is the capabilities
document a worker advertises with its heartbeat and that admission (jobs/admission.py) routes by.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from framefleet.core.failures import JobFailure
from framefleet.media.capabilities import detect_capabilities

CPU_VIDEO: dict[str, str] = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
GPU_VIDEO: dict[str, tuple[str, ...]] = {
    "h264": ("h264_nvenc", "h264_qsv", "h264_vaapi"),
    "hevc": ("hevc_nvenc", "hevc_qsv", "hevc_vaapi"),
    "av1": ("av1_nvenc", "av1_qsv", "av1_vaapi"),
    "vp9": ("vp9_qsv", "vp9_vaapi"),
}
AUDIO: dict[str, str] = {"aac": "aac", "opus": "libopus", "mp3": "libmp3lame"}
VMAF = "libvmaf"
CUDA_DECODE = "cuda"
RENDER_NODES = ("/dev/dri/renderD128", "/dev/dri/renderD129")
BASE = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")
FRAMES = ("-f", "lavfi", "-i", "testsrc2=size=256x144:rate=25:duration=0.2")
TONE = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=0.2")
QUIET_ENV = {"SVT_LOG": "1", "X265_LOG_LEVEL": "error"}
MAX_PARALLEL = 4


@dataclass(frozen=True)
class Trial:
    name: str
    ok: bool
    seconds: float
    error: str | None = None


def render_node() -> str | None:
    """The first DRM render node (VAAPI needs one), or None."""
    return next((node for node in RENDER_NODES if os.path.exists(node)), None)


def trial_argv(ffmpeg: str, name: str, workdir: Path) -> list[str] | str:
    """The ffmpeg arguments that prove `name` works, or the reason it cannot even be tried."""
    if name in AUDIO.values():
        return [ffmpeg, *BASE, *TONE, "-c:a", name, "-f", "null", "-"]
    if name == VMAF:
        return [ffmpeg, *BASE, *FRAMES, *FRAMES, "-lavfi", "[0:v][1:v]libvmaf", "-f", "null", "-"]
    if name == CUDA_DECODE:
        sample = workdir / "sample.mp4"
        if not sample.exists():
            return "needs an H.264 sample, and libx264 failed its trial"
        return [
            ffmpeg,
            *BASE,
            "-hwaccel",
            "cuda",
            "-hwaccel_output_format",
            "cuda",
            "-i",
            str(sample),
            "-f",
            "null",
            "-",
        ]
    if name.endswith("_vaapi"):
        node = render_node()
        if node is None:
            return "no DRM render node (/dev/dri/renderD*)"
        return [
            ffmpeg,
            *BASE,
            "-vaapi_device",
            node,
            *FRAMES,
            "-vf",
            "format=nv12,hwupload",
            "-c:v",
            name,
            "-f",
            "null",
            "-",
        ]
    if name == "libx264":
        # Its output doubles as the sample the CUDA decode trial reads.
        return [ffmpeg, *BASE, *FRAMES, "-c:v", name, "-pix_fmt", "yuv420p", str(workdir / "sample.mp4")]
    return [ffmpeg, *BASE, *FRAMES, "-c:v", name, "-f", "null", "-"]


def run_trial(ffmpeg: str, name: str, workdir: Path, timeout: float) -> Trial:
    """Run one trial encode (or decode); a failure is reported with the last line ffmpeg printed."""
    started = time.monotonic()
    argv = trial_argv(ffmpeg, name, workdir)
    if isinstance(argv, str):
        return Trial(name, False, 0.0, argv)
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **{k: v for k, v in QUIET_ENV.items() if k not in os.environ}},
        )
    except subprocess.TimeoutExpired:
        return Trial(name, False, round(time.monotonic() - started, 3), f"no result within {timeout:.0f}s")
    except OSError as exc:
        return Trial(name, False, 0.0, f"cannot run {ffmpeg}: {exc}")
    seconds = round(time.monotonic() - started, 3)
    text = proc.stderr.strip()
    # A failed hwaccel set-up can fall back to software decoding and still exit 0.
    hw_fallback = name == CUDA_DECODE and re.search(r"(?i)failed setup|hwaccel initialisation", text)
    if proc.returncode == 0 and not hw_fallback:
        return Trial(name, True, seconds)
    lines = [line for line in text.splitlines() if line.strip()]
    reason = _most_telling(lines) or f"exit status {proc.returncode}"
    return Trial(name, False, seconds, reason[:300])


def _most_telling(lines: list[str]) -> str | None:
    """The first stderr line that says why (ffmpeg's last lines are usually generic consequences)."""
    generic = (
        "error while opening encoder",
        "task finished",
        "terminating thread",
        "nothing was written",
        "error sending frames",
        "could not open encoder before eof",
        "conversion failed",
    )
    for line in lines:
        if not any(g in line.lower() for g in generic):
            return line.strip()
    return lines[-1].strip() if lines else None


def candidates() -> list[str]:
    """Every encoder, filter and decoder a trial proves, CPU first."""
    names = [*CPU_VIDEO.values(), *AUDIO.values(), VMAF]
    names += [encoder for family in GPU_VIDEO.values() for encoder in family]
    return [*names, CUDA_DECODE]


def run_trials(ffmpeg: str, *, timeout: float, listed: frozenset[str] | None = None) -> dict[str, Trial]:
    """Trial every candidate (in parallel); candidates the binary does not list fail without a process."""
    results: dict[str, Trial] = {}
    todo: list[str] = []
    for name in candidates():
        if listed is not None and name not in listed and name not in (VMAF, CUDA_DECODE):
            results[name] = Trial(name, False, 0.0, "not built into this ffmpeg")
        else:
            todo.append(name)
    with tempfile.TemporaryDirectory(prefix="framefleet-trial-") as tmp:
        workdir = Path(tmp)
        first = [n for n in todo if n != CUDA_DECODE]
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
            for trial in pool.map(lambda n: run_trial(ffmpeg, n, workdir, timeout), first):
                results[trial.name] = trial
        if CUDA_DECODE in todo:  # after libx264 wrote its sample
            results[CUDA_DECODE] = run_trial(ffmpeg, CUDA_DECODE, workdir, timeout)
    return {name: results[name] for name in candidates()}


# ---------------------------------------------------------------- GPUs and host


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def gpus_from_nvml(load: Callable[[str], Any] = ctypes.CDLL) -> dict[str, Any]:
    """GPU model, memory and driver read through NVML (libnvidia-ml.so.1), without pynvml."""
    try:
        nvml = load("libnvidia-ml.so.1")
    except OSError as exc:
        return {"source": None, "devices": [], "error": f"NVML not available: {exc}"}
    if nvml.nvmlInit_v2() != 0:
        return {"source": None, "devices": [], "error": "nvmlInit failed"}
    try:
        driver = ctypes.create_string_buffer(96)
        nvml.nvmlSystemGetDriverVersion(driver, 96)
        count = ctypes.c_uint()
        nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))
        devices = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                continue
            name = ctypes.create_string_buffer(96)
            nvml.nvmlDeviceGetName(handle, name, 96)
            memory = _NvmlMemory()
            nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory))
            devices.append(
                {
                    "index": index,
                    "name": name.value.decode(errors="replace"),
                    "memory_mb": memory.total // (1024 * 1024),
                }
            )
        return {"source": "nvml", "driver": driver.value.decode(errors="replace"), "devices": devices}
    finally:
        nvml.nvmlShutdown()


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader`."""
    devices = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        memory = int(float(parts[2])) if re.fullmatch(r"\d+(\.\d+)?", parts[2]) else None
        devices.append({"index": int(parts[0]), "name": parts[1], "memory_mb": memory, "driver": parts[3]})
    return devices


def gpus_from_nvidia_smi(binary: str | None = None) -> dict[str, Any]:
    """GPU model, memory and driver from nvidia-smi, when it is on PATH."""
    binary = binary or shutil.which("nvidia-smi")
    if binary is None:
        return {"source": None, "devices": [], "error": "nvidia-smi not found"}
    query = "--query-gpu=index,name,memory.total,driver_version"
    try:
        proc = subprocess.run(
            [binary, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"source": None, "devices": [], "error": f"nvidia-smi failed: {exc}"}
    if proc.returncode != 0:
        return {"source": None, "devices": [], "error": proc.stderr.strip()[-200:] or "nvidia-smi failed"}
    devices = parse_nvidia_smi(proc.stdout)
    driver = devices[0]["driver"] if devices else None
    return {"source": "nvidia-smi", "driver": driver, "devices": devices}


def gpu_info() -> dict[str, Any]:
    """The GPUs this machine has: NVML first, then nvidia-smi; `devices` is empty without an NVIDIA GPU."""
    nvml = gpus_from_nvml()
    if nvml["source"] is not None:
        return nvml
    smi = gpus_from_nvidia_smi()
    if smi["source"] is not None:
        return smi
    return {"source": None, "devices": [], "error": f"{nvml['error']}; {smi['error']}"}


def parse_meminfo(text: str) -> int | None:
    """MemTotal from /proc/meminfo, in MiB."""
    match = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else None


def host_info() -> dict[str, Any]:
    """CPU count (and how many this process may use), CPU model and memory of this machine."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        meminfo = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": model.group(1).strip() if model else None,
        "memory_mb": parse_meminfo(meminfo),
    }


def summarise(trials: dict[str, Trial]) -> dict[str, Any]:
    """Codecs per hardware class, audio codecs and filters that passed their trials."""
    ok = {name for name, trial in trials.items() if trial.ok}
    return {
        "video": {
            "cpu": sorted(codec for codec, encoder in CPU_VIDEO.items() if encoder in ok),
            "gpu": sorted(codec for codec, family in GPU_VIDEO.items() if ok & set(family)),
        },
        "gpu_encoders": sorted(e for family in GPU_VIDEO.values() for e in family if e in ok),
        "audio": sorted(codec for codec, encoder in AUDIO.items() if encoder in ok),
        "filters": [VMAF] if VMAF in ok else [],
        "decode": [CUDA_DECODE] if CUDA_DECODE in ok else [],
    }


def prove_capabilities(ffmpeg: str, *, timeout: float) -> dict[str, Any]:
    """The capabilities document: trial results, what they add up to, GPUs, host, and the ffmpeg used."""
    started = time.monotonic()
    try:
        listed: frozenset[str] | None = detect_capabilities(ffmpeg).encoders
    except JobFailure:
        listed = frozenset()  # the binary cannot even list its encoders: every trial fails
    trials = run_trials(ffmpeg, timeout=timeout, listed=listed)
    return {
        **summarise(trials),
        "trials": {name: asdict(trial) for name, trial in trials.items()},
        "gpus": gpu_info(),
        "host": host_info(),
        "ffmpeg": ffmpeg,
        "proved_in_seconds": round(time.monotonic() - started, 3),
    }
