"""HLS, DASH and CMAF ladders against real ffmpeg, read back the way a player reads them.

One ffmpeg process writes every rung and audio rendition; the tests read each group only through its
manifest, check the master playlist's attributes against the files, and check that keyframes sit at every
segment boundary of every rung, at the same times, and nowhere else (the source has a scene cut every
0.7 s, where an encoder left alone would add keyframes).

Needs only the ffmpeg binary: `pytest tests/media/test_groups.py`.
"""

from __future__ import annotations

import math
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import av
import pytest

from framefleet.media.codecs import codec_string
from framefleet.media.command import JobPlan
from framefleet.media.mpd import iso_duration, mpd_problems
from framefleet.media.results import Results, collect_results
from tests.conftest import make_clip
from tests.media import bmff
from tests.media.helpers import run_plan
from tests.media.streaming import decoded_frames, first_bytes_brands, read_master, read_media, segment_starts

pytestmark = pytest.mark.integration

SECONDS = 4
FPS = 25
SCENE_CUTS = ["-vf", "negate=enable='between(mod(t,1.4),0.7,1.4)'"]
NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}


@pytest.fixture(scope="module")
def source(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("groups")
    return make_clip(ffmpeg, folder / "cuts.mp4", seconds=SECONDS, size="320x240", extra=SCENE_CUTS)


def run(ffmpeg: str, body: dict[str, Any], source: Path, work: Path) -> tuple[JobPlan, Results, list[str]]:
    spec, plan, _ = run_plan(ffmpeg, body, source, work)
    return plan, collect_results(plan, spec, "s3://bucket/jobs/j1"), plan.argv


@pytest.fixture(scope="module")
def hls(
    ffmpeg: str, source: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[JobPlan, Results, list[str]]:
    body = {
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "ladder": ["360p", "240p", {"name": "low", "height": 120, "bitrate_kbps": 150}],
                "segment_seconds": 1,
                "preset": "veryfast",
            }
        ],
        "quality": {"metrics": ["vmaf", "psnr", "ssim"], "subsample": 5},
    }
    return run(ffmpeg, body, source, tmp_path_factory.mktemp("hls"))


