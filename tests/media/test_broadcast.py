"""What a broadcaster or streaming platform would reject, on generated sources: metadata that leaks where
and with what a video was shot, channel layouts lost in the shared sound chain, loudness off target.

Needs only the ffmpeg binary: `pytest tests/media/test_broadcast.py`.
"""

from __future__ import annotations

import re
import subprocess
from array import array
from pathlib import Path
from typing import Any

import av
import pytest
from pydantic import ValidationError

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import JobSpec
from framefleet.media.chunks import chunk_spec, concat_list, join_argv, sound_spec
from framefleet.media.filters import Assets
from framefleet.media.loudness import measure_loudness
from framefleet.media.probe import probe
from framefleet.media.results import collect_results
from framefleet.media.runner import run_ffmpeg
from tests.media.helpers import frames, quiet_ffmpeg, run_plan

pytestmark = pytest.mark.integration

# What the phone source says about itself; none of it may reach an output.
SECRETS = ("48.8584", "Acme", "Phone9", "SecretComment", "Custom123", "Secret chapter", "SecretHandler")
VERSION = re.compile(rb"Lav[fc]\d+\.\d+")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("broadcast")


@pytest.fixture(scope="module")
def phone(ffmpeg: str, folder: Path) -> Path:
    """1 s of a 'phone video': GPS with altitude, make/model, a comment, a custom tag, a chapter."""
    chapters = folder / "chapters.txt"
    chapters.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=Secret chapter\n")
    path = folder / "phone.mov"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1"),
        *("-i", chapters, "-map", "0", "-map", "1", "-map_chapters", "2"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"),
        *("-metadata", "location=+48.8584+002.2945+035.000/"),
        *("-metadata", "com.apple.quicktime.location.ISO6709=+48.8584+002.2945+035.000/"),
        *("-metadata", "make=Acme", "-metadata", "model=Phone9", "-metadata", "comment=SecretComment"),
        *("-metadata", "custom_tag=Custom123", "-metadata:s:v", "handler_name=SecretHandler"),
        *("-movflags", "use_metadata_tags"),
        path,
    )
    assert sum(path.read_bytes().count(s.encode()) for s in SECRETS) >= len(SECRETS)
    return path


def _tags(path: Path) -> dict[str, str]:
    """Every tag PyAV reads: the file's, each stream's and each chapter's (prefixed)."""
    with av.open(str(path)) as container:
        tags = dict(container.metadata)
        for stream in container.streams:
            tags.update({f"s{stream.index}:{k}": v for k, v in stream.metadata.items()})
        for n, chapter in enumerate(container.chapters()):
            tags.update({f"c{n}:{k}": v for k, v in chapter["metadata"].items()})
    return tags


def test_outputs_carry_no_input_metadata_and_only_the_tags_asked_for(
    ffmpeg: str, phone: Path, folder: Path
) -> None:
    fast: dict[str, Any] = {"preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "mp4", "container": "mp4", "video": fast},
            {"name": "mov", "container": "mov", "video": fast},
            {"name": "mkv", "container": "mkv", "video": fast},
            {"name": "webm", "container": "webm"},
            {"name": "copy", "container": "mp4", "video": {"codec": "copy"}, "audio": {"codec": "copy"}},
            *({"name": c, "container": c} for c in ("ts", "m4a", "mp3", "opus", "flac", "gif", "webp")),
            {
                "name": "tagged",
                "container": "mp4",
                "video": fast,
                "metadata": {"title": "Launch film", "language": "fre", "copyright": "Example Ltd"},
            },
        ],
        "groups": [
            {"name": "hls", "type": "hls", "segment_type": "fmp4", "ladder": ["240p"], "preset": "ultrafast"},
            {"name": "hlsts", "type": "hls", "ladder": ["240p"], "preset": "ultrafast"},
            {"name": "cmaf", "type": "cmaf", "ladder": ["240p"], "preset": "ultrafast"},
        ],
    }
    _, plan, _ = run_plan(ffmpeg, body, phone, folder / "meta")
    written = [p.path for p in plan.outputs] + sorted((folder / "meta" / "groups").rglob("*.*"))
    assert any(p.name.endswith("_init.mp4") for p in written)
    assert {p.suffix for p in written} >= {".ts", ".m4s", ".mpd", ".m3u8"}
    for path in written:
        data = path.read_bytes()
        leaked = [s for s in SECRETS if s.encode() in data]
        assert not leaked, (path.name, leaked)
        # A copy holds the input's packets verbatim: its AAC frames carry the source encoder's signature.
        # LAME writes its version into the unused bits of MP3 frames (docs/job-spec.md).
        if path.name not in ("copy.mp4", "mp3.mp3"):
            assert not VERSION.search(data), (path.name, VERSION.findall(data))
    for plan_output in plan.outputs:
        tags = _tags(plan_output.path)
        if plan_output.output.name != "tagged":
            assert not [k for k in tags if k.split(":")[-1] in ("location", "make", "model", "comment")], tags
    tagged = _tags(next(p.path for p in plan.outputs if p.output.name == "tagged"))
    assert tagged["title"] == "Launch film" and tagged["copyright"] == "Example Ltd"
    assert tagged["s1:language"] == "fre"


@pytest.mark.parametrize("container", ["mp4", "mov", "mkv"])
def test_a_split_jobs_join_writes_no_library_version_and_keeps_the_spec_tags(
    ffmpeg: str, phone: Path, folder: Path, container: str
) -> None:
    """The join muxes the chunks and the once-encoded sound again: it must stay bit-exact like the encodes."""
    spec = JobSpec.model_validate(
        {
            "input": "file:///in.mov",
            "outputs": [
                {
                    "name": "o",
                    "container": container,
                    "video": {"preset": "ultrafast"},
                    "metadata": {"title": "T1"},
                }
            ],
        }
    )
    work = folder / f"join-{container}"
    _, chunk, _ = run_plan(ffmpeg, chunk_spec(spec).model_dump(mode="json"), phone, work / "chunk")
    _, sound, _ = run_plan(ffmpeg, sound_spec(spec).model_dump(mode="json"), phone, work / "sound")
    piece = chunk.outputs[0].path
    listing = work / "chunks.ffconcat"
    listing.write_text(concat_list([piece, piece]), encoding="utf-8")
    joined = work / f"joined.{container}"
    quiet_ffmpeg(ffmpeg, *join_argv(listing, sound.outputs[0].path, spec.outputs[0], joined))
    data = joined.read_bytes()
    assert not VERSION.search(data), VERSION.findall(data)
    assert not [s for s in SECRETS if s.encode() in data]
    assert _tags(joined)["title"] == "T1"


