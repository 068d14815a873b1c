"""The media the players play: the flash-and-beep source and one FrameFleet job that packages it four ways.

The source (tests/media/sync.py, shared with the ffmpeg-side sync tests) shows a white flash and sounds a
1 kHz beep at the same instants (FLASHES), so that where a player puts them on the media timeline tells how
far its audio and video are apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framefleet.media.command import JobPlan
from framefleet.media.groups import DASH_MANIFEST, HLS_MASTER
from framefleet.media.results import collect_results
from tests.media.helpers import run_plan
from tests.media.sync import FLASH_PERIOD, make_flash_beep

SECONDS = 10
SIZE = (640, 360)
# Where tests/media/sync.py's clip flashes and beeps: 1 s, then every FLASH_PERIOD.
FLASHES = tuple(FLASH_PERIOD / 2 + k * FLASH_PERIOD for k in range(round(SECONDS / FLASH_PERIOD)))
LADDER = [
    "360p",
    {"name": "mid", "height": 270, "bitrate_kbps": 450},
    {"name": "low", "height": 180, "bitrate_kbps": 250},
]
HEIGHTS = (360, 270, 180)  # what the LADDER gives a 640x360 source


def make_source(ffmpeg: str, path: Path) -> Path:
    """The shared flash-and-beep clip (tests/media/sync.py) at the players' length and size."""
    return make_flash_beep(ffmpeg, path, seconds=SECONDS, size=f"{SIZE[0]}x{SIZE[1]}")


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
