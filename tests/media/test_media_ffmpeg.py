"""The media layer against the real ffmpeg and PyAV: probing, one-process transcodes, quality, the runner.

Needs only the ffmpeg binary (no Redis, no database): `pytest tests/integration/test_media_ffmpeg.py`.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import av
import pytest

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import JobSpec, Metric, QualitySpec
from framefleet.media.capabilities import CPU_ENCODERS, detect_capabilities
from framefleet.media.command import build_transcode, expected_duration
from framefleet.media.probe import MediaInfo, probe
from framefleet.media.progress import Progress
from framefleet.media.quality import ScoreLogs, build_quality, read_scores, summarise
from framefleet.media.runner import run_ffmpeg
from tests.conftest import make_clip
from tests.media.helpers import paced_encode, quiet_ffmpeg, rotated_copy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clips(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small inputs shared by the module's tests."""
    root = tmp_path_factory.mktemp("media")
    clip = make_clip(ffmpeg, root / "clip.mp4")
    faststart = make_clip(ffmpeg, root / "faststart.mp4", extra=["-movflags", "+faststart"])
    rotated = rotated_copy(ffmpeg, clip, root / "rotated.mp4", 90)
    return {
        "clip": clip,
        "faststart": faststart,
        "rotated": rotated,
        "audio_only": make_clip(ffmpeg, root / "audio.m4a", video=False),
        "silent": make_clip(ffmpeg, root / "silent.mkv", audio=False),
        "long": make_clip(ffmpeg, root / "long.mp4", seconds=30, size="160x120", audio=False),
    }


def streams_of(path: Path) -> tuple[av.video.stream.VideoStream | None, av.audio.stream.AudioStream | None]:
    with av.open(str(path)) as container:
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        return v, a


def decode_all(path: Path) -> tuple[int, float, dict[str, Any]]:
    """(video frames decoded, duration in seconds, facts about the streams) by decoding the whole file."""
    with av.open(str(path)) as container:
        facts: dict[str, Any] = {"format": container.format.name}
        frames = 0
        if container.streams.video:
            vs = container.streams.video[0]
            facts |= {"vcodec": vs.codec_context.codec.canonical_name}
            for frame in container.decode(vs):
                frames += 1
                facts |= {"width": frame.width, "height": frame.height, "pix_fmt": frame.format.name}
        if container.streams.audio:
            audio = container.streams.audio[0]
            facts |= {
                "acodec": audio.codec_context.codec.canonical_name,
                "channels": audio.codec_context.channels,
                "rate": audio.codec_context.sample_rate,
            }
        duration = (container.duration or 0) / av.time_base
    return frames, duration, facts


def pid_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie not yet collected by its new parent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


# --- probe -------------------------------------------------------------------------------------------


def test_probe_describes_a_clip(clips: dict[str, Path]) -> None:
    info = probe(clips["clip"])
    assert info.format_name.startswith("mov,mp4")
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.size_bytes == clips["clip"].stat().st_size and info.bit_rate
    assert info.video is not None and info.audio is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 320, 240)
    assert info.video.fps == 25.0 and info.video.pix_fmt == "yuv420p" and info.video.rotation == 0
    assert info.video.frames == 50
    assert (info.audio.codec, info.audio.channels, info.audio.sample_rate) == ("aac", 1, 48000)
    assert info.to_dict()["video"]["width"] == 320


def test_probe_reads_rotation_and_display_size(clips: dict[str, Path]) -> None:
    info = probe(clips["rotated"])
    assert info.video is not None and info.video.rotation in (90, 270)
    assert (info.video.display_width, info.video.display_height) == (240, 320)


def test_probe_audio_only_and_video_only(clips: dict[str, Path]) -> None:
    audio_only = probe(clips["audio_only"])
    assert audio_only.video is None and audio_only.audio is not None
    silent = probe(clips["silent"])
    assert silent.audio is None and silent.video is not None and silent.format_name.startswith("matroska")


