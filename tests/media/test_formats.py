"""Formats: common inputs (containers, codecs, odd sizes, variable frame rate, rotation, 10-bit) generated
with ffmpeg and transcoded; every output format written from one process and decoded again.

Needs only the ffmpeg binary: `pytest tests/media/test_formats.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest

from framefleet.media.probe import probe
from framefleet.media.results import collect_results, webp_info
from tests.media.helpers import output_paths, quiet_ffmpeg, rotated_copy, run_plan

pytestmark = pytest.mark.integration

PICTURE = "testsrc2=size=176x144:rate=25:duration=1"
SOUND = "sine=frequency=440:sample_rate={rate}:duration=1"

# name: (video options, sound options or None, sound sample rate, lavfi picture source)
INPUTS: dict[str, tuple[list[str], list[str] | None, int, str]] = {
    "mp4": (["-c:v", "libx264", "-preset", "ultrafast"], ["-c:a", "aac"], 48000, PICTURE),
    "mov-prores": (["-c:v", "prores"], ["-c:a", "pcm_s16le"], 48000, PICTURE),
    "mkv-hevc-10bit": (
        [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
            "-x265-params",
            "log-level=error",
        ],
        ["-c:a", "libopus"],
        48000,
        PICTURE,
    ),
    "webm-vp8": (["-c:v", "libvpx"], ["-c:a", "libvorbis"], 44100, PICTURE),
    "webm-vp9": (
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"],
        ["-c:a", "libopus"],
        48000,
        PICTURE,
    ),
    "webm-av1": (["-c:v", "libsvtav1", "-preset", "11"], None, 48000, PICTURE),
    "avi-mpeg4": (["-c:v", "mpeg4"], ["-c:a", "libmp3lame"], 44100, PICTURE),
    "avi-mjpeg": (["-c:v", "mjpeg", "-pix_fmt", "yuvj420p"], None, 48000, PICTURE),
    "ts-mpeg2": (["-c:v", "mpeg2video"], ["-c:a", "mp2"], 48000, PICTURE),
    "m2ts-h264": (["-c:v", "libx264", "-preset", "ultrafast"], ["-c:a", "aac"], 48000, PICTURE),
    "mxf-dnxhd": (
        ["-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p"],
        ["-c:a", "pcm_s16le"],
        48000,
        "testsrc2=size=256x144:rate=25:duration=1",
    ),
    "mxf-mpeg2": (["-c:v", "mpeg2video"], ["-c:a", "pcm_s16le"], 48000, PICTURE),
    "flv": (["-c:v", "flv"], ["-c:a", "libmp3lame"], 44100, PICTURE),
    "wmv": (["-c:v", "wmv2"], ["-c:a", "wmav2"], 44100, PICTURE),
    "mpg": (["-c:v", "mpeg1video"], ["-c:a", "mp2"], 44100, PICTURE),
    "3gp-h263": (["-c:v", "h263"], ["-c:a", "aac", "-ac", "1"], 8000, PICTURE),
    "ogv-theora": (["-c:v", "libtheora"], ["-c:a", "libvorbis"], 44100, PICTURE),
    "y4m": (["-pix_fmt", "yuv420p"], None, 48000, PICTURE),
    "mkv-odd-size": (["-c:v", "ffv1"], None, 48000, "testsrc=size=321x241:rate=25:duration=1"),
    "mp4-vfr": (
        [
            "-vf",
            "select='not(eq(mod(n\\,3)\\,0))'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
        None,
        48000,
        PICTURE,
    ),
    "mp4-rotated": (
        ["-c:v", "libx264", "-preset", "ultrafast", "-display_rotation:v", "270"],
        ["-c:a", "aac"],
        48000,
        PICTURE,
    ),
}
SUFFIX = {
    "mov-prores": "mov",
    "mkv-hevc-10bit": "mkv",
    "webm-vp8": "webm",
    "webm-vp9": "webm",
    "webm-av1": "webm",
    "avi-mpeg4": "avi",
    "avi-mjpeg": "avi",
    "ts-mpeg2": "ts",
    "m2ts-h264": "m2ts",
    "mxf-dnxhd": "mxf",
    "mxf-mpeg2": "mxf",
    "3gp-h263": "3gp",
    "ogv-theora": "ogv",
    "mkv-odd-size": "mkv",
    "mp4-vfr": "mp4",
    "mp4-rotated": "mp4",
}


def generate(ffmpeg: str, name: str, folder: Path) -> Path:
    video, sound, rate, source = INPUTS[name]
    path = folder / f"{name}.{SUFFIX.get(name, name)}"
    args = ["-f", "lavfi", "-i", source]
    if sound is not None:
        args += ["-f", "lavfi", "-i", SOUND.format(rate=rate)]
    if name == "mp4-rotated":
        # -display_rotation is an input option: rotate a plain encode while copying it.
        plain = folder / "plain-for-rotation.mp4"
        quiet_ffmpeg(ffmpeg, *args, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", plain)
        return rotated_copy(ffmpeg, plain, path, 270)
    quiet_ffmpeg(ffmpeg, *args, *video, *(sound or []), path)
    return path


def decode(path: Path) -> tuple[int, float, av.VideoFrame | None, str | None]:
    """(video frames, seconds of the last frame's end, first picture, audio codec) decoding everything."""
    with av.open(str(path)) as container:
        audio = (
            container.streams.audio[0].codec_context.codec.canonical_name if container.streams.audio else None
        )
        count, end, first = 0, 0.0, None
        if container.streams.video:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                first = first or frame
                count += 1
                end = max(end, float((frame.pts or 0) * frame.time_base) + 1 / 25)
        return count, end, first, audio


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("formats")


def transcode(ffmpeg: str, body: dict[str, Any], source: Path, work: Path) -> dict[str, Path]:
    spec, plan, _ = run_plan(ffmpeg, body, source, work, input_uri="file:///in")
    collect_results(plan, spec, "file:///pub/j")  # every output checked and measured as the worker does
    return output_paths(plan)


@pytest.mark.parametrize("name", list(INPUTS))
def test_common_inputs_transcode(ffmpeg: str, folder: Path, name: str) -> None:
    source = generate(ffmpeg, name, folder)
    info = probe(source)
    assert info.video is not None
    frames_in, _, first_in, audio_in = decode(source)
    paths = transcode(
        ffmpeg,
        {"outputs": [{"name": "o", "container": "mp4", "video": {"preset": "ultrafast"}}]},
        source,
        folder / f"out-{name}",
    )
    frames_out, end_out, first_out, audio_out = decode(paths["o"])
    assert frames_out == frames_in, name
    assert first_out is not None and first_in is not None
    expected = (info.video.display_width, info.video.display_height)
    expected = (expected[0] - expected[0] % 2, expected[1] - expected[1] % 2)  # 4:2:0 needs even sides
    assert (first_out.width, first_out.height) == expected
    assert abs(end_out - (info.duration or 0)) <= 1 / 25 + 0.06, (end_out, info.duration)
    assert (audio_out == "aac") == (audio_in is not None)
    if name == "mkv-hevc-10bit":
        assert info.video.bit_depth == 10 and first_out.format.name == "yuv420p"
    if name == "mp4-vfr":
        assert info.video.vfr and frames_out == 16


def test_ten_bit_stays_ten_bit_when_asked(ffmpeg: str, folder: Path) -> None:
    source = generate(ffmpeg, "mkv-hevc-10bit", folder)
    body = {
        "outputs": [
            {
                "name": "h",
                "container": "mkv",
                "video": {"codec": "hevc", "pix_fmt": "yuv420p10le", "preset": "ultrafast"},
            }
        ]
    }
    paths = transcode(ffmpeg, body, source, folder / "out-10bit")
    assert probe(paths["h"]).video.bit_depth == 10  # type: ignore[union-attr]


def test_every_output_format_from_one_process(ffmpeg: str, folder: Path) -> None:
    source = generate(ffmpeg, "mp4", folder)
    body = {
        "outputs": [
            {"name": "mp4", "container": "mp4", "video": {"preset": "ultrafast"}},
            {
                "name": "mkv",
                "container": "mkv",
                "video": {"codec": "hevc", "preset": "ultrafast"},
                "audio": {"codec": "flac"},
            },
            {"name": "mov", "container": "mov", "video": {"preset": "ultrafast"}},
            {"name": "webm", "container": "webm", "video": {"preset": "ultrafast"}},
            {"name": "ts", "container": "ts", "video": {"preset": "ultrafast"}, "audio": {"codec": "mp3"}},
            {"name": "m4a", "container": "m4a"},
            {"name": "mp3", "container": "mp3"},
            {"name": "opus", "container": "opus"},
            {"name": "flac", "container": "flac"},
            {"name": "gif", "container": "gif", "video": {"fps": 10, "width": 88}},
            {"name": "webp", "container": "webp", "video": {"fps": 10, "width": 88}},
            {"name": "jpegs", "container": "images", "video": {"fps": 5}},
            {"name": "pngs", "container": "images", "video": {"codec": "png", "fps": 2, "width": 64}},
        ]
    }
    paths = transcode(ffmpeg, body, source, folder / "all-out")
    expected = {
        "mp4": ("h264", "aac", 25),
        "mkv": ("hevc", "flac", 25),
        "mov": ("h264", "aac", 25),
        "webm": ("vp9", "opus", 25),
        "ts": ("h264", "mp3", 25),
        "m4a": (None, "aac", 0),
        "mp3": (None, "mp3", 0),
        "opus": (None, "opus", 0),
        "flac": (None, "flac", 0),
        "gif": ("gif", None, 10),
    }
    for name, (vcodec, acodec, frames) in expected.items():
        info = probe(paths[name])
        assert (info.video.codec if info.video else None, info.audio.codec if info.audio else None) == (
            vcodec,
            acodec,
        ), name
        assert decode(paths[name])[0] == frames, name
        assert info.duration == pytest.approx(1.0, abs=0.11), name
    assert webp_info(paths["webp"]) == (88, 72, 10)
    jpegs = sorted(paths["jpegs"].iterdir())
    assert len(jpegs) == 5 and all(p.read_bytes()[:2] == b"\xff\xd8" for p in jpegs)
    pngs = sorted(paths["pngs"].iterdir())
    assert [p.name for p in pngs] == ["pngs_00001.png", "pngs_00002.png"]
    assert probe(pngs[0]).video.width == 64  # type: ignore[union-attr]