@pytest.fixture(scope="module")
def surround(ffmpeg: str, folder: Path) -> Path:
    """1 s of 5.1 sound at different levels per channel (FLAC in MKV), over a small picture."""
    path = folder / "surround.mkv"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1"),
        *("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000:duration=2"),
        *("-shortest", "-filter:a", "pan=5.1|c0=0.5*c0|c1=0.5*c0|c2=0.7*c0|c3=0.3*c0|c4=0.25*c0|c5=0.25*c0"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac"),
        path,
    )
    return path


def _measured(ffmpeg: str, body: dict[str, Any], source: Path) -> Assets:
    """The loudness pass the worker runs before the encode (nothing when the job has no loudness)."""
    spec = JobSpec.model_validate({"input": "file:///in.mkv", **body})
    if spec.operations is None or spec.operations.loudness is None:
        return Assets()

    def scan(args: list[str]) -> str:
        result = run_ffmpeg([ffmpeg, *args], on_progress=None, duration=None)
        assert result.returncode == 0, result.stderr_tail
        return result.stderr_tail

    return Assets(loudness=measure_loudness(spec, probe(source), source, scan))


@pytest.mark.parametrize("loudness", [False, True], ids=["plain", "loudness"])
def test_each_output_keeps_its_own_channel_layout(
    ffmpeg: str, surround: Path, folder: Path, loudness: bool
) -> None:
    body: dict[str, Any] = {
        "outputs": [
            {"name": "surround", "container": "mkv", "video": {"codec": "none"}, "audio": {"codec": "aac"}},
            {"name": "stereo", "container": "m4a", "audio": {"channels": 2}},
            {"name": "mono", "container": "mp3", "audio": {"channels": 1}},
        ]
    }
    if loudness:
        body["operations"] = {"loudness": {"integrated": -23}}
    _, plan, _ = run_plan(
        ffmpeg, body, surround, folder / f"layouts-{loudness}", assets=_measured(ffmpeg, body, surround)
    )
    found = {}
    for output in plan.outputs:
        with av.open(str(output.path)) as container:
            stream = container.streams.audio[0]
            found[output.output.name] = (stream.codec_context.channels, stream.codec_context.layout.name)
    assert found == {"surround": (6, "5.1"), "stereo": (2, "stereo"), "mono": (1, "mono")}


def _r128(ffmpeg: str, path: Path) -> tuple[float, float, float]:
    """(integrated LUFS, LRA, true peak dBFS) of a file's first sound stream, from ebur128's summary."""
    meter = ("-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-")
    result = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostats", "-i", str(path), *meter],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = result.stderr[result.stderr.rindex("Summary:") :]
    value = {k: float(re.search(rf"{k}:\s+(-?[\d.]+|-inf)", summary).group(1)) for k in ("I", "LRA", "Peak")}  # type: ignore[union-attr]
    return value["I"], value["LRA"], value["Peak"]


def test_each_layout_is_normalised_on_its_own_and_measured(ffmpeg: str, surround: Path, folder: Path) -> None:
    body: dict[str, Any] = {
        "outputs": [
            {"name": "surround", "container": "mkv", "video": {"codec": "none"}, "audio": {"codec": "aac"}},
            {"name": "stereo", "container": "m4a", "audio": {"channels": 2}},
        ],
        "groups": [
            {"name": "hls", "type": "hls", "ladder": ["240p"], "preset": "ultrafast", "segment_seconds": 1}
        ],
        "operations": {"loudness": {"integrated": -23}},
    }
    assets = _measured(ffmpeg, body, surround)
    assert set(assets.loudness or {}) == {(0, 2), (0, 6)}  # (sound source, channels)
    # The downmix (scaled for headroom) measures far from the 5.1 mix it comes from: one correction
    # cannot fit both.
    assert abs((assets.loudness or {})[0, 2]["input_i"] - (assets.loudness or {})[0, 6]["input_i"]) > 2
    spec, plan, _ = run_plan(ffmpeg, body, surround, folder / "loud-layouts", assets=assets)
    for output in plan.outputs:
        integrated, _, _ = _r128(ffmpeg, output.path)
        assert integrated == pytest.approx(-23, abs=0.5), output.output.name
    results = collect_results(plan, spec, "file:///pub/j")
    loudness = {r.name: (r.metrics or {}).get("loudness") for r in results.rows if r.kind != "rendition"}
    assert set(loudness) >= {"surround", "stereo", "hls/aac_128k"}, loudness
    for name in ("surround", "stereo", "hls/aac_128k"):
        reading = loudness[name]
        assert reading is not None and reading["within_tolerance"], (name, reading)
        assert reading["integrated_lufs"] == pytest.approx(-23, abs=0.5)
        assert reading["true_peak_dbtp"] <= -1 + 0.3 and reading["lra_lu"] >= 0


def test_a_wide_range_source_still_reaches_its_target_linearly(ffmpeg: str, folder: Path) -> None:
    """5 s quiet then 5 s loud: LRA ~17.5 LU, far over the default target range of 7."""
    wide = folder / "wide.flac"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "aevalsrc='(0.012*lt(t,5)+0.09*gte(t,5))*sin(2*PI*440*t)':s=48000:d=10"),
        *("-c:a", "flac", wide),
    )
    body: dict[str, Any] = {
        "outputs": [{"name": "wide", "container": "m4a"}],
        "operations": {"loudness": {"integrated": -23}},
    }
    assets = _measured(ffmpeg, body, wide)
    assert (assets.loudness or {})[0, 1]["input_lra"] > 15
    spec, plan, _ = run_plan(ffmpeg, body, wide, folder / "wide", assets=assets)
    integrated, lra, _ = _r128(ffmpeg, plan.outputs[0].path)
    assert integrated == pytest.approx(-23, abs=0.5) and lra > 15  # linear: the range is kept
    reading = (collect_results(plan, spec, "file:///pub/j").rows[0].metrics or {})["loudness"]
    assert reading["within_tolerance"] and reading["integrated_lufs"] == pytest.approx(integrated, abs=0.3)