def _bad_file(kind: str, clips: dict[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.mp4"
    if kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "random":
        path.write_bytes(os.urandom(256 * 1024))
    elif kind == "truncated_moov_first":
        # The index survives, the media data does not: opening works, decoding must not.
        path.write_bytes(clips["faststart"].read_bytes()[:6000])
    elif kind == "truncated_moov_last":
        path.write_bytes(clips["clip"].read_bytes()[:50_000])
    elif kind == "no_av_streams":
        subtitles = tmp_path / "subs.srt"
        subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
        path = tmp_path / "subs.mkv"
        quiet_ffmpeg(str(clips["ffmpeg"]), "-i", subtitles, path)
    elif kind == "missing":
        pass
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "zero_bytes",
        "text",
        "random",
        "truncated_moov_first",
        "truncated_moov_last",
        "no_av_streams",
        "missing",
    ],
)
def test_probe_refuses_bad_files_as_input_invalid(
    kind: str, clips: dict[str, Path], ffmpeg: str, tmp_path: Path
) -> None:
    path = _bad_file(kind, {**clips, "ffmpeg": Path(ffmpeg)}, tmp_path)
    started = time.monotonic()
    with pytest.raises(JobFailure) as caught:
        probe(path)
    assert caught.value.failure_class is FailureClass.input_invalid
    assert caught.value.message and "Traceback" not in caught.value.message
    assert time.monotonic() - started < 10


def test_probe_of_a_written_output_reads_the_streams_without_decoding(
    clips: dict[str, Path], ffmpeg: str, tmp_path: Path
) -> None:
    # What the results step reads of each output ffmpeg wrote: the same description without a decoder.
    output = tmp_path / "out.ts"
    quiet_ffmpeg(
        ffmpeg, "-i", clips["clip"], "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", output
    )
    full, streams = probe(output), probe(output, decode=False)
    for info in (full, streams):
        assert info.video is not None and info.audio is not None
    assert (streams.duration, streams.size_bytes) == (full.duration, full.size_bytes)
    assert (streams.video.codec, streams.video.width, streams.video.height) == ("h264", 320, 240)
    assert (full.video.codec, full.video.width, full.video.height) == ("h264", 320, 240)
    assert streams.audio.codec == full.audio.codec == "aac"
    # It really decodes nothing: media data cut off is described, where an input is refused.
    cut = _bad_file("truncated_moov_first", clips, tmp_path)
    with pytest.raises(JobFailure):
        probe(cut)
    described = probe(cut, decode=False)
    assert described.video is not None and described.video.width == 320


# --- capabilities and transcoding ------------------------------------------------------------------------


def test_capabilities_list_every_cpu_encoder_and_needed_filter(ffmpeg: str) -> None:
    caps = detect_capabilities(ffmpeg)
    assert set(CPU_ENCODERS.values()) <= caps.encoders
    assert {"split", "asplit", "scale", "fps", "setsar", "aresample", "aformat", "libvmaf"} <= caps.filters
    assert detect_capabilities(ffmpeg) is caps  # cached per binary


def test_capabilities_of_a_missing_binary_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(JobFailure) as caught:
        detect_capabilities(str(tmp_path / "no-ffmpeg"))
    assert caught.value.failure_class is FailureClass.hardware_unavailable


def transcode(
    ffmpeg: str, spec: JobSpec, info: MediaInfo, source: Path, out_dir: Path
) -> tuple[dict[str, Path], list[Progress]]:
    paths = {o.name or "": out_dir / f"{o.name}.part" for o in spec.outputs}  # temporary names, no suffix
    argv = build_transcode(spec, info, detect_capabilities(ffmpeg), source, paths, threads=2)
    seen: list[Progress] = []
    result = run_ffmpeg([ffmpeg, *argv], on_progress=seen.append, duration=expected_duration(spec, info))
    assert result.returncode == 0, result.stderr_tail
    assert not result.canceled and not result.timed_out
    assert result.stderr_tail == ""  # -loglevel error and quiet encoder libraries: nothing to report
    return paths, seen


