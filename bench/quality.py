"""Quality metrics: VMAF + PSNR + SSIM in one pass vs VMAF alone, and three separate passes vs one pass.

A 720p H.264 encode of a 10 s 1080p clip is scored against its source, reference scaled to 720p:
- one pass: our `build_quality` (libvmaf with its PSNR feature, ffmpeg's ssim filter on the same frames);
- VMAF alone: the same pass asking only for VMAF;
- three passes: libvmaf, then ffmpeg's psnr filter, then its ssim filter, each decoding both files.
The three run alternately in one session, `rounds` times, and the medians are compared, at n_subsample 1
(every frame: the same work per frame in every method) and at the default 7 (VMAF and, in our pass, PSNR
and SSIM on every 7th frame; the separate psnr/ssim passes score every frame, as their filters do).
Targets: one pass at most 1.05 x VMAF alone; three passes at least 1.4 x one pass. The same pass at
display size (the 720p picture upscaled to the source's 1080p, how scaled streams are scored by default)
is timed beside it: its cost over the 720p pass is the price of scores that see the scaling loss.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import make_clip, median
from framefleet.core.spec import Metric, QualitySpec
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.quality import build_quality

THREADS = 2
WIDTH, HEIGHT = 1280, 720
DISPLAY = (1920, 1080)


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _one_pass(
    dist: Path, ref: Path, quality: QualitySpec, log: Path, display: tuple[int, int] | None = None
) -> list[str]:
    args = build_quality(
        dist,
        ref,
        width=WIDTH,
        height=HEIGHT,
        fps=25.0,
        quality=quality,
        log_path=log,
        threads=THREADS,
        display=display,
    )
    return [ffmpeg_path(), *args]


def _filter_pass(dist: Path, ref: Path, body: str) -> list[str]:
    graph = f"[1:V:0]scale={WIDTH}:{HEIGHT}:flags=bicubic,setsar=1[ref];[0:V:0][ref]{body}"
    return [
        ffmpeg_path(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-threads",
        str(THREADS),
        "-i",
        str(dist),
        "-threads",
        str(THREADS),
        "-i",
        str(ref),
        "-filter_complex",
        graph,
        "-f",
        "null",
        "-",
    ]


def _three_passes(dist: Path, ref: Path, subsample: int, folder: Path) -> list[list[str]]:
    vmaf = f"libvmaf=n_threads={THREADS}:n_subsample={subsample}:log_fmt=json:log_path={folder / 'v.json'}"
    return [
        _filter_pass(dist, ref, vmaf),
        _filter_pass(dist, ref, f"psnr=stats_file={folder / 'p.log'}"),
        _filter_pass(dist, ref, f"ssim=stats_file={folder / 's.log'}"),
    ]


def compare(dist: Path, ref: Path, subsample: int, rounds: int, folder: Path) -> dict[str, float]:
    """Median seconds of each method and the two ratios, at one n_subsample."""
    all_three = QualitySpec(subsample=subsample)
    vmaf_only = QualitySpec(metrics=[Metric.vmaf], subsample=subsample)
    one, alone, three, display = [], [], [], []
    for _ in range(rounds):
        one.append(_timed(_one_pass(dist, ref, all_three, folder / "one.json")))
        display.append(_timed(_one_pass(dist, ref, all_three, folder / "display.json", DISPLAY)))
        alone.append(_timed(_one_pass(dist, ref, vmaf_only, folder / "alone.json")))
        three.append(sum(_timed(argv) for argv in _three_passes(dist, ref, subsample, folder)))
    result = {"one_pass_s": median(one), "vmaf_alone_s": median(alone), "three_passes_s": median(three)}
    result["one_vs_vmaf_alone"] = result["one_pass_s"] / result["vmaf_alone_s"]
    result["three_vs_one"] = result["three_passes_s"] / result["one_pass_s"]
    result["display_pass_s"] = median(display)
    result["display_vs_native"] = result["display_pass_s"] / result["one_pass_s"]
    print(
        f"quality n_subsample={subsample}: one pass {result['one_pass_s']:.2f}s, VMAF alone "
        f"{result['vmaf_alone_s']:.2f}s, three passes {result['three_passes_s']:.2f}s -> one/VMAF "
        f"{result['one_vs_vmaf_alone']:.3f} (target <= 1.05), three/one {result['three_vs_one']:.2f}x "
        f"(target >= 1.4), median of {rounds}"
    )
    print(
        f"quality n_subsample={subsample}: at display size (upscaled to 1080p, the default for scaled "
        f"streams) {result['display_pass_s']:.2f}s = {result['display_vs_native']:.2f} x at 720p"
    )
    return result


def main(rounds: int = 3, seconds: float = 10) -> dict[int, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="framefleet-bench-quality-") as tmp:
        folder = Path(tmp)
        ref = make_clip(folder / "ref.mp4", seconds=seconds, size="1920x1080")
        dist = folder / "dist.mp4"
        subprocess.run(
            [
                ffmpeg_path(),
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(ref),
                "-vf",
                f"scale={WIDTH}:{HEIGHT}",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "28",
                "-an",
                str(dist),
            ],
            check=True,
        )
        return {subsample: compare(dist, ref, subsample, rounds, folder) for subsample in (1, 7)}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, float(sys.argv[2]) if len(sys.argv) > 2 else 10)