def test_sharp_peaks_are_limited_and_the_target_still_met(ffmpeg: str, folder: Path) -> None:
    """A quiet tone with sharp full-scale clicks: the gain to -23 would lift the true peak over the ceiling,
    so loudnorm refuses its linear mode (its dynamic mode came out at -24.7 LUFS)."""
    hits = folder / "hits.flac"
    tone, clicks = (
        "0.05*sin(2*PI*440*t)*(0.6+0.4*sin(2*PI*3*t))",
        "0.95*lt(mod(t,0.5),0.002)*sin(2*PI*1000*t)",
    )
    quiet_ffmpeg(ffmpeg, "-f", "lavfi", "-i", f"aevalsrc='{tone}+{clicks}':s=48000:d=4", "-c:a", "flac", hits)
    body: dict[str, Any] = {
        "outputs": [{"name": "hits", "container": "m4a", "audio": {"bitrate_kbps": 192}}],
        "operations": {"loudness": {"integrated": -23, "true_peak": -1}},
    }
    assets = _measured(ffmpeg, body, hits)
    found = (assets.loudness or {})[0, 1]
    assert found["input_tp"] + (-23 - found["input_i"]) > 0  # linear gain alone would clip
    # The gain is raised by what the limiter takes off the clicks' loudness.
    assert found["limited_gain_db"] > -23 - found["input_i"] + 1
    spec, plan, _ = run_plan(ffmpeg, body, hits, folder / "hits", assets=assets)
    integrated, _, peak = _r128(ffmpeg, plan.outputs[0].path)
    assert integrated == pytest.approx(-23, abs=0.5)
    assert peak <= -1 + 0.5  # the AAC encode may add a little over the limiter's ceiling
    reading = (collect_results(plan, spec, "file:///pub/j").rows[0].metrics or {})["loudness"]
    assert reading["within_tolerance"] and reading["true_peak_dbtp"] <= -1 + 0.1


def test_only_the_sound_the_output_keeps_is_measured(ffmpeg: str, folder: Path) -> None:
    """2 s of picture with 4 s of sound whose last 2 s (cut off with the picture) are 12 dB louder."""
    source = folder / "long_tail.mkv"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2"),
        *("-f", "lavfi", "-i", "aevalsrc='(0.05+0.15*gte(t,2))*sin(2*PI*440*t)':s=48000:d=4"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac"),
        source,
    )
    body: dict[str, Any] = {
        "outputs": [
            {"name": "o", "container": "mkv", "video": {"preset": "ultrafast"}, "audio": {"codec": "flac"}}
        ],
        "operations": {"loudness": {"integrated": -23}},
    }
    spec, plan, _ = run_plan(
        ffmpeg, body, source, folder / "long-tail", assets=_measured(ffmpeg, body, source)
    )
    integrated, _, _ = _r128(ffmpeg, plan.outputs[0].path)
    assert integrated == pytest.approx(-23, abs=0.5)
    assert (collect_results(plan, spec, "file:///pub/j").rows[0].metrics or {})["loudness"][
        "within_tolerance"
    ]


def _idet(ffmpeg: str, path: Path) -> dict[str, int]:
    """idet's multi-frame verdicts on a file's pictures: combing shows as TFF/BFF frames."""
    result = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostats", "-i", str(path), "-vf", "idet", "-an", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = result.stderr[result.stderr.rindex("Multi frame detection:") :].splitlines()[0]
    return {k: int(v) for k, v in re.findall(r"(TFF|BFF|Progressive|Undetermined):\s*(\d+)", line)}


def test_interlaced_sources_are_deinterlaced_by_default(ffmpeg: str, folder: Path) -> None:
    """25i made from 50p motion (two moments per frame): coded progressive without bwdif, it is combed."""
    source = folder / "interlaced.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=50:duration=2,tinterlace=mode=interleave_top"),
        *("-vf", "setfield=tff", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "10"),
        *("-flags", "+ilme+ildct", "-x264-params", "tff=1", source),
    )
    assert probe(source).video.interlaced  # type: ignore[union-attr]
    assert _idet(ffmpeg, source)["TFF"] > 30
    body: dict[str, Any] = {
        "outputs": [
            {"name": "p", "container": "mp4", "video": {"preset": "ultrafast", "crf": 10}},
            {"name": "copy", "container": "mkv", "video": {"codec": "copy"}},  # still allowed: fields kept
        ],
        "groups": [
            {"name": "hls", "type": "hls", "ladder": ["240p"], "preset": "ultrafast", "segment_seconds": 1}
        ],
    }
    _, plan, _ = run_plan(ffmpeg, body, source, folder / "deint")
    assert plan.notes.get("deinterlaced") == "auto"
    progressive = plan.outputs[0].path
    verdict = _idet(ffmpeg, progressive)
    assert verdict["Progressive"] > 40 and verdict["TFF"] + verdict["BFF"] < 10, verdict
    assert len(frames(progressive)) == 50
    rung = folder / "deint" / "groups" / "hls" / "240p.m3u8"
    verdict = _idet(ffmpeg, rung)
    assert verdict["TFF"] + verdict["BFF"] < 10, verdict
    # Field rate: one picture per field, 50p from 25i.
    body = {
        "outputs": [{"name": "f", "container": "mp4", "video": {"preset": "ultrafast"}}],
        "operations": {"deinterlace": "field_rate"},
    }
    _, plan, _ = run_plan(ffmpeg, body, source, folder / "field-rate")
    out = probe(plan.outputs[0].path).video
    assert out is not None and out.fps == pytest.approx(50) and len(frames(plan.outputs[0].path)) == 100


