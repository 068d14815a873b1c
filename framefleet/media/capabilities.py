"""What an ffmpeg binary can do: its encoders, filters and hwaccels, read from its own listings; and which
GPU family (NVENC, Quick Sync, VA-API) this machine offers it."""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import AudioCodec, VideoCodec
from framefleet.media.encoders import Family, HardwareSetup

LIST_TIMEOUT_SECONDS = 30.0

# Software encoder used for each spec codec on a CPU pool.
CPU_ENCODERS: dict[VideoCodec | AudioCodec, str] = {
    VideoCodec.h264: "libx264",
    VideoCodec.hevc: "libx265",
    VideoCodec.av1: "libsvtav1",
    VideoCodec.vp9: "libvpx-vp9",
    AudioCodec.aac: "aac",
    AudioCodec.opus: "libopus",
    AudioCodec.mp3: "libmp3lame",
    AudioCodec.flac: "flac",
    VideoCodec.gif: "gif",
    VideoCodec.webp: "libwebp_anim",
    VideoCodec.png: "png",
    VideoCodec.jpeg: "mjpeg",
}
INTEL_VENDOR = "0x8086"


@dataclass(frozen=True)
class Capabilities:
    encoders: frozenset[str]
    filters: frozenset[str]
    hwaccels: frozenset[str]

    def has_encoder(self, name: str) -> bool:
        """True when the binary lists encoder `name`."""
        return name in self.encoders

    def has_filter(self, name: str) -> bool:
        """True when the binary lists filter `name`."""
        return name in self.filters


def _after_rule(text: str) -> list[str]:
    """Lines after the ' ------' rule that ends the legend of -encoders and -filters."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("---"):
            return lines[index + 1 :]
    return []


def parse_encoders(text: str) -> frozenset[str]:
    """Encoder names from `ffmpeg -encoders` output (lines like ' V....D libx264   description')."""
    names: set[str] = set()
    for line in _after_rule(text):
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


def parse_filters(text: str) -> frozenset[str]:
    """Filter names from `ffmpeg -filters` output (lines like ' TS scale   V->V   description')."""
    names: set[str] = set()
    for line in _after_rule(text):
        parts = line.split()
        if len(parts) >= 3 and len(parts[0]) in (2, 3) and set(parts[0]) <= set("TSC.") and "->" in parts[2]:
            names.add(parts[1])
    return frozenset(names)


def parse_hwaccels(text: str) -> frozenset[str]:
    """Method names from `ffmpeg -hwaccels` output (one per line after the heading)."""
    names: set[str] = set()
    started = False
    for line in text.splitlines():
        if line.strip().lower().startswith("hardware acceleration methods"):
            started = True
            continue
        if started and line.strip():
            names.add(line.strip())
    return frozenset(names)


def _listing(ffmpeg: str, flag: str) -> str:
    try:
        result = subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", flag],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=LIST_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JobFailure(FailureClass.hardware_unavailable, f"ffmpeg at {ffmpeg} cannot run: {exc}") from None
    if result.returncode != 0:
        tail = result.stderr.strip()[-300:]
        raise JobFailure(
            FailureClass.hardware_unavailable, f"ffmpeg at {ffmpeg} failed to list {flag[1:]}: {tail}"
        )
    return result.stdout


_cache: dict[str, Capabilities] = {}
_cache_lock = threading.Lock()


def detect_capabilities(ffmpeg: str) -> Capabilities:
    """Encoders, filters and hwaccels of the binary at `ffmpeg`, listed once per path and cached."""
    with _cache_lock:
        cached = _cache.get(ffmpeg)
    if cached is not None:
        return cached
    caps = Capabilities(
        encoders=parse_encoders(_listing(ffmpeg, "-encoders")),
        filters=parse_filters(_listing(ffmpeg, "-filters")),
        hwaccels=parse_hwaccels(_listing(ffmpeg, "-hwaccels")),
    )
    with _cache_lock:
        _cache[ffmpeg] = caps
    return caps


def clear_capabilities_cache() -> None:
    """Forget cached listings (after the binary is replaced, and in tests)."""
    with _cache_lock:
        _cache.clear()


@dataclass(frozen=True)
class Devices:
    """GPU devices present on this machine."""

    nvidia: bool = False
    render_nodes: dict[str, str] = field(default_factory=dict)  # /dev/dri/renderD128 -> PCI vendor id


def nvidia_present() -> bool:
    """True when an NVIDIA GPU is usable: its device node exists, or nvidia-smi lists one."""
    if Path("/dev/nvidia0").exists():
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        result = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def detect_devices() -> Devices:
    """The NVIDIA GPU and the DRM render nodes (with their vendors) this machine has."""
    nodes: dict[str, str] = {}
    for node in sorted(Path("/dev/dri").glob("renderD*")):
        vendor_file = Path("/sys/class/drm") / node.name / "device" / "vendor"
        try:
            vendor = vendor_file.read_text().strip()
        except OSError:
            vendor = ""
        nodes[str(node)] = vendor
    return Devices(nvidia=nvidia_present(), render_nodes=nodes)


def hardware_for(caps: Capabilities, devices: Devices) -> HardwareSetup | None:
    """The GPU family to encode with: NVENC, else Quick Sync on Intel, else VA-API; None without a GPU."""
    if devices.nvidia and "cuda" in caps.hwaccels and "h264_nvenc" in caps.encoders:
        return HardwareSetup(Family.nvenc)
    for node, vendor in devices.render_nodes.items():
        if vendor == INTEL_VENDOR and "qsv" in caps.hwaccels and "h264_qsv" in caps.encoders:
            return HardwareSetup(Family.qsv, node)
    for node in devices.render_nodes:
        if "vaapi" in caps.hwaccels and "h264_vaapi" in caps.encoders:
            return HardwareSetup(Family.vaapi, node)
    return None