def test_two_outputs_from_one_process(ffmpeg: str, clips: dict[str, Path], tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "input": "file:///clip.mp4",
            "outputs": [
                {"name": "mp4", "container": "mp4", "video": {"width": 160, "preset": "ultrafast"}},
                {
                    "name": "webm",
                    "container": "webm",
                    "video": {"preset": "ultrafast", "crf": 40},
                    "audio": {"channels": 2},
                },
            ],
        }
    )
    info = probe(clips["clip"])
    paths, seen = transcode(ffmpeg, spec, info, clips["clip"], tmp_path)
    assert seen and seen[-1].done and seen[-1].percent == 100.0

    frames, duration, facts = decode_all(paths["mp4"])
    assert facts["format"].startswith("mov,mp4")
    assert (facts["vcodec"], facts["width"], facts["height"], facts["pix_fmt"]) == (
        "h264",
        160,
        120,
        "yuv420p",
    )
    assert (facts["acodec"], facts["channels"], facts["rate"]) == ("aac", 1, 48000)
    assert frames == 50 and duration == pytest.approx(2.0, abs=0.1)
    # faststart: the index comes before the media data.
    head = paths["mp4"].read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))

    frames, duration, facts = decode_all(paths["webm"])
    assert facts["format"].startswith("matroska")
    assert (facts["vcodec"], facts["width"], facts["height"]) == ("vp9", 320, 240)
    assert (facts["acodec"], facts["channels"], facts["rate"]) == ("opus", 2, 48000)
    assert frames == 50 and duration == pytest.approx(2.0, abs=0.1)


def test_copy_av1_odd_sizes_and_rotation(ffmpeg: str, clips: dict[str, Path], tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "input": "file:///rotated.mp4",
            "outputs": [
                {"name": "copy", "container": "mkv", "video": {"codec": "copy"}, "audio": {"codec": "copy"}},
                {
                    "name": "av1",
                    "container": "mp4",
                    "video": {"codec": "av1", "width": 120, "preset": "ultrafast", "fps": 10},
                    "audio": {"codec": "mp3"},
                },
                {
                    "name": "ts",
                    "container": "ts",
                    "video": {"codec": "hevc", "preset": "ultrafast", "bitrate_kbps": 300},
                },
            ],
        }
    )
    info = probe(clips["rotated"])
    paths, _ = transcode(ffmpeg, spec, info, clips["rotated"], tmp_path)

    frames, _, facts = decode_all(paths["copy"])
    assert (facts["vcodec"], facts["acodec"], frames) == ("h264", "aac", 50)
    copied = probe(paths["copy"]).video
    assert copied is not None and info.video is not None and copied.rotation == info.video.rotation

    frames, duration, facts = decode_all(paths["av1"])
    # Upright portrait picture: width 120 of a 240x320 display gives 160 lines.
    assert (facts["vcodec"], facts["width"], facts["height"]) == ("av1", 120, 160)
    assert facts["acodec"] == "mp3" and frames == 20 and duration == pytest.approx(2.0, abs=0.15)

    frames, _, facts = decode_all(paths["ts"])
    assert (
        facts["format"] == "mpegts"
        and facts["vcodec"] == "hevc"
        and (facts["width"], facts["height"]) == (240, 320)
    )


def test_silent_and_audio_only_inputs(ffmpeg: str, clips: dict[str, Path], tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "input": "file:///silent.mkv",
            "outputs": [{"name": "v", "container": "mp4", "video": {"preset": "ultrafast"}}],
        }
    )
    paths, _ = transcode(ffmpeg, spec, probe(clips["silent"]), clips["silent"], tmp_path)
    assert streams_of(paths["v"])[1] is None  # audio asked for, none in the input: dropped

    spec = JobSpec.model_validate(
        {
            "input": "file:///audio.m4a",
            "outputs": [{"name": "a", "container": "webm", "video": {"codec": "none"}}],
        }
    )
    paths, _ = transcode(ffmpeg, spec, probe(clips["audio_only"]), clips["audio_only"], tmp_path)
    video, audio = streams_of(paths["a"])
    assert video is None and audio is not None and audio.codec_context.codec.canonical_name == "opus"


# --- quality -------------------------------------------------------------------------------------------


def run_quality(
    ffmpeg: str, distorted: Path, reference: Path, log: Path, quality: QualitySpec
) -> dict[str, Any]:
    info = probe(distorted)
    assert info.video is not None
    argv = build_quality(
        distorted,
        reference,
        width=info.video.width,
        height=info.video.height,
        fps=info.video.fps or 25.0,
        quality=quality,
        log_path=log,
        threads=2,
    )
    result = run_ffmpeg([ffmpeg, *argv], on_progress=None, duration=info.duration)
    assert result.returncode == 0, result.stderr_tail
    rows = read_scores(ScoreLogs(log), quality)
    return summarise(rows, quality, model="vmaf_v0.6.1", fps=info.video.fps or 25.0, segment_seconds=None)