def test_fields_the_stream_does_not_flag_are_found_by_idet_and_deinterlaced(
    ffmpeg: str, folder: Path
) -> None:
    """MPEG-4 Part 2 in MP4 states no field order and flags no frame: only looking at the pictures (idet)
    tells combed 25i from progressive video. A progressive source of the same kind is left alone."""
    combed = folder / "unflagged.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=50:duration=2,tinterlace=mode=interleave_top"),
        *("-c:v", "mpeg4", "-q:v", "2", combed),
    )
    video = probe(combed).video
    assert video is not None and video.interlaced and video.field_parity == "tff"
    assert not any(f.interlaced_frame for f in frames(combed))  # nothing in the file says so
    body: dict[str, Any] = {
        "outputs": [{"name": "p", "container": "mp4", "video": {"preset": "ultrafast", "crf": 10}}]
    }
    _, plan, _ = run_plan(ffmpeg, body, combed, folder / "unflagged")
    verdict = _idet(ffmpeg, plan.outputs[0].path)
    assert verdict["Progressive"] > 40 and verdict["TFF"] + verdict["BFF"] < 10, verdict
    assert len(frames(plan.outputs[0].path)) == 50

    progressive = folder / "progressive-mpeg4.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "gradients=size=320x240:rate=25:speed=0.05:duration=2"),
        *("-c:v", "mpeg4", "-q:v", "2", progressive),
    )
    video = probe(progressive).video
    assert video is not None and not video.interlaced and video.field_parity is None
    _, plan, _ = run_plan(ffmpeg, body, progressive, folder / "progressive")
    assert "deinterlaced" not in plan.notes and "bwdif" not in " ".join(plan.argv)


def test_webm_and_mkv_put_their_seek_index_before_the_media(ffmpeg: str, phone: Path, folder: Path) -> None:
    body: dict[str, Any] = {
        "outputs": [
            {"name": "web", "container": "webm", "video": {"preset": "ultrafast"}},
            {"name": "mkv", "container": "mkv", "video": {"preset": "ultrafast"}},
        ]
    }
    _, plan, _ = run_plan(ffmpeg, body, phone, folder / "cues")
    for output in plan.outputs:
        order = _segment_children(output.path.read_bytes())
        assert "cues" in order and order.index("cues") < order.index("cluster"), (output.output.name, order)


