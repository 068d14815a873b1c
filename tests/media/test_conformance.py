"""What a broadcaster's conformance check looks at, on tiny generated sources: codec levels, colour range
and matrix, HDR10 static metadata, frame rates, subtitles, audio duration and downmix, keyframes, VBV caps.

Needs only the ffmpeg binary: `pytest tests/media/test_conformance.py`.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import av
import pytest

from framefleet.media.probe import probe
from framefleet.media.results import collect_results
from tests.media.helpers import quiet_ffmpeg, run_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


def _box_payload(data: bytes, kind: bytes) -> bytes:
    at = data.index(kind)
    return data[at + 4 :]


def test_h264_and_hevc_levels_follow_size_and_rate(ffmpeg: str, folder: Path, tmp_path: Path) -> None:
    source = folder / "hd50.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=50:duration=0.08"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "30"),
        source,
    )
    slow: dict[str, Any] = {"preset": "slow", "crf": 35}
    hevc: dict[str, Any] = {"codec": "hevc", "preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "p50", "container": "mp4", "video": slow},
            {"name": "p25", "container": "mp4", "video": {**slow, "fps": 25}},
            {"name": "hevc25", "container": "mp4", "video": {**hevc, "fps": 25}},
            {"name": "hevc50", "container": "mp4", "video": hevc},
        ]
    }
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    paths = {p.output.name: p.path for p in plan.outputs}
    # avcC: version, profile, compatibility, level_idc (x 10); hvcC: general_level_idc (x 30) at byte 12.
    assert _box_payload(paths["p50"].read_bytes(), b"avcC")[3] == 42  # x264 slow alone says 5.0
    assert _box_payload(paths["p25"].read_bytes(), b"avcC")[3] == 40
    assert _box_payload(paths["hevc25"].read_bytes(), b"hvcC")[12] == 120  # 4
    assert _box_payload(paths["hevc50"].read_bytes(), b"hvcC")[12] == 123  # 4.1


def _mean_y(path: Path) -> float:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        plane = frame.planes[0]
        rows = [
            bytes(plane)[r * plane.line_size : r * plane.line_size + frame.width] for r in range(frame.height)
        ]
    return sum(sum(row) for row in rows) / (frame.width * frame.height)


def _colour(path: Path) -> tuple[str | None, str | None, str | None, str | None]:
    video = probe(path).video
    assert video is not None
    return video.color_primaries, video.color_transfer, video.color_matrix, video.color_range


def test_full_range_sources_come_out_limited_and_tagged(ffmpeg: str, folder: Path, tmp_path: Path) -> None:
    source = folder / "full.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "color=c=white:size=64x48:rate=30:duration=0.16"),
        *("-vf", "format=yuvj420p", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"),
        source,
    )
    assert _colour(source)[3] == "pc" and _mean_y(source) > 250
    body = {
        "outputs": [
            {"name": "same", "container": "mp4", "video": {"preset": "ultrafast", "crf": 10}},
            {"name": "small", "container": "mkv", "video": {"preset": "ultrafast", "crf": 10, "height": 32}},
        ]
    }
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    for out in plan.outputs:
        assert _colour(out.path) == ("smpte170m", "smpte170m", "smpte170m", "tv"), out.output.name
        assert 233 <= _mean_y(out.path) <= 237, out.output.name  # white at limited range's 235


def test_untagged_sd_sources_are_converted_to_bt709_for_hd_and_tagged(
    ffmpeg: str, folder: Path, tmp_path: Path
) -> None:
    source = folder / "sd_untagged.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "color=c=red:size=640x480:rate=30000/1001:duration=0.12"),
        # BT.601 pixels (what an untagged SD picture is taken to be), written without any colour tag.
        *(
            "-vf",
            "scale=out_color_matrix=bt601:out_range=tv,format=yuv420p,setparams=range=unknown:colorspace=unknown",
        ),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"),
        source,
    )
    assert _colour(source) == (None, None, None, None)
    assert 79 <= _mean_y(source) <= 83  # red's luma in BT.601
    body = {
        "outputs": [
            {"name": "hd", "container": "mp4", "video": {"preset": "ultrafast", "crf": 10, "height": 720}},
            {"name": "sd", "container": "mp4", "video": {"preset": "ultrafast", "crf": 10}},
        ]
    }
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    hd, sd = (out.path for out in plan.outputs)
    assert _colour(hd) == ("bt709", "bt709", "bt709", "tv")
    assert 61 <= _mean_y(hd) <= 65  # the same red in BT.709
    assert _colour(sd) == ("smpte170m", "smpte170m", "smpte170m", "tv")
    assert 79 <= _mean_y(sd) <= 83
    # Scaling is lanczos with exact rounding and full chroma, ranges and matrices written out.
    graph = plan.argv[plan.argv.index("-filter_complex") + 1]
    assert (
        "scale=960:720:flags=lanczos+accurate_rnd+full_chroma_int:in_range=limited:out_range=limited"
        ":in_color_matrix=smpte170m:out_color_matrix=bt709" in graph
    )


def _keyframe_times(folder: Path, playlist: str) -> list[float]:
    """Presentation times of the keyframes of an HLS TS media playlist's segments, played in order."""
    joined = folder / f"{playlist}.joined.ts"
    names = [
        line for line in (folder / playlist).read_text().splitlines() if line and not line.startswith("#")
    ]
    joined.write_bytes(b"".join((folder / name).read_bytes() for name in names))
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        times = [
            float(p.pts * p.time_base) for p in container.demux(stream) if p.is_keyframe and p.pts is not None
        ]
    start = times[0]
    return [round(t - start, 3) for t in times]