@pytest.fixture(scope="module")
def dash(
    ffmpeg: str, source: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[JobPlan, Results, list[str]]:
    body = {
        "groups": [
            {
                "name": "d",
                "type": "dash",
                "video_codec": "hevc",
                "ladder": ["240p", {"name": "small", "height": 120, "crf": 30, "maxrate_kbps": 300}],
                "segment_seconds": 2,
                "preset": "ultrafast",
                "audio": [{"name": "opus", "codec": "opus", "language": "en"}],
            },
            {
                "name": "c",
                "type": "cmaf",
                "ladder": ["240p", {"name": "tiny", "height": 120, "bitrate_kbps": 120}],
                "segment_seconds": 1,
                "preset": "veryfast",
                "audio": [
                    {"name": "en", "language": "en"},
                    {"name": "de", "language": "de", "bitrate_kbps": 64},
                ],
            },
            {
                "name": "x",
                "type": "dash",
                "ladder": [
                    {"name": "av1", "height": 120, "codec": "av1", "crf": 40},
                    {"name": "vp9", "height": 120, "codec": "vp9", "crf": 40},
                ],
                "segment_seconds": 2,
                "preset": "ultrafast",
                "audio": [],
            },
        ]
    }
    return run(ffmpeg, body, source, tmp_path_factory.mktemp("dash"))


def rows_of(results: Results) -> dict[str, Any]:
    return {row.name: row for row in results.rows}


def rfc_peak(files: list[Path], durations: list[float], target: float) -> float:
    """RFC 8216: the highest bit rate of any run of segments lasting 0.5 to 1.5 target durations."""
    best = 0.0
    for start in range(len(files)):
        bits = seconds = 0.0
        for file, duration in zip(files[start:], durations[start:], strict=True):
            bits += file.stat().st_size * 8
            seconds += duration
            if seconds > 1.5 * target:
                break
            if seconds >= 0.5 * target:
                best = max(best, bits / seconds)
    return best


def check_alignment(folder: Path, renditions: list[tuple[str | None, list[str]]], seconds: float) -> None:
    """Each segment starts on a keyframe, at the same time in every rung; no keyframe anywhere else."""
    starts = [segment_starts(folder, init, names) for init, names in renditions]
    count = len(starts[0])
    assert count == math.ceil(SECONDS / seconds)
    origin = [s[0].time for s in starts]
    for rung in starts:
        assert len(rung) == count
        assert all(segment.keyframe for segment in rung)
        assert all(
            segment.keyframes == [segment.keyframes[0]] for segment in rung
        )  # one keyframe per segment
    for index in range(count):
        times = {round(rung[index].time - origin[r], 4) for r, rung in enumerate(starts)}
        assert times == {round(index * seconds, 4)}, (index, times)


# --- HLS ---------------------------------------------------------------------------------------------------


def test_one_process_reads_the_source_once(hls: tuple[JobPlan, Results, list[str]]) -> None:
    plan, _, argv = hls
    assert argv.count("-i") == 1
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.startswith("[0:V:0]split=2[vsrcg0r0][vsrcg0r1];")
    assert argv.count("-f") >= 4 and argv.count("hls") == 3  # two rungs and one audio rendition
    assert [r.name for r in plan.groups[0].rungs] == ["240p", "low"]


def test_rungs_above_the_source_are_dropped_and_reported(hls: tuple[JobPlan, Results, list[str]]) -> None:
    plan, results, _ = hls
    assert plan.groups[0].ladder.dropped == [
        {"name": "360p", "reason": "480x360 is above the 320x240 source"}
    ]
    manifest = rows_of(results)["abr"]
    assert manifest.kind == "manifest" and manifest.details["dropped"] == plan.groups[0].ladder.dropped


def test_master_playlist_attributes_match_the_files(
    ffmpeg: str, hls: tuple[JobPlan, Results, list[str]]
) -> None:
    plan, _, _ = hls
    folder = plan.groups[0].folder
    master = read_master(folder / "master.m3u8")
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in master.lines
    (audio,) = master.media
    assert audio["TYPE"] == "AUDIO" and audio["DEFAULT"] == "YES" and audio["CHANNELS"] == "2"
    audio_playlist = read_media(folder / audio["URI"])
    audio_files = [folder / name for name, _ in audio_playlist.segments]
    audio_avg = sum(f.stat().st_size for f in audio_files) * 8 / sum(d for _, d in audio_playlist.segments)
    audio_peak = rfc_peak(audio_files, [d for _, d in audio_playlist.segments], 1.0)
    sizes = {}
    for variant in master.variants:
        playlist = read_media(folder / variant["URI"])
        assert (
            int(
                playlist.tags[[t.split(":")[0] for t in playlist.tags].index("#EXT-X-TARGETDURATION")].split(
                    ":"
                )[1]
            )
            == 1
        )
        files = [folder / name for name, _ in playlist.segments]
        peak = rfc_peak(files, [d for _, d in playlist.segments], 1.0)
        average = sum(f.stat().st_size for f in files) * 8 / sum(d for _, d in playlist.segments)
        assert int(variant["BANDWIDTH"]) == pytest.approx(peak + audio_peak, abs=2)
        assert int(variant["AVERAGE-BANDWIDTH"]) == pytest.approx(average + audio_avg, abs=2)
        assert variant["FRAME-RATE"] == "25.000" and variant["AUDIO"] == audio["GROUP-ID"]
        with av.open(str(files[0])) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            sizes[variant["URI"]] = f"{frame.width}x{frame.height}"
            assert variant["CODECS"] == f"{codec_string(files[0])},mp4a.40.2"
            assert variant["CODECS"].startswith("avc1.4d" if "240p" in variant["URI"] else "avc1.64")
        assert variant["RESOLUTION"] == sizes[variant["URI"]]
    assert sizes == {"240p.m3u8": "320x240", "low.m3u8": "160x120"}
    # Highest first, as players expect the first variant to be a sensible start.
    assert [int(v["BANDWIDTH"]) for v in master.variants] == sorted(
        (int(v["BANDWIDTH"]) for v in master.variants), reverse=True
    )


def test_read_back_through_the_master_playlist(ffmpeg: str, hls: tuple[JobPlan, Results, list[str]]) -> None:
    plan, _, _ = hls
    counts = decoded_frames(ffmpeg, plan.groups[0].folder / "master.m3u8")
    video = [n for n in counts.values() if n == SECONDS * FPS]
    assert len(video) == 2 and len(counts) == 3  # two rungs of 100 pictures, and the sound


def test_keyframes_align_at_every_segment_boundary(hls: tuple[JobPlan, Results, list[str]]) -> None:
    plan, _, _ = hls
    folder = plan.groups[0].folder
    renditions = [
        (None, [n for n, _ in read_media(folder / r.playlist).segments]) for r in plan.groups[0].rungs
    ]
    check_alignment(folder, renditions, 1.0)


def test_every_rung_is_scored_and_recorded(hls: tuple[JobPlan, Results, list[str]]) -> None:
    _, results, _ = hls
    rows = rows_of(results)
    assert set(rows) == {"abr", "abr/240p", "abr/low", "abr/aac_128k"}
    for name in ("abr/240p", "abr/low"):
        row = rows[name]
        assert row.kind == "rendition" and row.group == "abr" and row.video_codec == "h264"
        assert row.uri == f"s3://bucket/jobs/j1/abr/{name.split('/')[1]}.m3u8"
        metrics = row.metrics
        assert (
            metrics["frames"] == 20
            and metrics["worst_segment"]["end"] - metrics["worst_segment"]["start"] == 1
        )
        assert {"p1", "p5", "p50"} <= set(metrics["vmaf"]) and metrics["vmaf"]["mean"] > 50
        assert row.metrics_log_uri == f"s3://bucket/jobs/j1/abr/quality/{name.split('/')[1]}.quality.json"
    assert rows["abr/aac_128k"].kind == "audio" and rows["abr/aac_128k"].metrics is None


def test_manifests_are_published_last(hls: tuple[JobPlan, Results, list[str]]) -> None:
    _, results, _ = hls
    order = [p.uri.rsplit("/", 1)[1] for p in results.publish_order()]
    assert order[-1] == "master.m3u8"
    assert (
        max(order.index(n) for n in order if n.endswith((".ts", ".m3u8")) and n != "master.m3u8")
        < len(order) - 1
    )


# --- DASH, CMAF, HEVC, AV1, VP9 ---------------------------------------------------------------------------


def test_dash_mpd_is_read_back_with_measured_bandwidths(
    ffmpeg: str, dash: tuple[JobPlan, Results, list[str]]
) -> None:
    plan, results, argv = dash
    assert argv.count("-i") == 1 and argv.count("dash") >= 3
    rows = rows_of(results)
    folder = plan.groups[0].folder
    root = ET.parse(folder / "manifest.mpd").getroot()
    assert len(root.findall("mpd:Period", NS)) == 1
    reps = {r.get("id"): r for r in root.iterfind(".//mpd:Representation", NS)}
    assert len(reps) == 3
    for name, rep_id in (("d/240p", "0"), ("d/small", "1"), ("d/opus", "2")):
        row = rows[name]
        assert reps[rep_id].get("bandwidth") == str(row.details["bandwidth"])
        assert row.details["bandwidth"] >= row.details["average_bitrate_kbps"] * 1000 * 0.999
        # ffmpeg's own codec string and ours, read from the init segment, agree.
        assert (
            reps[rep_id].get("codecs") == codec_string(folder / f"init-{rep_id}.m4s") == row.details["codecs"]
        )
    assert rows["d/240p"].details["codecs"].startswith("hvc1.1.6.L")
    assert rows["d/opus"].details["codecs"] == "opus" and rows["d/opus"].details["language"] == "en"
    counts = decoded_frames(ffmpeg, folder / "manifest.mpd")
    assert list(counts.values()).count(SECONDS * FPS) == 2 and len(counts) == 3
    init_names = [(f"init-{i}.m4s", [f"chunk-{i}-{n:05d}.m4s" for n in (1, 2)]) for i in (0, 1)]
    check_alignment(folder, init_names, 2.0)


def test_cmaf_serves_one_set_of_segments_to_hls_and_dash(
    ffmpeg: str, dash: tuple[JobPlan, Results, list[str]]
) -> None:
    plan, results, _ = dash
    group = plan.groups[1]
    folder = group.folder
    assert b"cmfc" in first_bytes_brands(folder / "init-0.m4s")
    master = read_master(folder / "master.m3u8")
    assert [m["LANGUAGE"] for m in master.media] == ["en", "de"]
    assert [m["DEFAULT"] for m in master.media] == ["YES", "NO"]
    root = ET.parse(folder / "manifest.mpd").getroot()
    langs = sorted(
        a.get("lang") or ""
        for a in root.iterfind(".//mpd:AdaptationSet", NS)
        if a.get("contentType") == "audio"
    )
    assert langs == ["de", "en"]
    hls_segments = set()
    for variant in master.variants:
        playlist = read_media(folder / variant["URI"])
        assert playlist.init is not None and "#EXT-X-VERSION:7" in playlist.tags
        hls_segments |= {name for name, _ in playlist.segments}
    assert hls_segments == {f"chunk-{i}-{n:05d}.m4s" for i in (0, 1) for n in range(1, 5)}
    hls_counts = decoded_frames(ffmpeg, folder / "master.m3u8")
    dash_counts = decoded_frames(ffmpeg, folder / "manifest.mpd")
    for counts in (hls_counts, dash_counts):
        assert sorted(counts.values()).count(SECONDS * FPS) == 2
    rows = rows_of(results)
    assert rows["c"].container == "m3u8" and rows["c/dash"].container == "mpd"
    order = [p.uri.rsplit("/", 1)[1] for p in results.publish_order() if "/c/" in p.uri]
    assert set(order[-2:]) == {"master.m3u8", "manifest.mpd"}
    check_alignment(
        folder, [(f"init-{i}.m4s", [f"chunk-{i}-{n:05d}.m4s" for n in range(1, 5)]) for i in (0, 1)], 1.0
    )


def test_av1_and_vp9_rungs_get_their_own_adaptation_sets(dash: tuple[JobPlan, Results, list[str]]) -> None:
    plan, results, _ = dash
    folder = plan.groups[2].folder
    root = ET.parse(folder / "manifest.mpd").getroot()
    sets = [
        [r.get("codecs") for r in a.iterfind("mpd:Representation", NS)]
        for a in root.iterfind(".//mpd:AdaptationSet", NS)
    ]
    assert len(sets) == 2 and sets[0][0].startswith("av01.0.") and sets[1][0].startswith("vp09.00.")
    rows = rows_of(results)
    assert rows["x/av1"].video_codec == "av1" and rows["x/vp9"].video_codec == "vp9"
    check_alignment(
        folder, [(f"init-{i}.m4s", [f"chunk-{i}-{n:05d}.m4s" for n in (1, 2)]) for i in (0, 1)], 2.0
    )


def real_durations(folder: Path, init: str, segments: list[str]) -> list[float]:
    """Each segment's length from its own samples (trun durations over the track's timescale)."""
    (trak,) = bmff._find(bmff.read(folder / init), "moov/trak")
    scale = bmff.timescale(trak)
    found = []
    for name in segments:
        samples = [d for f in bmff.fragments(bmff.read(folder / name)) for d, _ in f.samples]
        found.append(sum(samples) / scale)
    return found


def test_every_mpd_conforms_and_declares_only_what_is_true(dash: tuple[JobPlan, Results, list[str]]) -> None:
    plan, _, _ = dash
    for group in plan.groups:
        text = (group.folder / "manifest.mpd").read_text()
        assert mpd_problems(text) == [], group.name
        root = ET.fromstring(text)
        assert "urn:mpeg:dash:profile:isoff-live:2011" in (root.get("profiles") or "")
        longest = iso_duration(root.get("maxSegmentDuration"))
        total = iso_duration(root.get("mediaPresentationDuration"))
        assert longest is not None and total is not None
        # No adaptation set claims that one rung's init segment decodes another's segments.
        assert all(a.get("bitstreamSwitching") != "true" for a in root.iterfind(".//mpd:AdaptationSet", NS))
        real: list[float] = []
        for rep in root.iterfind(".//mpd:Representation", NS):
            rep_id = rep.get("id") or ""
            names = sorted(p.name for p in group.folder.glob(f"chunk-{rep_id}-*.m4s"))
            durations = real_durations(group.folder, f"init-{rep_id}.m4s", names)
            assert sum(durations) == pytest.approx(total, abs=1 / FPS), (group.name, rep_id)
            real += durations
        # The longest real segment (an AAC one, ending on a whole audio frame) fits under the maximum.
        assert max(real) <= longest < max(real) + 0.001, (group.name, max(real), longest)


def test_cmaf_boxes_say_what_cmaf_asks(dash: tuple[JobPlan, Results, list[str]]) -> None:
    """Read at box level: brands of every header and segment, track header flags, colour boxes."""
    plan, _, _ = dash
    group = plan.groups[1]
    folder = group.folder
    expected = {"0": b"cfsd", "1": b"cfsd", "2": b"caac", "3": b"caac"}  # 240p/tiny AVC, two AAC renditions
    for rep_id, profile in expected.items():
        header = bmff.read(folder / f"init-{rep_id}.m4s")
        (ftyp,) = [b for b in header if b.type == b"ftyp"]
        assert {b"cmfc", profile} <= set(bmff.brands(ftyp)[1]), rep_id
        for trak in bmff._find(header, "moov/trak"):
            assert bmff.tkhd_flags(trak) == 0x7, rep_id  # enabled, in movie, in preview
            (entry,) = trak.first("mdia/minf/stbl/stsd").children
            if bmff.handler(trak) == b"vide":
                assert entry.type == b"avc1"
                (colr,) = entry.find("colr")
                kind, primaries, transfer, matrix, full = struct.unpack(">4sHHHB", colr.payload[:11])
                # The untagged 320x240 source at 25 fps is SD at a 625-line rate: BT.601 625-line primaries
                # and matrix (bt470bg, 5), the BT.601 curve (6).
                assert (kind, primaries, transfer, matrix, full >> 7) == (b"nclx", 5, 6, 5, 0)
        segments = sorted(folder.glob(f"chunk-{rep_id}-*.m4s"))
        assert segments
        for segment in segments:
            boxes = bmff.read(segment)
            assert boxes[0].type == b"styp"
            major, compatible = bmff.brands(boxes[0])
            assert major == b"cmfs" and {b"cmfs", b"cmff", profile} <= set(compatible), segment.name
            assert sum(b.type == b"moof" for b in boxes) == 1
