"""Regenerate the captured ffmpeg failures: `.venv/bin/python -m tests.unit.data.ffmpeg_failures.capture`.

Each case runs the real ffmpeg into a real failure and stores its stderr (`<case>.stderr`) and exit status
(cases.json). tests/unit/test_failure_classification.py classifies them; the expected class of each case
lives in that test, not here, so regenerating cannot silently change what is expected.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from framefleet.media.ffmpeg import ffmpeg_path

HERE = Path(__file__).parent
BASE = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
SRC = ["-f", "lavfi", "-i", "testsrc2=size=256x144:rate=25:duration=0.2"]


def _limit_memory() -> None:
    limit = 250 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run(argv: list[str], **kwargs: object) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload]
    return proc.returncode, proc.stderr


def _killed(argv: list[str], sig: signal.Signals) -> tuple[int, str]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def main() -> None:
    ff = ffmpeg_path()
    cases: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        good = work / "good.mp4"
        subprocess.run([ff, *BASE, *SRC, "-c:v", "libx264", str(good)], check=True)
        data = good.read_bytes()
        (work / "corrupt.mp4").write_bytes(data[:64] + os.urandom(20_000))
        (work / "truncated.mp4").write_bytes(data[: len(data) // 3])
        slow = [
            ff,
            *BASE,
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:duration=60",
            "-c:v",
            "libx265",
            "-preset",
            "slow",
            "-f",
            "null",
            "-",
        ]
        runs = {
            "missing_input": lambda: _run([ff, *BASE, "-i", str(work / "nope.mp4"), "-f", "null", "-"]),
            "corrupt_input": lambda: _run([ff, *BASE, "-i", str(work / "corrupt.mp4"), "-f", "null", "-"]),
            "truncated_mp4": lambda: _run([ff, *BASE, "-i", str(work / "truncated.mp4"), "-f", "null", "-"]),
            "unknown_encoder": lambda: _run([ff, *BASE, *SRC, "-c:v", "no_such_encoder", "-f", "null", "-"]),
            "codec_not_in_container": lambda: _run(
                [
                    ff,
                    *BASE,
                    *SRC,
                    "-f",
                    "lavfi",
                    "-i",
                    "sine",
                    "-t",
                    "0.2",
                    "-c:a",
                    "libopus",
                    "-f",
                    "mov",
                    str(work / "x.mov"),
                ]
            ),
            "disk_full": lambda: _run([ff, *BASE, *SRC, "-c:v", "libx264", "-f", "mpegts", "/dev/full"]),
            "out_of_memory": lambda: _run(
                [
                    ff,
                    *BASE,
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=3840x2160:duration=0.2",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-f",
                    "null",
                    "-",
                ],
                preexec_fn=_limit_memory,
            ),
            "nvenc_without_gpu": lambda: _run([ff, *BASE, *SRC, "-c:v", "h264_nvenc", "-f", "null", "-"]),
            "qsv_without_device": lambda: _run([ff, *BASE, *SRC, "-c:v", "hevc_qsv", "-f", "null", "-"]),
            "vaapi_without_device": lambda: _run(
                [
                    ff,
                    *BASE,
                    "-vaapi_device",
                    "/dev/dri/renderD128",
                    *SRC,
                    "-vf",
                    "format=nv12,hwupload",
                    "-c:v",
                    "h264_vaapi",
                    "-f",
                    "null",
                    "-",
                ]
            ),
            "cuda_decode_without_gpu": lambda: _run(
                [
                    ff,
                    *BASE,
                    "-hwaccel",
                    "cuda",
                    "-hwaccel_output_format",
                    "cuda",
                    "-i",
                    str(good),
                    "-f",
                    "null",
                    "-",
                ]
            ),
            "killed_sigkill": lambda: _killed(slow, signal.SIGKILL),
            "killed_sigterm": lambda: _killed(slow, signal.SIGTERM),
            "crashed_sigsegv": lambda: _killed(slow, signal.SIGSEGV),
        }
        for name, run in runs.items():
            code, stderr = run()
            if code == 0:
                raise SystemExit(f"case {name} did not fail")
            cases[name] = {"returncode": code}
            (HERE / f"{name}.stderr").write_text(stderr.replace(tmp, "/tmp/capture"))
            print(f"{name}: {code}")
    (HERE / "cases.json").write_text(json.dumps(cases, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