def _vint(data: bytes, at: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `at`: (value, length)."""
    first = data[at]
    length = 8 - first.bit_length() + 1
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[at + 1 : at + length]:
        value = value << 8 | byte
    return value, length


def _segment_children(data: bytes) -> list[str]:
    """The top-level elements of a Matroska Segment, in file order (only the ones this test names)."""
    names = {0x1C53BB6B: "cues", 0x1F43B675: "cluster", 0x114D9B74: "seekhead", 0x1654AE6B: "tracks"}
    at, order = 0, []
    while at < len(data):
        element, n = _vint(data, at, keep_marker=True)
        size, m = _vint(data, at + n, keep_marker=False)
        at += n + m
        if element == 0x18538067:  # Segment: walk into it
            continue
        order.append(names.get(element, hex(element)))
        at += size
    return order


def test_scaled_streams_are_scored_at_display_size_so_rungs_rank_in_order(
    ffmpeg: str, folder: Path, tmp_path: Path
) -> None:
    # Fine detail everywhere (a zooming Mandelbrot set): downscaling takes much of it away, so the old
    # method (each rung at its own size against a downscaled reference) ranked these rungs backwards,
    # 95.6 / 96.6 / 97.7; testsrc2's flat areas and large shapes hid that.
    source = folder / "fine-detail.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "mandelbrot=size=640x360:rate=25,trim=duration=1"),
        *("-c:v", "libx264", "-qp", "0", "-preset", "ultrafast"),
        source,
    )
    body = {
        "outputs": [
            {"name": "small", "container": "mp4", "video": {"height": 180, "crf": 18, "preset": "veryfast"}},
            {"name": "full", "container": "mp4", "video": {"crf": 18, "preset": "veryfast"}},
        ],
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "ladder": [
                    {"name": "360p", "height": 360, "bitrate_kbps": 1500},
                    {"name": "180p", "height": 180, "bitrate_kbps": 600},
                    {"name": "90p", "height": 90, "bitrate_kbps": 300},
                ],
                "segment_seconds": 1,
                "preset": "veryfast",
            }
        ],
        "quality": {"metrics": ["vmaf", "psnr"], "subsample": 2},
    }
    job, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    rows = {row.name: row.metrics for row in collect_results(plan, job, "file:///published/job").rows}
    rungs = [rows[f"abr/{name}"] for name in ("360p", "180p", "90p")]
    display = [m["vmaf"]["mean"] for m in rungs]
    # Upscaled to the source's size and compared with it, scaling loss counts: the bigger rung wins.
    assert display[0] > display[1] > display[2], display
    # Their own-size scores (kept as `native`) put the smallest rung above the top one.
    assert rungs[2]["native"]["vmaf"]["mean"] > display[0], (rungs[2]["native"], display)
    assert "native" not in rungs[0] and "scored_at" not in rungs[0]  # already at display size
    for metrics, (w, h) in zip(rungs[1:], [(320, 180), (160, 90)], strict=True):
        assert metrics["scored_at"] == {"width": 640, "height": 360}
        native = metrics["native"]
        assert (native["width"], native["height"]) == (w, h)
        # At its own size against a downscaled reference, the rung looks far better than viewers see it.
        assert native["vmaf"]["mean"] > metrics["vmaf"]["mean"] + 5
    small = rows["small"]
    assert small["scored_at"] == {"width": 640, "height": 360} and small["native"]["psnr"]["mean"] > 30
    assert "native" not in rows["full"]


@pytest.fixture(scope="module")
def hdr10(ffmpeg: str, folder: Path) -> Path:
    """0.4 s of HDR10: HEVC Main 10, BT.2020/PQ, with mastering-display and content-light SEI."""
    path = folder / "hdr10.mp4"
    x265 = (
        "log-level=error:hdr10=1:repeat-headers=1:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"
        ":master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400"
    )
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25:duration=0.4"),
        "-vf",
        "format=yuv420p,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv,"
        "zscale=p=bt2020:t=smpte2084:m=bt2020nc:r=tv:npl=100,format=yuv420p10le",
        *("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", x265, "-tag:v", "hvc1"),
        path,
    )
    info = probe(path).video
    assert info is not None and info.hdr and info.bit_depth == 10
    return path


HDR_BOXES = (b"mdcv", b"clli")


def test_hdr_sources_are_tone_mapped_for_sdr_targets_by_default(
    ffmpeg: str, hdr10: Path, tmp_path: Path
) -> None:
    body = {
        "outputs": [{"name": "avc", "container": "mp4", "video": {"preset": "ultrafast"}}],
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "segment_type": "fmp4",
                "ladder": [{"height": 96, "bitrate_kbps": 300}],
                "preset": "ultrafast",
                "audio": [],
            }
        ],
    }
    job, plan, _ = run_plan(ffmpeg, body, hdr10, tmp_path / "w")
    collect_results(plan, job, "file:///published/job")  # packages the group
    assert plan.notes["tonemapped"] is True
    folder = plan.groups[0].folder
    for path in [plan.outputs[0].path, *folder.glob("*.mp4"), *folder.glob("*.m4s")]:
        data = path.read_bytes()
        assert not any(box in data for box in HDR_BOXES), path.name
    video = probe(plan.outputs[0].path).video
    assert video is not None and video.color_transfer == "bt709" and video.color_primaries == "bt709"
    assert video.bit_depth == 8 and not video.hdr
    assert "VIDEO-RANGE=SDR" in (folder / "master.m3u8").read_text()


def test_hdr_stays_hdr_on_ten_bit_hevc_and_can_forbid_tone_mapping(
    ffmpeg: str, hdr10: Path, tmp_path: Path
) -> None:
    hevc = {
        "name": "abr",
        "type": "hls",
        "segment_type": "fmp4",
        "video_codec": "hevc",
        "ladder": [{"height": 96, "bitrate_kbps": 300, "codec": "hevc", "pix_fmt": "yuv420p10le"}],
        "preset": "ultrafast",
        "audio": [],
    }
    job, plan, _ = run_plan(ffmpeg, {"groups": [hevc]}, hdr10, tmp_path / "w")
    collect_results(plan, job, "file:///published/job")
    assert "tonemapped" not in plan.notes
    assert "VIDEO-RANGE=PQ" in (plan.groups[0].folder / "master.m3u8").read_text()

    never = {"outputs": [{"container": "mp4"}], "operations": {"tonemap": {"when": "never"}}}
    with pytest.raises(JobFailure) as refused:
        run_plan(ffmpeg, never, hdr10, tmp_path / "n")
    assert refused.value.failure_class is FailureClass.spec_unsupported
    assert "outputs.0" in str(refused.value) and "tonemap" in str(refused.value)


def _first_frame_side_data(path: Path) -> set[str]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return {str(side.type).rsplit(".", 1)[-1] for side in frame.side_data}


def test_mixed_jobs_tone_map_only_their_sdr_outputs_and_hdr_keeps_its_hdr10_metadata(
    ffmpeg: str, hdr10: Path, tmp_path: Path
) -> None:
    source = probe(hdr10).video
    assert source is not None and source.hdr10 is not None
    assert source.hdr10.x265_params() == [
        "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)",
        "max-cll=1000,400",
    ]
    hevc = {"codec": "hevc", "pix_fmt": "yuv420p10le", "preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "hdr", "container": "mp4", "video": {**hevc, "crf": 20}},
            {"name": "sdr", "container": "mp4", "video": {"preset": "ultrafast", "crf": 18}},
        ],
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "segment_type": "fmp4",
                "ladder": [
                    {
                        "name": "pq",
                        "height": 96,
                        "bitrate_kbps": 400,
                        "codec": "hevc",
                        "pix_fmt": "yuv420p10le",
                    },
                    {"name": "avc", "height": 48, "bitrate_kbps": 200},
                ],
                "preset": "ultrafast",
                "audio": [],
            }
        ],
        "poster": {"time": 0.2},
        "quality": {"metrics": ["psnr"]},
    }
    job, plan, _ = run_plan(ffmpeg, body, hdr10, tmp_path / "w")
    rows = {row.name: row.metrics for row in collect_results(plan, job, "file:///published/job").rows}
    hdr, sdr = (probe(p.path).video for p in plan.outputs)
    assert hdr is not None and sdr is not None
    # The HEVC output stays HDR10: PQ, 10-bit, the source's mastering display and light levels stated to
    # x265 (SEI on the frames) and in the MP4 (mdcv, clli).
    assert (hdr.color_transfer, hdr.color_primaries, hdr.bit_depth) == ("smpte2084", "bt2020", 10)
    assert hdr.hdr10 == source.hdr10
    assert f"master-display={source.hdr10.x265_params()[0].split('=', 1)[1]}" in " ".join(plan.argv)
    assert {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} <= _first_frame_side_data(
        plan.outputs[0].path
    )
    assert all(box in plan.outputs[0].path.read_bytes() for box in HDR_BOXES)
    # The H.264 output is tone-mapped on its own branch: BT.709, 8-bit, no HDR side data anywhere.
    assert (sdr.color_transfer, sdr.color_primaries, sdr.bit_depth, sdr.hdr10) == ("bt709", "bt709", 8, None)
    assert not any(box in plan.outputs[1].path.read_bytes() for box in HDR_BOXES)
    assert not {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} & _first_frame_side_data(
        plan.outputs[1].path
    )
    # Each stream is scored against its own branch's picture (an SDR encode against the HDR reference
    # would score far lower).
    assert rows["sdr"]["psnr"]["mean"] > 35 and rows["hdr"]["psnr"]["mean"] > 35
    # The ladder: each variant says its own range; the HEVC rung's pictures carry the HDR10 SEI, the H.264
    # rung's none (ffmpeg's HLS muxer writes no mdcv/clli boxes into fMP4 init segments).
    folder = plan.groups[0].folder
    master = (folder / "master.m3u8").read_text()
    assert master.count("VIDEO-RANGE=PQ") == 1 and master.count("VIDEO-RANGE=SDR") == 1
    hdr10_sei = {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"}
    for rung, has_hdr10 in (("pq", True), ("avc", False)):
        joined = tmp_path / f"{rung}.mp4"
        joined.write_bytes(
            (folder / f"{rung}_init.mp4").read_bytes() + (folder / f"{rung}_00000.m4s").read_bytes()
        )
        assert (hdr10_sei <= _first_frame_side_data(joined)) is has_hdr10, rung
        assert not hdr10_sei & _first_frame_side_data(joined) or has_hdr10, rung
    # The poster is an SDR picture too.
    assert plan.notes["tonemapped"] is True


@pytest.fixture(scope="module")
def three_tracks(ffmpeg: str, folder: Path) -> Path:
    """A mov with three PCM tracks: mono English left and right, stereo French."""
    path = folder / "tracks.mov"
    tone = "sine=frequency={}:sample_rate=48000:duration=0.5"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.5"),
        *("-f", "lavfi", "-i", tone.format(440), "-f", "lavfi", "-i", tone.format(660)),
        *("-f", "lavfi", "-i", tone.format(880) + ",pan=stereo|c0=c0|c1=c0"),
        *("-map", "0", "-map", "1", "-map", "2", "-map", "3", "-c:v", "libx264", "-preset", "ultrafast"),
        *("-c:a", "pcm_s16le", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=eng"),
        *("-metadata:s:a:2", "language=fra"),
        path,
    )
    return path


def test_audio_tracks_are_picked_by_language_or_index_and_unused_ones_reported(
    ffmpeg: str, three_tracks: Path, tmp_path: Path
) -> None:
    info = probe(three_tracks)
    assert [(t.index, t.language, t.channels) for t in info.audio_tracks] == [
        (0, "eng", 1),
        (1, "eng", 1),
        (2, "fra", 2),
    ]
    output = {"name": "o", "container": "mp4", "video": {"preset": "ultrafast"}}
    job, plan, _ = run_plan(ffmpeg, {"outputs": [output]}, three_tracks, tmp_path / "d")
    (row,) = collect_results(plan, job, "file:///published/job").rows
    assert [t["index"] for t in row.details["unused_audio_tracks"]] == [1, 2]
    assert row.details["unused_audio_tracks"][1] == {
        "index": 2,
        "language": "fra",
        "codec": "pcm_s16le",
        "channels": 2,
    }

    french = {"outputs": [output], "operations": {"audio_track": {"language": "fra"}}}
    job, plan, _ = run_plan(ffmpeg, french, three_tracks, tmp_path / "f")
    (row,) = collect_results(plan, job, "file:///published/job").rows
    audio = probe(plan.outputs[0].path).audio
    assert audio is not None and audio.channels == 2
    assert [t["index"] for t in row.details["unused_audio_tracks"]] == [0, 1]

    second = {"outputs": [output], "operations": {"audio_track": {"index": 1}}}
    job, plan, _ = run_plan(ffmpeg, second, three_tracks, tmp_path / "s")
    assert plan.notes["unused_audio_tracks"][0]["index"] == 0

    missing = {"outputs": [output], "operations": {"audio_track": {"language": "deu"}}}
    with pytest.raises(JobFailure, match="no audio track with language 'deu'"):
        run_plan(ffmpeg, missing, three_tracks, tmp_path / "m")


def _tone_hz(path: Path, stream: int) -> list[float]:
    """Each channel's frequency (from zero crossings) in audio stream `stream` of `path`."""
    crossings: list[int] = []
    samples = 0
    last: list[float] = []
    with av.open(str(path)) as container:
        audio = container.streams.audio[stream]
        for frame in container.decode(audio):
            frame = frame.reformat(format="fltp") if frame.format.name != "fltp" else frame
            if not crossings:
                crossings = [0] * len(frame.planes)
                last = [0.0] * len(frame.planes)
            for ch, plane in enumerate(frame.planes):
                values = array("f", bytes(plane))[: frame.samples]
                for value in values:
                    if (value >= 0) != (last[ch] >= 0):
                        crossings[ch] += 1
                    last[ch] = value
            samples += frame.samples
            rate = frame.sample_rate
    return [c / 2 / (samples / rate) for c in crossings]


def test_audio_track_pair_is_validated_at_submission() -> None:
    for pick, field in (({"pair": [0, 0]}, "pair"), ({"pair": [0, 1], "index": 2}, "pair")):
        with pytest.raises(ValidationError) as info:
            JobSpec.model_validate(
                {
                    "input": "file:///in.mov",
                    "outputs": [{"container": "mp4"}],
                    "operations": {"audio_track": pick},
                }
            )
        (error,) = info.value.errors()
        assert error["loc"][:2] == ("operations", "audio_track")
        assert (error.get("ctx") or {}).get("field") == field
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(
            {
                "input": "file:///in.mov",
                "outputs": [{"container": "mp4", "audio": {"codec": "copy"}, "audio_tracks": [{"index": 1}]}],
            }
        )
    assert (info.value.errors()[0].get("ctx") or {}).get("field") == "audio_tracks"


def test_mono_tracks_pair_into_stereo_and_other_languages_are_carried(
    ffmpeg: str, three_tracks: Path, tmp_path: Path
) -> None:
    pair = {"pair": [0, 1]}
    fast = {"preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "both", "container": "mp4", "video": fast, "audio_tracks": [pair, {"language": "fra"}]},
            {"name": "main", "container": "mkv", "video": fast, "audio": {"codec": "opus"}},
        ],
        "groups": [
            {
                "name": type_,
                "type": type_,
                "ladder": [{"height": 48, "bitrate_kbps": 200}],
                "preset": "ultrafast",
                "audio": [
                    {"name": "main", "default": True},
                    {"name": "french", "track": {"language": "fra"}, "bitrate_kbps": 64},
                ],
            }
            for type_ in ("hls", "dash")
        ],
        "operations": {"audio_track": pair, "loudness": {"integrated": -23}},
    }
    assets = _measured(ffmpeg, body, three_tracks)
    # The loudness pass measures the paired stereo and the French track, each in its own right.
    assert set(assets.loudness or {}) == {(0, 2), (1, 2)}
    job, plan, _ = run_plan(ffmpeg, body, three_tracks, tmp_path / "p", assets=assets)
    rows = {row.name: row for row in collect_results(plan, job, "file:///published/job").rows}
    paths = {p.output.name: p.path for p in plan.outputs}
    with av.open(str(paths["both"])) as container:
        found = [
            (s.codec_context.channels, s.layout.name, s.metadata.get("language"))
            for s in container.streams.audio
        ]
    assert found == [(2, "stereo", "eng"), (2, "stereo", "fra")]
    left, right = _tone_hz(paths["both"], 0)
    # Left is the 440 Hz track, right the 660 Hz one (priming and the fit to the picture add some silence,
    # so the rates are checked loosely and their ratio closely).
    assert left == pytest.approx(440, rel=0.1) and right / left == pytest.approx(1.5, rel=0.02)
    assert _tone_hz(paths["both"], 1) == [pytest.approx(880, rel=0.1)] * 2
    # Without audio_tracks an output takes operations.audio_track's pick: the pair, stereo.
    with av.open(str(paths["main"])) as container:
        (main,) = container.streams.audio
        assert (main.codec_context.channels, main.layout.name) == (2, "stereo")
    left, right = _tone_hz(paths["main"], 0)
    assert left == pytest.approx(440, rel=0.1) and right / left == pytest.approx(1.5, rel=0.02)
    # Every input track is used by something: none is reported unused.
    assert all("unused_audio_tracks" not in (row.details or {}) for row in rows.values())
    # Each normalised track is metered: the paired main track and the French one.
    assert rows["both"].metrics is not None and rows["both"].metrics["loudness"]["within_tolerance"]
    (french,) = rows["both"].metrics["loudness_tracks"]
    assert french["within_tolerance"] and french["target_lufs"] == -23
    # HLS: one EXT-X-MEDIA per rendition, with NAME and the input track's LANGUAGE.
    master = (plan.groups[0].folder / "master.m3u8").read_text()
    media = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA:TYPE=AUDIO")]
    assert len(media) == 2
    assert 'NAME="main"' in media[0] and 'LANGUAGE="eng"' in media[0] and 'CHANNELS="2"' in media[0]
    assert 'NAME="french"' in media[1] and 'LANGUAGE="fra"' in media[1]
    assert (
        _tone_hz(_joined(plan.groups[0].folder, "french", tmp_path), 0) == [pytest.approx(880, rel=0.1)] * 2
    )
    # DASH: one audio AdaptationSet per language, with its lang.
    mpd = (plan.groups[1].folder / "manifest.mpd").read_text()
    langs = re.findall(r'<AdaptationSet[^>]*contentType="audio"[^>]*lang="([a-z]+)"', mpd)
    assert sorted(langs) == ["eng", "fra"]


