"""A/V sync of every output type: a source that flashes white and beeps at the same instants, transcoded
to files and to HLS (TS and fMP4), DASH and CMAF groups in one job, read back the way a player reads each
(groups through their .m3u8 / .mpd). Every output must keep flash and beep within one audio frame.

Needs only the ffmpeg binary: `pytest tests/media/test_sync.py`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import pytest

from framefleet.media.command import JobPlan
from framefleet.media.results import collect_results
from tests.media import bmff
from tests.media.helpers import run_plan
from tests.media.streaming import read_master, read_media
from tests.media.sync import SAMPLE_RATE, Sync, make_flash_beep, measure

pytestmark = pytest.mark.integration

AUDIO_FRAME = 1024 / SAMPLE_RATE  # one AAC frame: the tolerance, and the encoder's priming
SLACK = 0.001  # the beep detector lands within a fraction of a millisecond of the gate
FILES = ["mp4", "mkv", "mov", "webm", "ts"]
LADDER = ["240p", {"name": "low", "height": 120}]
GROUPS = {
    "hls-ts": {"type": "hls"},
    "hls-fmp4": {"type": "hls", "segment_type": "fmp4"},
    "dash": {"type": "dash"},
    "cmaf": {"type": "cmaf"},
}


@pytest.fixture(scope="module")
def job(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> JobPlan:
    folder = tmp_path_factory.mktemp("sync")
    source = make_flash_beep(ffmpeg, folder / "flash-beep.mkv")
    source_sync = measure(source)
    assert source_sync.flashes == [1.0, 3.0] and max(map(abs, source_sync.offsets())) < SLACK
    body = {
        "outputs": [{"name": name, "container": name, "video": {"preset": "veryfast"}} for name in FILES],
        "groups": [
            {"name": name, **kind, "ladder": LADDER, "segment_seconds": 1, "preset": "veryfast"}
            for name, kind in GROUPS.items()
        ],
    }
    spec, plan, _ = run_plan(ffmpeg, body, source, folder / "work")
    collect_results(plan, spec, "file:///pub/j")  # writes the HLS master playlists
    return plan


def assert_in_sync(sync: Sync, tolerance: float = AUDIO_FRAME) -> None:
    assert len(sync.flashes) == 2 and len(sync.beeps) == 2, sync
    assert max(map(abs, sync.offsets())) <= tolerance, sync.offsets()


@pytest.mark.parametrize("name", FILES)
def test_files_are_in_sync(job: JobPlan, name: str) -> None:
    (plan,) = [p for p in job.outputs if p.output.name == name]
    assert_in_sync(measure(plan.path), SLACK)


@pytest.mark.parametrize("name", ["mp4", "mov"])
def test_files_are_in_sync_for_players_ignoring_edit_lists(job: JobPlan, name: str) -> None:
    # Video starts at composition time zero (negative CTS offsets); only the AAC priming, which exactly
    # an edit list removes, is left: the sound is at most one audio frame late.
    (plan,) = [p for p in job.outputs if p.output.name == name]
    sync = measure(plan.path, options={"ignore_editlist": "1"})
    assert_in_sync(sync, AUDIO_FRAME + SLACK)
    assert sync.flashes == [1.0, 3.0]


@pytest.mark.parametrize(
    ("group", "manifest"),
    [
        ("hls-ts", "master.m3u8"),
        ("hls-fmp4", "master.m3u8"),
        ("dash", "manifest.mpd"),
        ("cmaf", "master.m3u8"),
        ("cmaf", "manifest.mpd"),
    ],
)
def test_groups_are_in_sync_through_their_manifests(job: JobPlan, group: str, manifest: str) -> None:
    (plan,) = [g for g in job.groups if g.name == group]
    assert_in_sync(measure(plan.folder / manifest), SLACK)


def test_hls_ts_segments_share_one_clock(job: JobPlan) -> None:
    """TS has no edit lists: each rung's and the audio rendition's segments, fetched and played as they
    are, must carry timestamps on the same clock (the hls muxer used to restart each one at its own zero)."""
    (plan,) = [g for g in job.groups if g.name == "hls-ts"]
    folder = plan.folder
    master = read_master(folder / "master.m3u8")
    (audio,) = master.media
    with tempfile.TemporaryDirectory() as tmp:

        def joined(playlist: str) -> Path:
            path = Path(tmp) / f"{playlist}.ts"
            names = [name for name, _ in read_media(folder / playlist).segments]
            path.write_bytes(b"".join((folder / name).read_bytes() for name in names))
            return path

        sound = joined(audio["URI"])
        for variant in master.variants:
            assert_in_sync(measure(joined(variant["URI"]), audio=sound), SLACK)


def first_timestamps(path: Path) -> tuple[float, float]:
    """(PTS, DTS) in seconds of the first packet of a TS segment's only stream."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        packet = next(p for p in container.demux(stream) if p.pts is not None)
        assert packet.dts is not None
        return float(packet.pts * stream.time_base), float(packet.dts * stream.time_base)