def test_quality_of_a_video_against_itself_is_near_perfect(
    ffmpeg: str, clips: dict[str, Path], tmp_path: Path
) -> None:
    # Quotes, colons, brackets, commas, semicolons, backslashes and spaces in the log path.
    odd_dir = tmp_path / "we'ird:dir, [x];\\ y"
    odd_dir.mkdir()
    log = odd_dir / "vmaf log.json"
    scores = run_quality(ffmpeg, clips["clip"], clips["clip"], log, QualitySpec(subsample=1))
    assert ScoreLogs(log).vmaf.exists() and ScoreLogs(log).ssim.exists()
    assert scores["frames"] == 50
    assert scores["vmaf"]["mean"] > 95
    assert scores["psnr"]["min"] >= 50
    assert scores["ssim"]["mean"] == pytest.approx(1.0, abs=1e-3)


def test_quality_of_a_smaller_output_against_its_source(
    ffmpeg: str, clips: dict[str, Path], tmp_path: Path
) -> None:
    small = tmp_path / "small.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-i", clips["clip"], "-vf", "scale=160:120"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "35", "-an"),
        small,
    )
    quality = QualitySpec(metrics=[Metric.vmaf, Metric.ssim], subsample=5)
    scores = run_quality(ffmpeg, small, clips["clip"], tmp_path / "q.json", quality)
    assert set(scores) == {"frames", "subsample", "model", "vmaf", "ssim", "worst_segment"}
    assert scores["frames"] == 10
    vmaf = scores["vmaf"]
    assert 20 < vmaf["mean"] < 99 and vmaf["min"] <= vmaf["harmonic_mean"] <= vmaf["mean"] <= vmaf["max"]
    assert 0.5 < scores["ssim"]["mean"] < 1


@pytest.mark.parametrize(("reference_suffix", "distorted_suffix"), [("mkv", "mp4"), ("mp4", "mkv")])
def test_quality_pairs_frames_whatever_the_containers_time_bases(
    ffmpeg: str, tmp_path: Path, reference_suffix: str, distorted_suffix: str
) -> None:
    # Matroska stores milliseconds (frame 1 of 24 fps at 42 ms), MP4 a fine time base (41.67 ms): paired by
    # raw timestamps, each distorted frame met the reference frame before it. The same pictures in the
    # other container (both lossless from one source) must score as themselves.
    reference, distorted = (
        make_clip(
            ffmpeg, tmp_path / name, seconds=1, size="160x120", rate=24, audio=False, extra=["-qp", "0"]
        )
        for name in (f"ref.{reference_suffix}", f"dist.{distorted_suffix}")
    )
    quality = QualitySpec(metrics=[Metric.vmaf, Metric.psnr, Metric.ssim], subsample=1)
    scores = run_quality(ffmpeg, distorted, reference, tmp_path / "q.json", quality)
    assert scores["frames"] == 24
    assert scores["vmaf"]["min"] > 95, scores["vmaf"]
    assert scores["psnr"]["min"] >= 50, scores["psnr"]


# --- runner --------------------------------------------------------------------------------------------


def slow_encode(ffmpeg: str, source: Path) -> list[str]:
    """An encode paced at real time (-re) that would run for 30 s if left alone."""
    return [ffmpeg, *paced_encode("-i", str(source))]


def test_the_cancel_check_is_asked_once_per_poll_interval_not_per_progress_sample(ffmpeg: str) -> None:
    # Each ask is a Redis round trip in the worker; progress samples wake the runner far more often.
    asked: list[float] = []
    samples: list[Progress] = []

    def should_cancel() -> bool:
        asked.append(time.monotonic())
        return False

    source = ("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1.5")
    result = run_ffmpeg(
        [ffmpeg, "-stats_period", "0.05", *paced_encode(*source)],
        on_progress=samples.append,
        duration=1.5,
        should_cancel=should_cancel,
        poll_interval=0.5,
    )
    assert result.returncode == 0 and not result.canceled
    assert len(samples) > len(asked) >= 1
    assert all(later - earlier >= 0.5 for earlier, later in itertools.pairwise(asked))


