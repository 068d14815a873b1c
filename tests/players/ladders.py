"""The media the players play: a flash-and-beep source and one FrameFleet job that packages it four ways.

The source shows a white flash and sounds a 1 kHz beep at the same instants (FLASHES), so that where a
player puts them on the media timeline tells how far its audio and video are apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framefleet.media.command import JobPlan
from framefleet.media.groups import DASH_MANIFEST, HLS_MASTER
from framefleet.media.results import collect_results
from tests.media.helpers import quiet_ffmpeg, run_plan

SECONDS = 10
FPS = 25
SIZE = (640, 360)
SAMPLE_RATE = 48_000
FLASHES = (1.0, 3.0, 5.0, 7.0, 9.0)  # seconds; each flash lasts FLASH_SECONDS, each beep BEEP_SECONDS
FLASH_SECONDS = 0.2
BEEP_SECONDS = 0.1
PERIOD = 2.0  # FLASHES are 1 s + k * PERIOD
LADDER = [
    "360p",
    {"name": "mid", "height": 270, "bitrate_kbps": 450},
    {"name": "low", "height": 180, "bitrate_kbps": 250},
]
HEIGHTS = (360, 270, 180)  # what the LADDER gives a 640x360 source


def make_flash_beep(ffmpeg: str, path: Path) -> Path:
    """A dimmed test pattern with a white frame-filling flash and a sample-exact beep at each of FLASHES."""
    width, height = SIZE
    path.parent.mkdir(parents=True, exist_ok=True)
    on = f"lt(mod(t+{PERIOD - FLASHES[0]},{PERIOD}),{{}})"  # true during the first {} s after each flash
    video = (
        f"testsrc2=s={width}x{height}:r={FPS}:d={SECONDS},lutyuv=y=val*0.5,"
        f"drawbox=c=white:t=fill:enable='{on.format(FLASH_SECONDS)}'"
    )
    # aevalsrc computes every sample, so the beep starts exactly on a flash (a per-frame filter would not).
    audio = f"aevalsrc='if({on.format(BEEP_SECONDS)},0.5*sin(2*PI*1000*t),0)':s={SAMPLE_RATE}:d={SECONDS}"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio),
        *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"),
        *("-c:a", "pcm_s16le"),  # lossless sound in the source: only the job's own AAC encode may smear it
        path,
    )
    return path


@dataclass(frozen=True)
class Ladders:
    """The packaged job: every group is a folder under `root`, holding its manifests."""

    plan: JobPlan
    root: Path

    def manifest(self, group: str, kind: str) -> Path:
        """A group's HLS master playlist (`kind` "hls") or DASH MPD ("dash")."""
        folder = next(g.folder for g in self.plan.groups if g.spec.name == group)
        return folder / (HLS_MASTER if kind == "hls" else DASH_MANIFEST)


def group(name: str, kind: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "type": kind,
        "ladder": LADDER,
        "segment_seconds": 2,
        "preset": "veryfast",
        **extra,
    }


def make_ladders(ffmpeg: str, source: Path, work: Path) -> Ladders:
    """One job, one ffmpeg process: HLS with TS segments, HLS with fMP4 segments, DASH, and CMAF."""
    body = {
        "groups": [
            group("hls-ts", "hls"),
            group("hls-fmp4", "hls", segment_type="fmp4"),
            group("dash", "dash"),
            group("cmaf", "cmaf"),
        ]
    }
    spec, plan, _ = run_plan(ffmpeg, body, source, work, input_uri="file:///flash-beep.mkv")
    collect_results(plan, spec, "file:///outputs/players")  # measures the segments, writes the manifests
    return Ladders(plan, work)