def test_ladders_have_a_keyframe_every_two_seconds(ffmpeg: str, folder: Path, tmp_path: Path) -> None:
    source = folder / "ten_fps.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=64x36:rate=10:duration=8"),
        *("-c:v", "libx264", "-preset", "ultrafast"),
        source,
    )
    ladder = [{"height": 36, "bitrate_kbps": 100}]
    body = {"groups": [{"name": "abr", "type": "hls", "ladder": ladder, "preset": "ultrafast", "audio": []}]}
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    group = plan.groups[0]
    assert group.ladder.segment_seconds == 4.0 and group.ladder.gop == 20
    assert _keyframe_times(group.folder, group.rungs[0].playlist) == [0.0, 2.0, 4.0, 6.0]


def test_every_ladder_rung_has_a_vbv_cap_svt_av1_included(ffmpeg: str, folder: Path, tmp_path: Path) -> None:
    source = folder / "ten_fps.mp4"  # made by the keyframe test when run alone
    if not source.exists():
        quiet_ffmpeg(
            ffmpeg,
            *("-f", "lavfi", "-i", "testsrc2=size=64x36:rate=10:duration=8"),
            *("-c:v", "libx264", "-preset", "ultrafast"),
            source,
        )
    ladder = [
        {"name": "av1", "height": 36, "codec": "av1", "bitrate_kbps": 60},
        {"name": "avc", "height": 36, "codec": "h264", "crf": 20},
    ]
    body = {"groups": [{"name": "d", "type": "dash", "ladder": ladder, "preset": "ultrafast", "audio": []}]}
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    argv = plan.argv

    def option(name: str) -> str:
        return argv[argv.index(name) + 1]

    assert (option("-c:v:0"), option("-crf:v:0"), option("-maxrate:v:0")) == ("libsvtav1", "35", "60k")
    assert option("-bufsize:v:0") == "120k"
    # A constant-quality rung without a cap gets the cap of the named rung of its size (240p: 600k).
    assert (option("-crf:v:1"), option("-maxrate:v:1"), option("-bufsize:v:1")) == ("20", "600k", "800k")
    segments = sorted(plan.groups[0].folder.glob("chunk-0-*.m4s"))
    seconds = plan.groups[0].ladder.segment_seconds
    assert segments and max(p.stat().st_size for p in segments) * 8 / 1000 / seconds < 60 * 2