def _joined(folder: Path, name: str, tmp_path: Path) -> Path:
    """An HLS rendition's TS segments joined into one file."""
    path = tmp_path / f"{name}.ts"
    path.write_bytes(b"".join(p.read_bytes() for p in sorted(folder.glob(f"{name}_*.ts"))))
    return path


@pytest.fixture(scope="module")
def subtitled(ffmpeg: str, folder: Path) -> Path:
    """An MP4 with two mov_text subtitle tracks, English and French, and a tone."""
    cues = {"eng": "Hello there", "fra": "Bonjour"}
    srts = []
    for language, text in cues.items():
        srt = folder / f"{language}.srt"
        srt.write_text(f"1\n00:00:00,100 --> 00:00:00,400\n{text}\n", encoding="utf-8")
        srts += ["-i", srt]
    path = folder / "subtitled.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.5"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=0.5"),
        *srts,
        *("-map", "0", "-map", "1", "-map", "2", "-map", "3"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-c:s", "mov_text"),
        *("-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=fra"),
        path,
    )
    return path


def _subtitles(path: Path) -> list[tuple[str, str | None, bytes]]:
    """(codec, language, every packet's bytes) of each subtitle stream of `path`."""
    with av.open(str(path)) as container:
        found = []
        for stream in container.streams.subtitles:
            data = b"".join(bytes(p) for p in container.demux(stream) if p.size)
            container.seek(0)
            found.append((stream.codec_context.codec.canonical_name, stream.metadata.get("language"), data))
        return found