def test_hls_ts_sound_starts_at_the_first_decode_time(job: JobPlan) -> None:
    """Players that place each TS playlist by its first timestamp, min(DTS, PTS) (shaka-player), shift
    video by its B-frame delay and sound by its first packet: these must be the same instant, with the
    sound still where it belongs by PTS (test_hls_ts_segments_share_one_clock)."""
    (plan,) = [g for g in job.groups if g.name == "hls-ts"]
    master = read_master(plan.folder / "master.m3u8")
    (audio,) = master.media
    first = read_media(plan.folder / audio["URI"]).segments[0][0]
    sound_pts, _ = first_timestamps(plan.folder / first)
    for variant in master.variants:
        first = read_media(plan.folder / variant["URI"]).segments[0][0]
        pts, dts = first_timestamps(plan.folder / first)
        assert pts - dts == pytest.approx(2 / 25)  # veryfast x264 at 25 fps: two frames
        assert sound_pts == pytest.approx(dts, abs=1 / SAMPLE_RATE)


def fmp4_renditions(job: JobPlan, group: str) -> list[tuple[Path, Path, list[Path]]]:
    """(folder, init segment, media segments) of each fMP4 rendition of a group, from its playlists/MPD."""
    (plan,) = [g for g in job.groups if g.name == group]
    folder = plan.folder
    if group == "hls-fmp4":
        playlists = [read_media(p) for p in sorted(folder.glob("*.m3u8")) if p.name != "master.m3u8"]
        return [(folder, folder / (p.init or ""), [folder / n for n, _ in p.segments]) for p in playlists]
    inits = sorted(folder.glob("init-*.m4s"))
    return [(folder, i, sorted(folder.glob(f"chunk-{i.stem[5:]}-*.m4s"))) for i in inits]


@pytest.mark.parametrize("group", ["hls-fmp4", "dash", "cmaf"])
def test_fmp4_tracks_start_on_one_clock_at_box_level(job: JobPlan, group: str) -> None:
    """What a client reads from the boxes: the first sample's presentation time (tfdt plus composition
    offset) less the edit list's media skip. Video starts at exactly zero in every rung; sound at minus
    its encoder priming (decoded and dropped), never more than one audio frame."""
    starts: dict[bytes, set[float]] = {b"vide": set(), b"soun": set()}
    for _, init, segments in fmp4_renditions(job, group):
        (trak,) = bmff._find(bmff.read(init), "moov/trak")
        edits = bmff.edits(trak)
        assert len(edits) == 1 and edits[0][1] >= 0, edits  # one media skip: all CMAF allows
        (first, *_) = bmff.fragments(bmff.read(segments[0]))
        raw = min(first.presentation_times())
        starts[bmff.handler(trak)].add((raw - edits[0][1]) / bmff.timescale(trak))
    assert starts[b"vide"] == {0.0}
    (audio,) = starts[b"soun"]
    assert -AUDIO_FRAME - 1e-9 <= audio <= 0
