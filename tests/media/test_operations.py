"""Editing operations against real ffmpeg: trim, crop, fit modes, fps, rotation, deinterlacing, denoise,
watermark, burned-in subtitles, loudness, channel mix, stripped sound, HDR tone-mapping.

Needs only the ffmpeg binary: `pytest tests/media/test_operations.py`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import av
import pytest

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import JobPlan, plan_job
from framefleet.media.filters import Assets
from framefleet.media.loudness import build_loudness_scan, parse_loudnorm
from framefleet.media.probe import probe
from framefleet.media.runner import run_ffmpeg
from tests.conftest import make_clip
from tests.media.helpers import (
    frame_number,
    frames,
    make_clock,
    mean_luma,
    output_paths,
    quiet_ffmpeg,
    rotated_copy,
    run_plan,
    still_image,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ops")


@pytest.fixture(scope="module")
def clock(ffmpeg: str, folder: Path) -> Path:
    return make_clock(ffmpeg, folder / "clock.mp4", size="320x240")


@pytest.fixture(scope="module")
def clip(ffmpeg: str, folder: Path) -> Path:
    return make_clip(ffmpeg, folder / "clip.mp4", size="320x240")


def encode(
    ffmpeg: str, body: dict[str, Any], source: Path, work: Path, assets: Assets | None = None
) -> tuple[JobPlan, dict[str, Path]]:
    _, plan, _ = run_plan(ffmpeg, body, source, work, assets=assets)
    return plan, output_paths(plan)


def test_trim_is_frame_accurate(ffmpeg: str, clock: Path, folder: Path) -> None:
    body = {
        "outputs": [{"name": "t", "container": "mp4", "video": {"crf": 0, "preset": "ultrafast"}}],
        "operations": {"trim": {"start": 0.52, "end": 1.52}},
    }
    plan, paths = encode(ffmpeg, body, clock, folder / "trim")
    pictures = frames(paths["t"])
    assert [frame_number(pictures[0]), frame_number(pictures[-1])] == [13, 37]
    assert len(pictures) == 25 and plan.duration == pytest.approx(1.0)
    assert probe(paths["t"]).duration == pytest.approx(1.0, abs=1 / 25)


@pytest.mark.parametrize(
    ("fit", "size"),
    [("stretch", (200, 200)), ("fit", (200, 150)), ("fill", (200, 200)), ("pad", (200, 200))],
)
def test_fit_modes(ffmpeg: str, clip: Path, folder: Path, fit: str, size: tuple[int, int]) -> None:
    body = {
        "outputs": [
            {
                "name": "f",
                "container": "mp4",
                "video": {"width": 200, "height": 200, "fit": fit, "preset": "ultrafast"},
            }
        ]
    }
    _, paths = encode(ffmpeg, body, clip, folder / f"fit-{fit}")
    first = frames(paths["f"])[0]
    assert (first.width, first.height) == size
    if fit == "pad":  # 200x150 picture with 25-line black bars above and below
        assert mean_luma(first, (0, 0, 200, 20)) < 20 and mean_luma(first, (0, 180, 200, 20)) < 20
        assert mean_luma(first, (0, 40, 200, 120)) > 40


def test_crop_rotate_and_fps(ffmpeg: str, clip: Path, folder: Path) -> None:
    body = {
        "outputs": [{"name": "r", "container": "mkv", "video": {"fps": 10, "preset": "ultrafast"}}],
        "operations": {"crop": {"x": 40, "y": 20, "width": 200, "height": 120}, "rotate": 90},
    }
    _, paths = encode(ffmpeg, body, clip, folder / "crop")
    pictures = frames(paths["r"])
    assert (pictures[0].width, pictures[0].height) == (120, 200) and len(pictures) == 20


def test_recorded_rotation_is_applied_or_ignored(ffmpeg: str, clip: Path, folder: Path) -> None:
    rotated = rotated_copy(ffmpeg, clip, folder / "rotated.mp4", 90)
    body: dict[str, Any] = {"outputs": [{"name": "o", "container": "mp4", "video": {"preset": "ultrafast"}}]}
    _, paths = encode(ffmpeg, body, rotated, folder / "auto")
    first = frames(paths["o"])[0]
    assert (first.width, first.height) == (240, 320)
    _, paths = encode(ffmpeg, {**body, "operations": {"auto_rotate": False}}, rotated, folder / "coded")
    first = frames(paths["o"])[0]
    info = probe(paths["o"]).video
    assert (first.width, first.height) == (320, 240) and info is not None and info.rotation == 0


def test_deinterlace_detected_and_denoise(ffmpeg: str, folder: Path) -> None:
    interlaced = make_clip(
        ffmpeg,
        folder / "interlaced.mp4",
        size="320x240",
        extra=["-vf", "setfield=tff", "-flags", "+ilme+ildct", "-x264-params", "tff=1"],
    )
    assert probe(interlaced).video.interlaced  # type: ignore[union-attr]
    body = {
        "outputs": [{"name": "p", "container": "mp4", "video": {"preset": "ultrafast"}}],
        "operations": {"deinterlace": "auto", "denoise": "medium"},
    }
    plan, paths = encode(ffmpeg, body, interlaced, folder / "deint")
    assert plan.notes.get("deinterlaced") == "auto"
    assert "bwdif=mode=send_frame:parity=auto:deint=interlaced,hqdn3d=4:3:6:4.5" in " ".join(plan.argv)
    pictures = frames(paths["p"])
    assert len(pictures) == 50 and not any(f.interlaced_frame for f in pictures)


def test_watermark_is_scaled_placed_and_blended(ffmpeg: str, clip: Path, folder: Path) -> None:
    mark = still_image(ffmpeg, folder / "mark.png", "color=white:s=100x50,format=rgba")
    body = {
        "outputs": [{"name": "w", "container": "mp4", "video": {"crf": 10, "preset": "ultrafast"}}],
        "operations": {
            "watermark": {
                "uri": "file:///m/mark.png",
                "position": "top_left",
                "margin": 10,
                "opacity": 1.0,
                "scale": 0.25,
            }
        },
    }
    assets = Assets(watermark=mark, watermark_size=(100, 50))
    plan, paths = encode(ffmpeg, body, clip, folder / "wm", assets)
    assert plan.argv.count("-i") == 2
    first = frames(paths["w"])[0]
    # 25 % of 320 wide: 80x40 at (10, 10), white.
    assert mean_luma(first, (14, 14, 72, 32)) > 230 and mean_luma(first, (100, 60, 60, 60)) < 230


def test_subtitles_burn_in_from_srt_and_vtt_under_an_awkward_path(
    ffmpeg: str, clock: Path, folder: Path
) -> None:
    odd = folder / "we'ird:dir, [x];\\ y"
    odd.mkdir()
    srt = odd / "subtitles.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nHELLO [x]; it's, \\N {\\b1}\n")
    vtt = odd / "subtitles.vtt"
    vtt.write_text("WEBVTT\n\n00:00.000 --> 00:02.000\nHELLO\n")
    base = {"outputs": [{"name": "s", "container": "mp4", "video": {"crf": 10, "preset": "ultrafast"}}]}
    _, plain = encode(ffmpeg, base, clock, folder / "nosubs")
    reference = frames(plain["s"])[30]
    for path, fmt in ((srt, "srt"), (vtt, "vtt")):
        body = {**base, "operations": {"subtitles": {"uri": f"file:///m/s.{fmt}", "font_size": 40}}}
        _, paths = encode(ffmpeg, body, clock, folder / f"subs-{fmt}", Assets(subtitles=path))
        frame = frames(paths["s"])[30]
        assert changed(frame, reference, (0, 150, 320, 90)) > 0.02, fmt  # text drawn at the bottom
        assert changed(frame, reference, (0, 0, 320, 60)) < 0.001, fmt


def changed(a: av.VideoFrame, b: av.VideoFrame, box: tuple[int, int, int, int]) -> float:
    """Share of the box's pixels whose luma differs by more than 30 between two pictures."""
    planes = []
    for frame in (a, b):
        grey = frame.reformat(format="gray")
        planes.append((bytes(grey.planes[0]), grey.planes[0].line_size))
    x, y, w, h = box
    count = 0
    for row in range(y, y + h):
        for col in range(x, x + w):
            count += abs(planes[0][0][row * planes[0][1] + col] - planes[1][0][row * planes[1][1] + col]) > 30
    return count / (w * h)