def test_subtitle_tracks_are_carried_where_the_container_can_hold_them(
    ffmpeg: str, subtitled: Path, tmp_path: Path
) -> None:
    assert [(t.index, t.codec, t.language) for t in probe(subtitled).subtitle_tracks] == [
        (0, "mov_text", "eng"),
        (1, "mov_text", "fra"),
    ]
    fast = {"preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "mp4", "container": "mp4", "video": fast},
            {"name": "mkv", "container": "mkv", "video": fast},
            {
                "name": "webm",
                "container": "webm",
                "video": {"codec": "vp9", "crf": 40},
                "audio": {"codec": "opus"},
            },
            {"name": "ts", "container": "ts", "video": fast},
            {"name": "quiet", "container": "mp4", "video": fast, "subtitles": "drop"},
        ],
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "ladder": [{"height": 48, "bitrate_kbps": 200}],
                "preset": "ultrafast",
            }
        ],
    }
    job, plan, _ = run_plan(ffmpeg, body, subtitled, tmp_path / "w")
    rows = {row.name: row for row in collect_results(plan, job, "file:///published/job").rows}
    paths = {p.output.name: p.path for p in plan.outputs}
    for name, codec in (("mp4", "mov_text"), ("mkv", "subrip"), ("webm", "webvtt")):
        tracks = _subtitles(paths[name])
        assert [(c, lang) for c, lang, _ in tracks] == [(codec, "eng"), (codec, "fra")], name
        assert b"Hello there" in tracks[0][2] and b"Bonjour" in tracks[1][2], name
        assert "subtitles_not_carried" not in (rows[name].details or {})
    assert _subtitles(paths["quiet"]) == [] and "subtitles_not_carried" not in (rows["quiet"].details or {})
    # MPEG-TS holds no text subtitles here: the result names the tracks left out.
    missing = [
        {"index": 0, "language": "eng", "codec": "mov_text"},
        {"index": 1, "language": "fra", "codec": "mov_text"},
    ]
    assert _subtitles(paths["ts"]) == []
    assert rows["ts"].details is not None and rows["ts"].details["subtitles_not_carried"] == missing
    # The HLS group carries them as WebVTT renditions (test_hls_groups_carry_subtitles_as_webvtt_renditions).
    assert "subtitles_not_carried" not in (rows["abr"].details or {})


