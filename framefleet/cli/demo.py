"""`framefleet demo`: make a test clip, transcode it to two renditions with quality metrics, show them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from framefleet.cli.client import ApiClient, ApiError, default_api_key, default_api_url
from framefleet.cli.common import EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE
from framefleet.cli.jobs import report_result, watch_job
from framefleet.config import Settings, get_settings

CLIP_SECONDS = 10
CLIP_SIZE = "1280x720"
CLIP_RATE = 30
CLIP_NAME = "testsrc2-720p-10s.mp4"


def clip_argv(ffmpeg: str, target: Path) -> list[str]:
    """ffmpeg arguments for the demo clip: testsrc2 video and a 440 Hz tone, H.264/AAC in MP4."""
    return [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={CLIP_SIZE}:rate={CLIP_RATE}:duration={CLIP_SECONDS}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={CLIP_SECONDS}",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(CLIP_RATE * 2),
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(target),
    ]


def make_demo_clip(settings: Settings) -> Path:
    """The demo input in the demo tenant's folder (<media root>/tenants/demo/), made once (written aside,
    then moved into place): the demo job may only read its own tenant's files."""
    from framefleet.cli.supervisor import prepare_storage
    from framefleet.media.ffmpeg import ffmpeg_path

    folder = prepare_storage(settings)[0]
    clip = folder / CLIP_NAME
    if clip.is_file() and clip.stat().st_size > 0:
        return clip
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{CLIP_NAME}.{os.getpid()}.part"
    result = subprocess.run(clip_argv(ffmpeg_path(), partial), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg could not make the demo clip: {result.stderr.strip()[-1000:]}")
    os.replace(partial, clip)
    return clip


def demo_spec(clip: Path) -> dict[str, Any]:
    """Two renditions of the clip (H.264/AAC MP4 at 720p, VP9/Opus WebM at 480p) with VMAF, PSNR and SSIM."""
    return {
        "input": clip.as_uri(),
        "outputs": [
            {
                "name": "h264-720p",
                "container": "mp4",
                "video": {"codec": "h264", "height": 720, "crf": 23, "preset": "veryfast"},
                "audio": {"codec": "aac", "bitrate_kbps": 128},
            },
            {
                "name": "vp9-480p",
                "container": "webm",
                "video": {"codec": "vp9", "height": 480, "crf": 33, "preset": "veryfast"},
                "audio": {"codec": "opus", "bitrate_kbps": 96},
            },
        ],
        "quality": {"metrics": ["vmaf", "psnr", "ssim"]},
        "metadata": {"source": "framefleet-demo"},
    }


def run_demo_job(client: ApiClient, clip: Path) -> int:
    """Submit the demo job, follow it live, print the result table; the exit status says how it ended."""
    job = client.submit(demo_spec(clip))
    print(
        f"Submitted job {job['id']}: {clip.name} -> MP4 720p (H.264/AAC) + WebM 480p (VP9/Opus), "
        "with VMAF, PSNR and SSIM"
    )
    finished = watch_job(client, job["id"])
    print()
    return report_result(finished)


def run_demo(*, up: bool) -> int:
    """`framefleet demo [--up]`."""
    settings = get_settings()
    print(f"Making the demo clip ({CLIP_SECONDS} s, {CLIP_SIZE}, with audio) ...", flush=True)
    clip = make_demo_clip(settings)
    print(f"Input: {clip}", flush=True)
    if up:
        return _demo_on_embedded_stack(settings, clip)
    url, key = default_api_url(settings), default_api_key(settings)
    if not key:
        print(
            "No API key: set FRAMEFLEET_API_KEY, start the stack once with `framefleet up`, "
            "or run `framefleet demo --up`.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return _guarded(lambda: _run_with(url, key, clip), url)


def _run_with(url: str, key: str, clip: Path) -> int:
    with ApiClient(url, key) as client:
        return run_demo_job(client, clip)


def _guarded(action: Any, url: str) -> int:
    try:
        return int(action())
    except ApiError as exc:
        print(f"API error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except httpx.TransportError as exc:
        print(f"cannot reach the API at {url}: {exc} (is `framefleet up` running?)", file=sys.stderr)
        return EXIT_UNREACHABLE


def _demo_on_embedded_stack(settings: Settings, clip: Path) -> int:
    from framefleet.cli.supervisor import AlreadyRunning, EmbeddedStack, StackError

    print("Starting the embedded stack ...", flush=True)
    try:
        with EmbeddedStack(settings, echo_logs=False) as stack:
            stack.print_block("\n".join(stack.summary()) + "\n")
            try:
                with stack.interrupt_on_failure():
                    code = _guarded(lambda: _run_with(stack.api_url, stack.api_key, clip), stack.api_url)
            except KeyboardInterrupt:
                if stack.failure is None:
                    raise
                print(f"\n{stack.describe_failure(stack.failure)}", file=sys.stderr, flush=True)
                code = EXIT_ERROR
            print("Stopping the embedded stack ...", flush=True)
    except AlreadyRunning as exc:
        print(f"{exc}\nTo run the demo on that stack: framefleet demo", file=sys.stderr)
        return EXIT_ERROR
    except StackError as exc:
        print(f"The embedded stack could not start: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nInterrupted; the embedded stack was stopped.", file=sys.stderr)
        return 130
    return code


def demo(
    up: Annotated[
        bool, typer.Option("--up", help="start the embedded stack for the demo, stop it after")
    ] = False,
) -> None:
    """Transcode a generated clip and show progress, outputs and quality."""
    code = run_demo(up=up)
    if code:
        raise typer.Exit(code)