def _integrated_loudness(ffmpeg: str, path: Path) -> float:
    result = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
            "-af",
            "loudnorm=print_format=json",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
    )
    text = result.stderr
    return float(json.loads(text[text.rindex("{") : text.rindex("}") + 1])["input_i"])


def test_two_pass_loudness_reaches_its_target(ffmpeg: str, clip: Path, folder: Path) -> None:
    body: dict[str, Any] = {
        "outputs": [{"name": "l", "container": "m4a", "audio": {"bitrate_kbps": 128}}],
        "operations": {"loudness": {"integrated": -16, "true_peak": -1.5}},
    }
    spec = JobSpec.model_validate({"input": "file:///in.mp4", **body})
    info = probe(clip)
    scan = run_ffmpeg(
        [ffmpeg, *build_loudness_scan(spec, info, clip)], on_progress=None, duration=info.duration
    )
    assert scan.returncode == 0, scan.stderr_tail
    measured = parse_loudnorm(scan.stderr_tail)
    assert list(measured) == [(0, 1)]  # the mono clip's one final layout, from its one track
    assert measured[0, 1]["input_i"] == pytest.approx(_integrated_loudness(ffmpeg, clip), abs=0.2)
    plan, paths = encode(ffmpeg, body, clip, folder / "loud", Assets(loudness=measured))
    # A steady tone has no loudness range: loudnorm would take that as a reason for its dynamic mode, so the
    # correction is the same static gain by `volume`.
    assert measured[0, 1]["input_lra"] == 0
    argv = " ".join(plan.argv)
    assert "volume=" in argv and "loudnorm" not in argv and "aresample=48000" in argv
    assert _integrated_loudness(ffmpeg, paths["l"]) == pytest.approx(-16, abs=0.5)
    assert probe(paths["l"]).audio.sample_rate == 48000  # type: ignore[union-attr]