def test_psnr_is_luma_and_a_weighted_yuv_psnr_is_given_too(ffmpeg: str, folder: Path, tmp_path: Path) -> None:
    source = folder / "colourful.mp4"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.8"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"),
        source,
    )
    out: dict[str, Any] = {"container": "mp4", "video": {"preset": "ultrafast", "crf": 35}}
    body = {
        "outputs": [
            {"name": "vmaf", **out},
            {"name": "tiny", **out, "video": {**out["video"], "height": 16}},
        ],
        "quality": {"metrics": ["vmaf", "psnr"], "subsample": 1},
    }
    job, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    rows = {row.name: row for row in collect_results(plan, job, "file:///published/job").rows}
    tiny = rows["tiny"].metrics
    assert tiny is not None
    # libvmaf's planes; and ffmpeg's psnr filter where VMAF cannot score: the tiny output's own size (20x16;
    # at display size, 64x48, libvmaf scores it).
    for name, metrics in (("vmaf", rows["vmaf"].metrics), ("tiny", tiny), ("tiny native", tiny["native"])):
        assert metrics is not None
        y, yuv = metrics["psnr"]["mean"], metrics["psnr_yuv"]["mean"]
        assert 15 < y < 60 and 15 < yuv < 60 and abs(y - yuv) > 0.05, name
    assert "vmaf" not in tiny["native"] and "vmaf" in tiny["native"]["skipped"]


def _seconds_of_sound(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


@pytest.mark.parametrize(("picture", "sound"), [(0.4, 0.6), (0.6, 0.4)])
def test_sound_ends_with_the_picture(
    ffmpeg: str, folder: Path, tmp_path: Path, picture: float, sound: float
) -> None:
    source = folder / f"av_{picture}_{sound}.mkv"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=25:duration={picture}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={sound}"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac"),
        source,
    )
    out = {"video": {"preset": "ultrafast"}, "audio": {"codec": "flac"}}
    body = {"outputs": [{"name": "mkv", "container": "mkv", **out}]}
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    assert abs(_seconds_of_sound(plan.outputs[0].path) - picture) <= 1 / 25


def _spans(path: Path) -> tuple[tuple[float, float], tuple[float, float], float]:
    """(first, end) of the picture and of the sound on the file's clock, and when the sound first rises
    above silence."""
    with av.open(str(path)) as container:
        pictures = [f.time for f in container.decode(video=0)]
    with av.open(str(path)) as container:  # a seek back would land on the picture's first keyframe
        rate = container.streams.audio[0].codec_context.sample_rate
        first = end = loud = None
        resampler = av.AudioResampler(format="flt", layout="mono")
        for decoded in container.decode(audio=0):
            for frame in resampler.resample(decoded):
                first = frame.time if first is None else first
                end = frame.time + frame.samples / rate
                samples = array("f", bytes(frame.planes[0]))[: frame.samples]
                if loud is None and (hit := next((i for i, v in enumerate(samples) if abs(v) > 0.01), None)):
                    loud = frame.time + hit / rate
    step = pictures[1] - pictures[0]
    assert first is not None and end is not None and loud is not None
    return (pictures[0], pictures[-1] + step), (first, end), loud


