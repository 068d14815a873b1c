"""Shared pieces of the benchmarks: an embedded stack in a temporary folder, clips, statistics."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from framefleet.cli.supervisor import EmbeddedStack
from framefleet.config import Settings, reset_settings_cache
from framefleet.media.ffmpeg import ffmpeg_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def bench_stack(**overrides: str) -> Iterator[tuple[EmbeddedStack, Settings]]:
    """A whole embedded stack (redis, api, one worker, beat, flower) with its own data dir and ports."""
    with tempfile.TemporaryDirectory(prefix="framefleet-bench-") as tmp:
        env = {
            "FRAMEFLEET_DATA_DIR": tmp,
            "FRAMEFLEET_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "FRAMEFLEET_API_PORT": str(free_port()),
            "FRAMEFLEET_FLOWER_PORT": str(free_port()),
            "FRAMEFLEET_WORKER_METRICS_PORT": str(free_port()),
            "FRAMEFLEET_BEAT_METRICS_PORT": str(free_port()),
            "FRAMEFLEET_WEBHOOKS_METRICS_PORT": str(free_port()),
            "FRAMEFLEET_LOG_LEVEL": "WARNING",
            **overrides,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        reset_settings_cache()
        try:
            settings = Settings()
            with EmbeddedStack(settings, echo_logs=False, out=open(os.devnull, "w")) as stack:
                yield stack, settings
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
            reset_settings_cache()


def demo_media(settings: Settings) -> Path:
    """The demo tenant's own folder (benchmarks submit with the demo key), created."""
    from framefleet.cli.supervisor import prepare_storage

    return prepare_storage(settings)[0]


def run_ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly (errors only, overwriting outputs); raise if it fails."""
    subprocess.run([ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, *, seconds: float, size: str, rate: int = 25) -> Path:
    """An H.264/AAC test clip: lavfi's testsrc2 with a 440 Hz tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(path),
    )
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)