# x264 and x265 state their version and every option in a user-data SEI ("x264 - core 164 ... options:").
ENCODER_TAGS = re.compile(rb"x264 - core|x265 \(build|videolan|Multicoreware|options: ")


def test_no_encoder_version_sei_in_any_video_bitstream(ffmpeg: str, hdr10: Path, tmp_path: Path) -> None:
    hevc = {"codec": "hevc", "pix_fmt": "yuv420p10le", "preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "avc", "container": "mp4", "video": {"preset": "ultrafast"}},
            {"name": "avc_ts", "container": "ts", "video": {"preset": "ultrafast"}},
            {"name": "hdr", "container": "mp4", "video": hevc},
        ],
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "segment_type": "fmp4",
                "ladder": [
                    {
                        "name": "pq",
                        "height": 96,
                        "bitrate_kbps": 300,
                        "codec": "hevc",
                        "pix_fmt": "yuv420p10le",
                    },
                    {"name": "avc", "height": 48, "bitrate_kbps": 200},
                ],
                "preset": "ultrafast",
                "audio": [],
            }
        ],
    }
    job, plan, _ = run_plan(ffmpeg, body, hdr10, tmp_path / "w")
    collect_results(plan, job, "file:///published/job")
    folder = plan.groups[0].folder
    written = [p.path for p in plan.outputs] + sorted(folder.glob("*.mp4")) + sorted(folder.glob("*.m4s"))
    assert len(written) > 5
    for path in written:
        found = ENCODER_TAGS.findall(path.read_bytes())
        assert not found, (path.name, found)
    # The HDR10 SEI are other messages: the HEVC output and rung still carry them on their pictures.
    hdr10_sei = {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"}
    assert hdr10_sei <= _first_frame_side_data(plan.outputs[2].path)
    joined = tmp_path / "pq.mp4"
    joined.write_bytes((folder / "pq_init.mp4").read_bytes() + (folder / "pq_00000.m4s").read_bytes())
    assert hdr10_sei <= _first_frame_side_data(joined)
    # Every H.264 stream still decodes completely.
    assert len(frames(plan.outputs[0].path)) == len(frames(plan.outputs[1].path)) == 10


def test_hls_groups_carry_subtitles_as_webvtt_renditions(
    ffmpeg: str, subtitled: Path, tmp_path: Path
) -> None:
    ladder = [{"height": 48, "bitrate_kbps": 200}, {"height": 32, "bitrate_kbps": 100}]
    body = {
        "groups": [
            {"name": "ts", "type": "hls", "ladder": ladder, "preset": "ultrafast"},
            {"name": "fmp4", "type": "hls", "segment_type": "fmp4", "ladder": ladder, "preset": "ultrafast"},
            {"name": "dash", "type": "dash", "ladder": ladder[:1], "preset": "ultrafast"},
        ]
    }
    job, plan, _ = run_plan(ffmpeg, body, subtitled, tmp_path / "w")
    found = collect_results(plan, job, "file:///published/job")
    rows = {row.name: row for row in found.rows}
    published = {piece.uri.rsplit("/", 2)[-2] + "/" + piece.uri.rsplit("/", 1)[-1] for piece in found.pieces}
    for group in plan.groups[:2]:
        folder = group.folder
        master = (folder / "master.m3u8").read_text()
        media = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA:TYPE=SUBTITLES")]
        assert len(media) == 2, master
        for line, language in zip(media, ("eng", "fra"), strict=True):
            assert 'GROUP-ID="subs"' in line and f'LANGUAGE="{language}"' in line and "URI=" in line
        variants = [line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
        assert len(variants) == 2 and all('SUBTITLES="subs"' in v for v in variants), master
        video = folder / group.rungs[0].playlist
        video_pts = _first_video_pts(folder, video)
        for uri, text in zip(
            re.findall(r'TYPE=SUBTITLES.*URI="([^"]+)"', master), ("Hello there", "Bonjour"), strict=True
        ):
            assert f"{group.name}/{uri}" in published
            playlist = (folder / uri).read_text()
            assert "#EXT-X-ENDLIST" in playlist
            segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
            durations = [float(x) for x in re.findall(r"#EXTINF:([\d.]+),", playlist)]
            assert durations == [float(x) for x in re.findall(r"#EXTINF:([\d.]+),", video.read_text())]
            cues = []
            for name in segments:
                assert f"{group.name}/{name}" in published
                body_text = (folder / name).read_text()
                assert body_text.startswith("WEBVTT\n")
                mapped = re.search(r"X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:00:00:00.000", body_text)
                assert mapped is not None and int(mapped.group(1)) == video_pts, (body_text, video_pts)
                cues += re.findall(r"(\S+) --> (\S+)\n(.+)", body_text)
            # The cue keeps its source timing: 0.1-0.4 s after the first picture.
            assert cues and set(cues) == {("00:00:00.100", "00:00:00.400", text)}, cues
        assert "subtitles_not_carried" not in (rows[group.name].details or {})
    assert len([r for r in found.rows if r.kind == "vtt" and r.group == "ts"]) == 2
    # DASH groups do not carry them yet, and say so.
    assert [t["language"] for t in (rows["dash"].details or {})["subtitles_not_carried"]] == ["eng", "fra"]


def _first_video_pts(folder: Path, playlist: Path) -> int:
    """90 kHz presentation time of the first picture of a rung's first segment."""
    lines = playlist.read_text().splitlines()
    first = next(line for line in lines if line and not line.startswith("#"))
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', "\n".join(lines))
    data = ((folder / init.group(1)).read_bytes() if init else b"") + (folder / first).read_bytes()
    joined = folder.parent / "first_video"
    joined.write_bytes(data)
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        pts = min(p.pts for p in container.demux(stream) if p.pts is not None)
        assert stream.time_base is not None
        return round(pts * stream.time_base * 90_000)