@pytest.mark.parametrize("sound_late", [0.5, -0.5], ids=["sound-late", "sound-early"])
def test_sound_starts_with_the_picture_and_stays_in_sync(
    ffmpeg: str, folder: Path, tmp_path: Path, sound_late: float
) -> None:
    """2 s of picture and 2 s of sound that starts half a second after (or before) it; the sound is silent
    except for a tone from its own second 1.0."""
    source = folder / f"offset_{sound_late}.mkv"
    late, early = ("-itsoffset", str(sound_late)), ("-itsoffset", str(-sound_late))
    quiet_ffmpeg(
        ffmpeg,
        *(early if sound_late < 0 else ()),
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2"),
        *(late if sound_late > 0 else ()),
        *("-f", "lavfi", "-i", "aevalsrc='0.5*gte(t,1)*sin(2*PI*440*t)':s=48000:d=2"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac"),
        source,
    )
    (v0, v1), (a0, a1), tone = _spans(source)
    assert a0 - v0 == pytest.approx(sound_late, abs=0.03)  # the source really is offset
    source_tone = tone - v0
    out = {"video": {"preset": "ultrafast"}, "audio": {"codec": "flac"}}
    body = {"outputs": [{"name": "mkv", "container": "mkv", **out}]}
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    (v0, v1), (a0, a1), tone = _spans(plan.outputs[0].path)
    assert abs(a0 - v0) <= 1 / 25 and abs(a1 - v1) <= 1 / 25, ((v0, v1), (a0, a1))
    assert tone - v0 == pytest.approx(source_tone, abs=0.002)  # padded or cut, never moved


def _channel_rms(path: Path) -> list[float]:
    """Each channel's RMS, full scale 1."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        sums = [0.0] * stream.codec_context.channels
        count = 0
        resampler = av.AudioResampler(format="fltp")
        for decoded in container.decode(stream):
            for frame in resampler.resample(decoded):
                for channel, plane in enumerate(frame.planes):
                    samples = array("f", bytes(plane))[: frame.samples]
                    sums[channel] += sum(v * v for v in samples)
                count += frame.samples
    return [(total / count) ** 0.5 for total in sums]


def test_five_one_downmix_has_headroom_and_leaves_out_the_lfe(
    ffmpeg: str, folder: Path, tmp_path: Path
) -> None:
    source = folder / "centre_and_lfe.mkv"
    # Only the centre (440 Hz) and the LFE (60 Hz) carry sound, each at half scale.
    tone = "0.5*sin(2*PI*440*t)|0.5*sin(2*PI*60*t)"
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", f"aevalsrc=0|0|{tone}|0|0:c=5.1:s=48000:d=1"),
        *("-c:a", "pcm_f32le"),
        source,
    )
    audio = {"channels": 2, "bitrate_kbps": 256}
    body = {"outputs": [{"name": "stereo", "container": "m4a", "audio": audio}]}
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    left, right = _channel_rms(plan.outputs[0].path)
    centre = 0.5 / 2**0.5  # the centre's RMS
    # BS.775's 0.707 for the centre, scaled by 1 / (1 + 0.707 + 0.707): 0.293 of the centre in each side.
    assert abs(left / centre - 0.2929) < 0.02 and abs(right / centre - 0.2929) < 0.02


def test_variable_rate_sources_run_at_a_standard_rate(ffmpeg: str, folder: Path, tmp_path: Path) -> None:
    source = folder / "vfr.mp4"
    # 30 fps with every tenth frame missing: 27 fps on average, 30 declared.
    quiet_ffmpeg(
        ffmpeg,
        *("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=2"),
        *("-vf", "select='not(eq(mod(n\\,10)\\,3))'", "-fps_mode", "vfr"),
        *("-c:v", "libx264", "-preset", "ultrafast"),
        source,
    )
    info = probe(source).video
    assert info is not None and info.vfr and info.fps is not None and 26.5 < info.fps < 27.5
    fast: dict[str, Any] = {"preset": "ultrafast"}
    body = {
        "outputs": [
            {"name": "cfr", "container": "mp4", "video": {**fast, "constant_rate": True}},
            {"name": "vfr", "container": "mp4", "video": fast},
        ],
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "ladder": [{"height": 48, "bitrate_kbps": 100}],
                "audio": [],
                **fast,
            }
        ],
    }
    _, plan, _ = run_plan(ffmpeg, body, source, tmp_path / "w")
    assert plan.groups[0].ladder.fps == 30.0 and plan.groups[0].ladder.gop == 60
    paths = {p.output.name: p.path for p in plan.outputs}
    cfr, vfr = probe(paths["cfr"]).video, probe(paths["vfr"]).video
    assert cfr is not None and not cfr.vfr and cfr.fps == pytest.approx(30, abs=0.01)
    assert vfr is not None and vfr.vfr  # plain outputs keep the source's timing unless asked