def test_cancel_kills_ffmpeg_within_two_seconds(ffmpeg: str, clips: dict[str, Path]) -> None:
    seen: list[Progress] = []
    asked_at: list[float] = []

    def should_cancel() -> bool:
        if seen and not asked_at:
            asked_at.append(time.monotonic())
        return bool(asked_at)

    result = run_ffmpeg(
        slow_encode(ffmpeg, clips["long"]),
        on_progress=seen.append,
        duration=30.0,
        should_cancel=should_cancel,
        poll_interval=0.1,
    )
    stopped_in = time.monotonic() - asked_at[0]
    assert result.canceled and not result.timed_out and result.returncode != 0
    assert stopped_in < 2.0
    assert pid_gone(result.pid)
    assert result.last_progress is not None and not result.last_progress.done
    assert result.last_progress.percent is not None and result.last_progress.percent < 50


def test_timeout_kills_ffmpeg(ffmpeg: str, clips: dict[str, Path]) -> None:
    started = time.monotonic()
    result = run_ffmpeg(slow_encode(ffmpeg, clips["long"]), on_progress=None, duration=30.0, timeout=1.0)
    assert result.timed_out and not result.canceled and result.returncode != 0
    assert time.monotonic() - started < 3.0
    assert pid_gone(result.pid)


def test_a_failing_callback_still_kills_the_process(ffmpeg: str, clips: dict[str, Path]) -> None:
    pids: list[int] = []

    def explode(sample: Progress) -> None:
        pids.extend(
            int(p) for p in os.listdir("/proc") if p.isdigit() and _is_slow_encode(int(p), clips["long"])
        )
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        run_ffmpeg(slow_encode(ffmpeg, clips["long"]), on_progress=explode, duration=30.0)
    assert pids and all(pid_gone(pid) for pid in pids)


def _is_slow_encode(pid: int, source: Path) -> bool:
    try:
        return str(source).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_group_kill_reaches_children_and_ignores_sigterm_refusal(tmp_path: Path) -> None:
    # A leader that ignores SIGTERM and has a child: both must be gone, via SIGKILL after the grace second.
    child_pid_file = tmp_path / "child.pid"
    script = f'trap "" TERM; sleep 60 & echo $! > "{child_pid_file}"; wait; wait'
    started = time.monotonic()
    result = run_ffmpeg(
        ["sh", "-c", script], on_progress=None, duration=None, should_cancel=child_pid_file.exists
    )
    elapsed = time.monotonic() - started
    child = int(child_pid_file.read_text())
    assert result.canceled and result.returncode == -9
    assert elapsed < 3.0
    deadline = time.monotonic() + 2
    while not pid_gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_gone(child)


def test_failed_run_reports_the_stderr_tail(ffmpeg: str, tmp_path: Path) -> None:
    result = run_ffmpeg(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(tmp_path / "missing.mp4"),
            "-f",
            "null",
            "-",
        ],
        on_progress=None,
        duration=None,
    )
    assert result.returncode != 0 and not result.canceled
    assert "No such file or directory" in result.stderr_tail
    assert len(result.stderr_tail.encode()) <= 8192


def test_a_binary_that_cannot_start_is_hardware_unavailable(tmp_path: Path) -> None:
    with pytest.raises(JobFailure) as caught:
        run_ffmpeg([str(tmp_path / "no-ffmpeg"), "-version"], on_progress=None, duration=None)
    assert caught.value.failure_class is FailureClass.hardware_unavailable


def test_cover_art_is_not_mistaken_for_video(ffmpeg: str, tmp_path: Path) -> None:
    cover = make_clip(
        ffmpeg,
        tmp_path / "cover.png",
        video=True,
        audio=False,
        seconds=0.04,
        extra=["-frames:v", "1", "-c:v", "png"],
    )
    song = tmp_path / "song.mp3"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "sine=duration=1", "-i", cover, "-map", "0", "-map", "1"),
        *("-c:a", "libmp3lame", "-c:v", "png", "-disposition:v", "attached_pic"),
        song,
    )
    info = probe(song)
    assert info.video is None and info.audio is not None and info.audio.codec == "mp3"
    spec = JobSpec.model_validate(
        {
            "input": "file:///song.mp3",
            "outputs": [{"name": "a", "container": "mp4", "video": {"codec": "none"}}],
        }
    )
    paths, _ = transcode(ffmpeg, spec, info, song, tmp_path)
    video, audio = streams_of(paths["a"])
    assert video is None and audio is not None