def test_channel_mix_and_stripped_sound(ffmpeg: str, folder: Path) -> None:
    surround = folder / "surround.mkv"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "sine=frequency=300:duration=1:sample_rate=48000"),
        *("-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=0*c0|c4=c0|c5=c0", "-c:a", "flac"),
        surround,
    )
    body = {
        "outputs": [{"name": "m", "container": "mp3"}],
        "operations": {
            "channel_mix": {
                "layout": "stereo",
                "gains": [[1, 0, 0.707, 0, 0.707, 0], [0, 1, 0.707, 0, 0, 0.707]],
            }
        },
    }
    plan, paths = encode(ffmpeg, body, surround, folder / "mix")
    assert "pan=stereo|c0=1*c0+0.707*c2+0.707*c4|c1=1*c1+0.707*c2+0.707*c5" in " ".join(plan.argv)
    assert probe(paths["m"]).audio.channels == 2  # type: ignore[union-attr]
    clip = make_clip(ffmpeg, folder / "av.mp4", seconds=1)
    _, paths = encode(
        ffmpeg,
        {
            "outputs": [{"name": "v", "container": "mp4", "video": {"preset": "ultrafast"}}],
            "operations": {"strip_audio": True},
        },
        clip,
        folder / "strip",
    )
    assert probe(paths["v"]).audio is None


def test_hdr_is_tone_mapped_to_sdr(ffmpeg: str, folder: Path) -> None:
    pq = folder / "pq.mp4"
    x265 = "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-vf", "format=yuv420p10le"),
        *("-c:v", "libx265", "-x265-params", x265),
        *("-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"),
        pq,
    )
    assert probe(pq).video.hdr  # type: ignore[union-attr]
    body = {
        "outputs": [{"name": "sdr", "container": "mp4", "video": {"preset": "ultrafast"}}],
        "operations": {"tonemap": {"algorithm": "hable"}},
    }
    plan, paths = encode(ffmpeg, body, pq, folder / "tonemap")
    assert plan.notes.get("tonemapped") is True
    out = probe(paths["sdr"]).video
    assert out is not None and out.color_transfer == "bt709" and out.bit_depth == 8 and not out.hdr


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"operations": {"crop": {"x": 200, "y": 0, "width": 200, "height": 100}}}, "does not fit"),
        ({"operations": {"trim": {"start": 30}}}, "input lasts"),
        (
            {"outputs": [{"container": "mkv", "video": {"codec": "copy"}}], "operations": {"rotate": 180}},
            "copies the video",
        ),
        (
            {
                "outputs": [{"container": "mkv", "audio": {"codec": "copy"}}],
                "operations": {"channel_mix": {"layout": "mono"}},
            },
            "copies the audio",
        ),
    ],
)
def test_operations_that_cannot_apply_are_refused_before_ffmpeg(
    ffmpeg: str, clip: Path, body: dict[str, Any], words: str
) -> None:
    spec = JobSpec.model_validate({"input": "file:///in.mp4", "outputs": [{"container": "mp4"}], **body})
    with pytest.raises(JobFailure) as caught:
        plan_job(spec, probe(clip), detect_capabilities(ffmpeg), clip, Path("/nowhere"))
    assert caught.value.failure_class is FailureClass.spec_unsupported and words in caught.value.message
