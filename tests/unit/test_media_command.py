"""build_transcode: the argument list for a job, checked structurally for the shapes the worker relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import CPU_ENCODERS, Capabilities
from framefleet.media.command import build_transcode, expected_duration, target_size
from framefleet.media.filters import DOWNMIX_5_1_STEREO
from framefleet.media.metadata import STRIP_METADATA
from framefleet.media.probe import AudioInfo, MediaInfo, VideoInfo

ALL_CAPS = Capabilities(
    encoders=frozenset(CPU_ENCODERS.values()),
    filters=frozenset(
        {"split", "asplit", "scale", "setsar", "fps", "aresample", "aformat", "pan", "null", "anull"}
    ),
    hwaccels=frozenset(),
)
INPUT = Path("/work/in/clip.mp4")

# How every encoded picture of a BT.709 source is scaled (see framefleet/media/colour.py).
SWS = (
    "flags=lanczos+accurate_rnd+full_chroma_int"
    ":in_range=limited:out_range=limited:in_color_matrix=bt709:out_color_matrix=bt709"
)


def video(width: int = 1920, height: int = 1080, **kw: Any) -> VideoInfo:
    fields: dict[str, Any] = dict(
        codec="h264",
        width=width,
        height=height,
        fps=25.0,
        pix_fmt="yuv420p",
        # Tagged BT.709 limited range: nothing for the colour stage to add.
        color_primaries="bt709",
        color_transfer="bt709",
        color_matrix="bt709",
        color_range="tv",
        rotation=0,
        frames=250,
        bit_rate=4_000_000,
    )
    fields.update(kw)
    return VideoInfo(**fields)


def audio(
    channels: int = 2, sample_rate: int = 48000, codec: str = "aac", layout: str | None = None
) -> AudioInfo:
    default_layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels)
    return AudioInfo(
        codec=codec,
        channels=channels,
        sample_rate=sample_rate,
        bit_rate=128_000,
        layout=layout or default_layout,
    )


def media(v: VideoInfo | None = None, a: AudioInfo | None = None, duration: float | None = 10.0) -> MediaInfo:
    return MediaInfo(
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        duration=duration,
        size_bytes=1000,
        bit_rate=None,
        video=v,
        audio=a,
    )


def job(*outputs: dict[str, Any]) -> JobSpec:
    return JobSpec.model_validate({"input": "file:///in/clip.mp4", "outputs": list(outputs)})


def paths(spec: JobSpec) -> dict[str, Path]:
    return {o.name or "": Path(f"/work/out/{o.name}.tmp") for o in spec.outputs}


def build(spec: JobSpec, info: MediaInfo, caps: Capabilities = ALL_CAPS, threads: int = 0) -> list[str]:
    return build_transcode(spec, info, caps, INPUT, paths(spec), threads=threads)


def output_args(argv: list[str], path: Path) -> list[str]:
    """The options that belong to the output written to `path` (from the previous output's path on)."""
    end = argv.index(str(path))
    start = argv.index(str(INPUT)) + 1
    if "-filter_complex" in argv:
        start = argv.index("-filter_complex") + 2
    earlier = [i for i, arg in enumerate(argv[:end]) if arg.startswith("/work/out/")]
    if earlier:
        start = earlier[-1] + 1
    # Every output first drops the input's metadata (media/metadata.py); the rest is the output's own.
    assert argv[start : start + len(STRIP_METADATA)] == list(STRIP_METADATA)
    return argv[start + len(STRIP_METADATA) : end]


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def graph(argv: list[str]) -> str:
    return value(argv, "-filter_complex")


def expect_unsupported(spec: JobSpec, info: MediaInfo, caps: Capabilities = ALL_CAPS) -> str:
    with pytest.raises(JobFailure) as caught:
        build(spec, info, caps)
    assert caught.value.failure_class is FailureClass.spec_unsupported
    return caught.value.message


def test_global_options_keep_stderr_for_errors_and_progress_on_stdout() -> None:
    spec = job({"name": "a", "container": "mp4"})
    argv = build(spec, media(video(), audio()))
    assert argv[: argv.index("-i")] == [
        "-hide_banner",
        "-nostdin",
        "-y",
        "-nostats",
        "-progress",
        "pipe:1",
        "-loglevel",
        "error",
    ]
    assert value(argv, "-i") == str(INPUT)
    assert argv.count("-i") == 1
    assert not argv[0].endswith("ffmpeg")  # the caller prepends the binary


def test_two_outputs_share_one_decode_through_split() -> None:
    spec = job(
        {"name": "hd", "container": "mp4", "video": {"width": 1280}},
        {"name": "web", "container": "webm", "video": {"height": 360, "preset": "fast"}},
    )
    p = paths(spec)
    argv = build(spec, media(video(), audio()))
    assert argv.count("-i") == 1
    g = graph(argv)
    assert g.startswith("[0:V:0]split=2[vsrc0][vsrc1];")
    assert "[vsrc0]scale=1280:720:" + SWS + ",setsar=1[vout0]" in g
    assert "[vsrc1]scale=640:360:" + SWS + ",setsar=1[vout1]" in g

    hd = output_args(argv, p["hd"])
    assert value(hd, "-map") == "[vout0]"
    assert value(hd, "-c:v") == "libx264"
    assert value(hd, "-crf") == "23"
    assert value(hd, "-preset") == "medium"
    assert value(hd, "-pix_fmt") == "yuv420p"
    assert value(hd, "-c:a") == "aac"
    assert value(hd, "-b:a") == "128k"
    assert value(hd, "-f") == "mp4"
    assert value(hd, "-movflags") == "+faststart+negative_cts_offsets"
    assert hd.count("-map") == 2 and "0:a:0" in hd  # audio needs no filter: the decoded stream is mapped

    web = output_args(argv, p["web"])
    assert value(web, "-map") == "[vout1]"
    assert value(web, "-c:v") == "libvpx-vp9"
    assert (value(web, "-crf"), value(web, "-b:v")) == ("32", "0")
    assert (value(web, "-deadline"), value(web, "-cpu-used"), value(web, "-row-mt")) == ("good", "4", "1")
    assert value(web, "-c:a") == "libopus"
    assert value(web, "-b:a") == "96k"
    assert value(web, "-f") == "webm"
    assert "-movflags" not in web
    assert argv[-1] == str(p["web"])


def test_unfiltered_outputs_map_the_split_branches_directly() -> None:
    spec = job(
        {"name": "small", "container": "mp4", "video": {"width": 640}},
        {"name": "same", "container": "mkv"},
    )
    argv = build(spec, media(video(), audio()))
    assert graph(argv) == "[0:V:0]split=2[vsrc0][vsrc1];[vsrc0]scale=640:360:" + SWS + ",setsar=1[vout0]"
    assert value(output_args(argv, paths(spec)["same"]), "-map") == "[vsrc1]"


def test_outputs_without_any_filtering_need_no_graph() -> None:
    spec = job({"name": "a", "container": "mp4"}, {"name": "b", "container": "mkv", "video": {"crf": 30}})
    argv = build(spec, media(video(), audio()))
    assert "-filter_complex" not in argv
    for name in ("a", "b"):
        args = output_args(argv, paths(spec)[name])
        assert args[:2] == ["-map", "0:V:0"]
    assert value(output_args(argv, paths(spec)["b"]), "-f") == "matroska"


def test_copy_maps_input_streams_without_filtering() -> None:
    spec = job({"name": "c", "container": "mkv", "video": {"codec": "copy"}, "audio": {"codec": "copy"}})
    argv = build(spec, media(video(codec="hevc"), audio()))
    assert "-filter_complex" not in argv
    assert output_args(argv, paths(spec)["c"]) == [
        "-map",
        "0:V:0",
        "-c:v",
        "copy",
        "-map",
        "0:a:0",
        "-c:a",
        "copy",
        "-f",
        "matroska",
        "-cues_to_front",
        "1",
    ]


def test_copy_next_to_encodes_keeps_the_copy_unfiltered() -> None:
    spec = job(
        {"name": "c", "container": "mp4", "video": {"codec": "copy"}, "audio": {"codec": "copy"}},
        {"name": "s", "container": "mp4", "video": {"width": 640}},
    )
    argv = build(spec, media(video(), audio()))
    assert graph(argv) == "[0:V:0]scale=640:360:" + SWS + ",setsar=1[vout1]"
    copy = output_args(argv, paths(spec)["c"])
    assert copy[:4] == ["-map", "0:V:0", "-c:v", "copy"]


def test_hevc_in_mp4_is_tagged_for_apple_players_also_by_copy() -> None:
    spec = job(
        {"name": "e", "container": "mp4", "video": {"codec": "hevc", "preset": "slow"}},
        {"name": "c", "container": "mov", "video": {"codec": "copy"}},
        {"name": "k", "container": "mkv", "video": {"codec": "hevc"}},
    )
    argv = build(spec, media(video(codec="hevc"), audio()))
    enc = output_args(argv, paths(spec)["e"])
    assert (value(enc, "-c:v"), value(enc, "-crf"), value(enc, "-preset")) == ("libx265", "28", "slow")
    assert value(enc, "-x265-params") == "log-level=error:info=0:level-idc=4"
    assert value(enc, "-tag:v") == "hvc1"
    assert value(output_args(argv, paths(spec)["c"]), "-tag:v") == "hvc1"
    assert "-tag:v" not in output_args(argv, paths(spec)["k"])


@pytest.mark.parametrize(
    ("container", "codec", "muxer"),
    [("webm", "h264", "webm"), ("ts", "vp9", "mpegts"), ("mov", "av1", "mov"), ("mp4", "prores", "mp4")],
)
def test_copy_of_a_codec_the_container_cannot_hold_is_refused(container: str, codec: str, muxer: str) -> None:
    spec = job({"name": "c", "container": container, "video": {"codec": "copy"}, "audio": {"codec": "none"}})
    message = expect_unsupported(spec, media(video(codec=codec), audio()))
    assert codec in message and container in message


def test_audio_copy_into_webm_of_aac_is_refused() -> None:
    spec = job({"name": "c", "container": "webm", "audio": {"codec": "copy"}})
    assert "aac" in expect_unsupported(spec, media(video(), audio(codec="aac")))


def test_audio_only_input_to_audio_only_output() -> None:
    spec = job({"name": "a", "container": "mp4", "video": {"codec": "none"}, "audio": {"bitrate_kbps": 192}})
    argv = build(spec, media(None, audio()))
    assert output_args(argv, paths(spec)["a"]) == [
        "-map",
        "0:a:0",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-f",
        "mp4",
        "-movflags",
        "+faststart",
    ]


def test_video_asked_from_an_audio_only_input_is_unsupported() -> None:
    spec = job({"name": "a", "container": "mp4"})
    message = expect_unsupported(spec, media(None, audio()))
    assert "no video stream" in message and "video.codec" in message


def test_audio_asked_from_a_silent_input_is_dropped_not_failed() -> None:
    spec = job({"name": "v", "container": "webm"})
    argv = build(spec, media(video(), None))
    args = output_args(argv, paths(spec)["v"])
    assert "-c:a" not in args and "0:a:0" not in argv
    assert args.count("-map") == 1


def test_output_left_empty_by_a_silent_input_is_unsupported() -> None:
    spec = job({"name": "a", "container": "mp4", "video": {"codec": "none"}})
    assert "empty" in expect_unsupported(spec, media(video(), None))


def test_missing_encoder_is_unsupported() -> None:
    caps = Capabilities(
        encoders=ALL_CAPS.encoders - {"libsvtav1"}, filters=ALL_CAPS.filters, hwaccels=frozenset()
    )
    spec = job({"name": "a", "container": "mp4", "video": {"codec": "av1"}})
    assert "libsvtav1" in expect_unsupported(spec, media(video(), audio()), caps)


def test_missing_filter_is_unsupported() -> None:
    caps = Capabilities(
        encoders=ALL_CAPS.encoders, filters=ALL_CAPS.filters - {"split"}, hwaccels=frozenset()
    )
    spec = job({"name": "a", "container": "mp4", "video": {"width": 640}}, {"name": "b", "container": "mp4"})
    assert "split" in expect_unsupported(spec, media(video(), audio()), caps)


def test_svtav1_refuses_444_before_ffmpeg_runs() -> None:
    spec = job({"name": "a", "container": "mkv", "video": {"codec": "av1", "pix_fmt": "yuv444p"}})
    assert "yuv444p" in expect_unsupported(spec, media(video(), audio()))


@pytest.mark.parametrize(
    ("info", "want", "size"),
    [
        (video(1920, 1080), {"width": 854}, (854, 480)),
        (video(1920, 1080), {"height": 360}, (640, 360)),
        (video(1920, 1080), {"width": 640, "height": 480}, (640, 480)),  # both given: exactly that
        (video(1440, 1080, sample_aspect_ratio=4 / 3), {"width": 640}, (640, 360)),  # anamorphic source
        (video(1920, 1080, rotation=90), {"width": 360}, (360, 640)),  # portrait once rotated
        (video(1920, 1080, rotation=270), {}, None),
        (video(321, 241), {}, (320, 240)),  # odd input, 4:2:0 output
        (video(321, 241), {"pix_fmt": "yuv444p"}, None),  # 4:4:4 takes odd sizes
        (video(720, 576, sample_aspect_ratio=16 / 15), {}, (768, 576)),  # square the pixels
        (video(1000, 562), {"width": 500}, (500, 282)),  # 281 rounds to even
        (video(1920, 1080), {"width": 1920}, None),  # already that size
    ],
)
def test_target_size_keeps_aspect_and_even_dimensions(
    info: VideoInfo, want: dict[str, Any], size: tuple[int, int] | None
) -> None:
    spec = job({"name": "a", "container": "mkv", "video": want})
    assert target_size(spec.outputs[0], info) == size


def test_odd_aspect_source_is_scaled_in_the_graph() -> None:
    spec = job({"name": "a", "container": "mp4", "video": {"width": 640}})
    argv = build(spec, media(video(1440, 1080, sample_aspect_ratio=4 / 3), audio()))
    assert graph(argv) == "[0:V:0]scale=640:360:" + SWS + ",setsar=1[vout0]"


def test_fps_filter_comes_first_and_uses_exact_ntsc_fractions() -> None:
    spec = job(
        {"name": "a", "container": "mp4", "video": {"fps": 29.97, "width": 1280}},
        {"name": "b", "container": "mp4", "video": {"fps": 25}},  # same as the input: no filter
        {"name": "c", "container": "mp4", "video": {"fps": 12.5}},
    )
    g = graph(build(spec, media(video(), audio())))
    assert "[vsrc0]fps=30000/1001,scale=1280:720:" + SWS + ",setsar=1[vout0]" in g
    assert "[vsrc2]fps=12.5[vout2]" in g
    assert "vout1" not in g


def test_bitrate_mode_caps_the_rate_except_for_svtav1() -> None:
    spec = job(
        {"name": "x", "container": "mp4", "video": {"bitrate_kbps": 2500}},
        {
            "name": "a",
            "container": "mp4",
            "video": {"codec": "av1", "bitrate_kbps": 1500, "preset": "ultrafast"},
        },
        {"name": "v", "container": "webm", "video": {"bitrate_kbps": 1000, "preset": "ultrafast"}},
    )
    argv = build(spec, media(video(), audio()))
    x = output_args(argv, paths(spec)["x"])
    assert (value(x, "-b:v"), value(x, "-maxrate"), value(x, "-bufsize")) == ("2500k", "2500k", "5000k")
    assert "-crf" not in x
    a = output_args(argv, paths(spec)["a"])
    assert (value(a, "-c:v"), value(a, "-b:v"), value(a, "-preset")) == ("libsvtav1", "1500k", "11")
    assert "-maxrate" not in a and "-crf" not in a
    v = output_args(argv, paths(spec)["v"])
    assert (value(v, "-b:v"), value(v, "-maxrate"), value(v, "-deadline"), value(v, "-cpu-used")) == (
        "1000k",
        "1000k",
        "realtime",
        "8",
    )


def test_default_crf_per_codec_and_explicit_crf() -> None:
    spec = job(
        {"name": "a", "container": "mkv", "video": {"codec": "av1"}},
        {"name": "b", "container": "mkv", "video": {"codec": "hevc", "crf": 20}},
        {"name": "c", "container": "mkv", "video": {"codec": "vp9", "pix_fmt": "yuv420p10le"}},
    )
    argv = build(spec, media(video(), audio()))
    a = output_args(argv, paths(spec)["a"])
    assert (value(a, "-crf"), value(a, "-preset")) == ("35", "8")
    assert value(output_args(argv, paths(spec)["b"]), "-crf") == "20"
    c = output_args(argv, paths(spec)["c"])
    assert (value(c, "-crf"), value(c, "-pix_fmt")) == ("32", "yuv420p10le")


def test_audio_branches_resample_and_set_layouts_only_where_needed() -> None:
    spec = job(
        {"name": "op", "container": "webm"},  # opus at 48 kHz from 44.1 kHz 5.1(side): resample + layout
        {"name": "mp", "container": "mp4", "audio": {"codec": "mp3"}},  # mp3: at most stereo
        {"name": "aa", "container": "mp4", "audio": {"channels": 2, "sample_rate": 44100}},
        {"name": "keep", "container": "mkv"},  # aac keeps 5.1(side) as it is
    )
    argv = build(spec, media(video(), audio(channels=6, sample_rate=44100, layout="5.1(side)")))
    g = graph(argv)
    assert "[0:a:0]asplit=4[asrc0][asrc1][asrc2][asrc3]" in g
    assert "[asrc0]aresample=48000,aformat=channel_layouts=5.1[aout0]" in g
    # 5.1 to stereo is the explicit BS.775 matrix with headroom, LFE left out.
    assert f"[asrc1]{DOWNMIX_5_1_STEREO}[aout1]" in g and f"[asrc2]{DOWNMIX_5_1_STEREO}[aout2]" in g
    keep = output_args(argv, paths(spec)["keep"])
    assert "[asrc3]" in keep
    # Default bitrates scale with channel pairs so surround is not starved.
    assert value(output_args(argv, paths(spec)["op"]), "-b:a") == "288k"
    assert value(keep, "-b:a") == "384k"
    assert value(output_args(argv, paths(spec)["mp"]), "-b:a") == "128k"


def test_threads_are_passed_to_decoder_filters_and_encoders() -> None:
    spec = job({"name": "a", "container": "mp4", "video": {"width": 640}})
    argv = build(spec, media(video(), audio()), threads=3)
    assert value(argv, "-threads") == "3"
    assert argv.index("-threads") < argv.index("-i")
    assert value(argv, "-filter_complex_threads") == "3"
    assert value(output_args(argv, paths(spec)["a"]), "-threads:v") == "3"
    assert "-threads" not in build(spec, media(video(), audio()))


def test_each_container_gets_its_muxer_and_faststart_where_it_applies() -> None:
    spec = job(*({"name": c, "container": c} for c in ("mp4", "mkv", "mov", "webm", "ts")))
    argv = build(spec, media(video(), audio()))
    muxers = {name: value(output_args(argv, p), "-f") for name, p in paths(spec).items()}
    assert muxers == {"mp4": "mp4", "mkv": "matroska", "mov": "mov", "webm": "webm", "ts": "mpegts"}
    faststart = {name for name, p in paths(spec).items() if "-movflags" in output_args(argv, p)}
    assert faststart == {"mp4", "mov"}


def test_every_output_needs_a_path() -> None:
    spec = job({"name": "a", "container": "mp4"})
    with pytest.raises(ValueError, match="'a'"):
        build_transcode(spec, media(video(), audio()), ALL_CAPS, INPUT, {})


def test_expected_duration_prefers_the_container_then_frames() -> None:
    spec = job({"name": "a", "container": "mp4"})
    assert expected_duration(spec, media(video(), audio(), duration=12.5)) == 12.5
    assert expected_duration(spec, media(video(frames=100, fps=25.0), None, duration=None)) == 4.0
    assert expected_duration(spec, media(video(frames=None), None, duration=None)) is None
