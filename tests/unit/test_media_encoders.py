"""Hardware encoders: NVENC, Quick Sync and VA-API command building, refusals, CPU fallback, detection."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import Fallback, Hardware, JobSpec, PixFmt, Preset, VideoCodec
from framefleet.media.capabilities import CPU_ENCODERS, Capabilities, Devices, hardware_for
from framefleet.media.command import plan_job
from framefleet.media.encoders import (
    Family,
    HardwareSetup,
    VideoEncode,
    hw_refusal,
    level_vbv,
    video_encoder_args,
)
from framefleet.media.filters import Assets
from framefleet.media.probe import AudioInfo, MediaInfo, VideoInfo
from tests.unit.test_media_plan import FILTERS, graph, output, value

HW_ENCODERS = frozenset(
    {
        "h264_nvenc",
        "hevc_nvenc",
        "av1_nvenc",
        "h264_qsv",
        "hevc_qsv",
        "av1_qsv",
        "vp9_qsv",
        "h264_vaapi",
        "hevc_vaapi",
        "av1_vaapi",
        "vp9_vaapi",
    }
)
CAPS = Capabilities(
    encoders=frozenset(CPU_ENCODERS.values()) | HW_ENCODERS,
    filters=FILTERS,
    hwaccels=frozenset({"cuda", "qsv", "vaapi"}),
)
NVENC = HardwareSetup(Family.nvenc)

# How every encoded picture of a BT.709 source is scaled (see framefleet/media/colour.py).
SWS = (
    "flags=lanczos+accurate_rnd+full_chroma_int"
    ":in_range=limited:out_range=limited:in_color_matrix=bt709:out_color_matrix=bt709"
)


def media(codec: str = "h264", bit_depth: int = 8, rotation: int = 0) -> MediaInfo:
    video = VideoInfo(
        codec=codec,
        width=1920,
        height=1080,
        fps=25.0,
        pix_fmt="yuv420p",
        # Tagged BT.709 limited range: nothing for the colour stage to add.
        color_primaries="bt709",
        color_transfer="bt709",
        color_matrix="bt709",
        color_range="tv",
        rotation=rotation,
        frames=250,
        bit_rate=None,
        bit_depth=bit_depth,
    )
    audio = AudioInfo(codec="aac", channels=2, sample_rate=48000, bit_rate=None, layout="stereo")
    return MediaInfo(format_name="mp4", duration=10.0, size_bytes=1, bit_rate=None, video=video, audio=audio)


def plan(
    body: dict[str, Any],
    hardware: HardwareSetup | None = NVENC,
    info: MediaInfo | None = None,
    assets: Assets | None = None,
) -> Any:
    spec = JobSpec.model_validate({"input": "file:///in.mp4", "hardware": "gpu", **body})
    return plan_job(
        spec, info or media(), CAPS, Path("/w/in.mp4"), Path("/w/out"), hardware=hardware, assets=assets
    )


# --- encoder arguments ------------------------------------------------------------------------------------


def test_nvenc_maps_presets_and_constant_quality() -> None:
    args = video_encoder_args(VideoEncode(codec=VideoCodec.h264, crf=21, preset=Preset.slow), Family.nvenc)
    assert args == [
        "-c:v",
        "h264_nvenc",
        "-rc",
        "vbr",
        "-cq",
        "21",
        "-b:v",
        "0",
        "-preset",
        "p6",
        "-tune",
        "hq",
        "-a53cc",
        "0",
        "-pix_fmt",
        "nv12",
    ]
    fast = video_encoder_args(VideoEncode(codec=VideoCodec.hevc, preset=Preset.ultrafast), Family.nvenc)
    assert value(fast, "-preset") == "p1" and value(fast, "-cq") == "28" and "-x265-params" not in fast


def test_nvenc_bitrate_ladder_rung_with_aligned_idr_frames() -> None:
    enc = VideoEncode(
        codec=VideoCodec.av1, bitrate_kbps=3000, maxrate_kbps=4500, gop=50, pix_fmt=PixFmt.yuv420p10le
    )
    args = video_encoder_args(enc, Family.nvenc, stream="v:1")
    assert args[:8] == ["-c:v:1", "av1_nvenc", "-rc:v:1", "vbr", "-b:v:1", "3000k", "-maxrate:v:1", "4500k"]
    assert value(args, "-g:v:1") == "50" and value(args, "-force_key_frames:v:1") == "expr:eq(mod(n,50),0)"
    assert (
        value(args, "-forced-idr:v:1"),
        value(args, "-no-scenecut:v:1"),
        value(args, "-strict_gop:v:1"),
    ) == ("1", "1", "1")
    assert value(args, "-pix_fmt:v:1") == "p010le"
    assert "-pix_fmt:v:1" not in video_encoder_args(enc, Family.nvenc, stream="v:1", hw_frames=True)


def test_qsv_and_vaapi_arguments() -> None:
    qsv = video_encoder_args(VideoEncode(codec=VideoCodec.hevc, crf=24, gop=48), Family.qsv)
    assert qsv[:4] == ["-c:v", "hevc_qsv", "-global_quality", "24"]
    assert (value(qsv, "-preset"), value(qsv, "-forced_idr"), value(qsv, "-idr_interval")) == (
        "medium",
        "1",
        "0",
    )
    vaapi = video_encoder_args(
        VideoEncode(codec=VideoCodec.h264, bitrate_kbps=2000, preset=Preset.fast), Family.vaapi
    )
    assert vaapi[:4] == ["-c:v", "h264_vaapi", "-rc_mode", "VBR"]
    assert value(vaapi, "-compression_level") == "3" and "-pix_fmt" not in vaapi


@pytest.mark.parametrize(
    ("family", "enc", "reason"),
    [
        (Family.nvenc, VideoEncode(codec=VideoCodec.vp9), "no vp9 encoder"),
        (Family.nvenc, VideoEncode(codec=VideoCodec.hevc, pix_fmt=PixFmt.yuv422p), "cannot encode yuv422p"),
        (Family.nvenc, VideoEncode(codec=VideoCodec.h264, width=7680, height=4320), "at most 4096"),
        (Family.qsv, VideoEncode(codec=VideoCodec.h264, pix_fmt=PixFmt.yuv444p), "cannot encode yuv444p"),
        (
            Family.vaapi,
            VideoEncode(codec=VideoCodec.h264, pix_fmt=PixFmt.yuv420p10le),
            "cannot encode yuv420p10le",
        ),
    ],
)
def test_what_an_encoder_cannot_do_is_named(family: Family, enc: VideoEncode, reason: str) -> None:
    assert reason in (hw_refusal(family, enc) or "")


def test_ten_bit_hevc_and_av1_are_fine_on_nvenc() -> None:
    for codec in (VideoCodec.hevc, VideoCodec.av1):
        assert hw_refusal(Family.nvenc, VideoEncode(codec=codec, pix_fmt=PixFmt.yuv420p10le)) is None


# --- planning on a GPU worker -----------------------------------------------------------------------------


def test_nvenc_ladder_decodes_and_scales_on_the_gpu() -> None:
    body = {
        "groups": [
            {
                "name": "abr",
                "type": "hls",
                "segment_type": "fmp4",
                "ladder": ["1080p", "720p"],
                "video_codec": "hevc",
                "audio": [],
            }
        ],
        "thumbnails": [{"times": [1]}],
        "quality": {"metrics": ["vmaf"]},
    }
    job = plan(body)
    argv = job.argv
    assert job.notes["gpu_frames"] is True
    assert argv[argv.index("-i") - 6 : argv.index("-i")] == [
        "-hwaccel",
        "cuda",
        "-hwaccel_output_format",
        "cuda",
        "-extra_hw_frames",
        "8",
    ]
    g = graph(argv)
    assert "[vsrcg0r0]scale_cuda=1920:1080:format=nv12,split=2[voutg0r0][vrefg0r0raw]" in g
    assert "[vrefg0r0raw]hwdownload,format=nv12[vrefg0r0]" in g
    # The 720p rung is scored at the source's 1080p: its reference is split off before the GPU scale.
    assert "[vsrcg0r1]split=2[voutg0r1raw][vrefg0r1raw]" in g
    assert "[voutg0r1raw]scale_cuda=1280:720:format=nv12[voutg0r1]" in g
    assert "[vrefg0r1raw]hwdownload,format=nv12[vrefg0r1]" in g
    assert "[vsrcp0]hwdownload,format=nv12,select=" in g  # thumbnails are made on the CPU
    rung = output(argv, "/w/out/groups/abr/1080p.m3u8")
    assert value(rung, "-c:v") == "hevc_nvenc" and "-pix_fmt" not in rung and "-threads:v" not in rung


def test_nvenc_cmaf_rungs_keep_their_colour_tags_on_the_gpu() -> None:
    body = {"groups": [{"name": "c", "type": "cmaf", "ladder": ["720p"], "audio": []}]}
    info = media()
    assert info.video is not None
    untagged = replace(
        info.video, color_primaries=None, color_transfer=None, color_matrix=None, color_range=None
    )
    job = plan(body, info=replace(info, video=untagged))
    assert job.notes["gpu_frames"] is True
    tags = "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"
    assert f"scale_cuda=1280:720:format=nv12,{tags}" in graph(job.argv)


def test_ten_bit_sources_download_as_p010() -> None:
    body = {
        "outputs": [{"name": "t", "container": "mp4", "video": {"height": 360}}],
        "thumbnails": [{"times": [1]}],
    }
    g = graph(plan(body, info=media(codec="hevc", bit_depth=10)).argv)
    assert "scale_cuda=640:360:format=nv12" in g and "hwdownload,format=p010le,select=" in g


def test_operations_keep_decoding_on_the_cpu_and_nvenc_takes_system_frames(tmp_path: Path) -> None:
    body = {
        "outputs": [{"name": "o", "container": "mp4"}],
        "operations": {"watermark": {"uri": "file:///m/logo.png"}},
    }
    job = plan(body, assets=Assets(watermark=tmp_path / "logo.png", watermark_size=(100, 50)))
    assert "-hwaccel" not in job.argv and "gpu_frames" not in job.notes
    out = output(job.argv, "/w/out/o.mp4")
    assert value(out, "-c:v") == "h264_nvenc" and value(out, "-pix_fmt") == "nv12"
    assert "scale_cuda" not in graph(job.argv)
    assert "-hwaccel" not in plan({"outputs": [{"container": "mp4"}]}, info=media(rotation=90)).argv


def test_what_nvenc_cannot_do_goes_to_the_cpu_only_with_fallback() -> None:
    body: dict[str, Any] = {
        "outputs": [{"name": "v", "container": "webm"}, {"name": "h", "container": "mp4"}]
    }
    with pytest.raises(JobFailure) as caught:
        plan(body)
    assert caught.value.failure_class is FailureClass.spec_unsupported
    assert "nvenc has no vp9 encoder" in caught.value.message and "fallback: cpu" in caught.value.message
    job = plan({**body, "fallback": "cpu"})
    assert job.notes["cpu_fallback"] == ["output 'v': nvenc has no vp9 encoder"]
    assert value(output(job.argv, "/w/out/v.webm"), "-c:v") == "libvpx-vp9"
    assert value(output(job.argv, "/w/out/h.mp4"), "-c:v") == "h264_nvenc"
    g = graph(job.argv)
    assert (
        "[vsrc0]hwdownload,format=nv12[vout0]" in g and "[vsrc1]scale_cuda=1920:1080:format=nv12[vout1]" in g
    )


def test_qsv_and_vaapi_plans() -> None:
    qsv = plan(
        {"outputs": [{"name": "q", "container": "mp4", "video": {"codec": "hevc"}}]},
        HardwareSetup(Family.qsv, "/dev/dri/renderD128"),
    )
    assert qsv.argv[qsv.argv.index("-init_hw_device") + 1] == "qsv=qs:/dev/dri/renderD128"
    assert value(output(qsv.argv, "/w/out/q.mp4"), "-c:v") == "hevc_qsv"
    vaapi = plan(
        {"outputs": [{"name": "a", "container": "mp4", "video": {"height": 720}}]},
        HardwareSetup(Family.vaapi, "/dev/dri/renderD129"),
    )
    assert vaapi.argv[vaapi.argv.index("-init_hw_device") + 1] == "vaapi=va:/dev/dri/renderD129"
    assert "[0:V:0]scale=1280:720:" + SWS + ",setsar=1,format=nv12,hwupload[vout0]" in graph(vaapi.argv)


def test_without_a_gpu_family_the_cpu_encoders_run() -> None:
    out = output(plan({"outputs": [{"name": "c", "container": "mp4"}]}, hardware=None).argv, "/w/out/c.mp4")
    assert value(out, "-c:v") == "libx264"


# --- detection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("devices", "family", "device"),
    [
        (Devices(nvidia=True, render_nodes={"/dev/dri/renderD128": "0x8086"}), Family.nvenc, None),
        (Devices(render_nodes={"/dev/dri/renderD128": "0x8086"}), Family.qsv, "/dev/dri/renderD128"),
        (Devices(render_nodes={"/dev/dri/renderD128": "0x1002"}), Family.vaapi, "/dev/dri/renderD128"),
    ],
)
def test_the_gpu_family_follows_the_devices(devices: Devices, family: Family, device: str | None) -> None:
    setup = hardware_for(CAPS, devices)
    assert setup is not None and (setup.family, setup.device) == (family, device)


def test_no_gpu_or_no_encoder_for_it_means_none() -> None:
    assert hardware_for(CAPS, Devices()) is None
    cpu_only = Capabilities(encoders=frozenset(CPU_ENCODERS.values()), filters=FILTERS, hwaccels=frozenset())
    assert (
        hardware_for(cpu_only, Devices(nvidia=True, render_nodes={"/dev/dri/renderD128": "0x8086"})) is None
    )


def test_a_gpu_job_without_a_gpu_encoder_fails_or_falls_back_as_its_spec_says() -> None:
    from types import SimpleNamespace

    from framefleet.worker.pipeline import _hardware

    spec = JobSpec.model_validate(
        {"input": "file:///in.mp4", "outputs": [{"container": "mp4"}], "hardware": "gpu"}
    )
    cpu_only = Capabilities(encoders=frozenset(CPU_ENCODERS.values()), filters=FILTERS, hwaccels=frozenset())
    settings: Any = SimpleNamespace(pool="cpu")
    with pytest.raises(JobFailure) as caught:
        _hardware(spec, settings, cpu_only)
    assert caught.value.failure_class is FailureClass.hardware_unavailable
    assert _hardware(spec.model_copy(update={"fallback": Fallback.cpu}), settings, cpu_only) is None
    auto = spec.model_copy(update={"hardware": Hardware.auto})
    assert _hardware(auto, settings, CAPS) is None  # auto on a CPU worker never looks for a GPU


def test_hls_ts_rungs_on_hardware_pin_zero_b_frames_and_the_sound_needs_no_lead() -> None:
    # HLS TS lines the sound up with the video's first decode time, which must be known at plan time; the
    # driver's preset tables decide hardware B-frames, so TS rungs pin none (fMP4 groups keep the preset's).
    group = {"name": "abr", "type": "hls", "ladder": ["720p", "360p"], "segment_seconds": 2}
    job = plan({"groups": [group]})
    rung = output(job.argv, "/w/out/groups/abr/720p.m3u8")
    assert value(rung, "-c:v") == "h264_nvenc" and value(rung, "-bf:v") == "0"
    assert "adelay" not in graph(job.argv)  # no reorder delay: the AAC priming alone is left
    fmp4 = plan({"groups": [{**group, "segment_type": "fmp4"}]})
    assert "-bf:v" not in output(fmp4.argv, "/w/out/groups/abr/720p.m3u8")


def test_an_hls_ts_group_with_mixed_reorder_delays_says_so() -> None:
    ladder = ["720p", {"name": "low", "height": 360, "profile": "baseline"}]
    job = plan({"groups": [{"name": "abr", "type": "hls", "ladder": ladder}]}, hardware=None)
    (note,) = job.notes["hls_ts_sync"]
    assert "[0, 2] frames" in note
    assert "adelay=delays=2816S:all=1" in graph(job.argv)  # the longest: two frames at 25 fps


def test_uncapped_h264_gets_its_levels_vbv_and_capped_streams_keep_theirs() -> None:
    hd25 = VideoEncode(VideoCodec.h264, crf=20, width=1920, height=1080, fps=25)
    assert level_vbv(hd25) == (25000, 31250)  # level 4.0, High: 1.25 x MaxBR 20000 and MaxCPB 25000
    assert level_vbv(replace(hd25, fps=50)) == (62500, 78125)  # 4.2
    assert level_vbv(replace(hd25, preset=Preset.ultrafast)) == (20000, 25000)  # Constrained Baseline
    assert level_vbv(replace(hd25, level="3.1")) == (17500, 17500)  # the level the spec names
    args = video_encoder_args(hd25, Family.cpu)
    assert args[args.index("-maxrate") + 1] == "25000k" and args[args.index("-bufsize") + 1] == "31250k"
    assert level_vbv(replace(hd25, maxrate_kbps=6000)) is None
    assert level_vbv(replace(hd25, crf=None, bitrate_kbps=5000)) is None
    assert level_vbv(replace(hd25, codec=VideoCodec.hevc)) is None  # x265 caps itself at its level


@pytest.mark.parametrize(
    ("family", "codec", "option"),
    [
        (Family.nvenc, VideoCodec.h264, ("-a53cc", "0")),
        (Family.nvenc, VideoCodec.hevc, ("-a53cc", "0")),
        (Family.nvenc, VideoCodec.av1, ("-a53cc", "0")),
        (Family.qsv, VideoCodec.h264, ("-a53cc", "0")),
        (Family.vaapi, VideoCodec.h264, ("-sei", "timing+recovery_point")),
        (Family.vaapi, VideoCodec.hevc, ("-sei", "hdr")),
    ],
)
def test_hardware_encoders_copy_no_captions_and_name_no_version(
    family: Family, codec: VideoCodec, option: tuple[str, str]
) -> None:
    """On by default, these would write the source's CEA-608/708 captions (HLS masters say there are none)
    or, on VA-API H.264, the driver's and library's versions, into every stream."""
    args = video_encoder_args(VideoEncode(codec=codec, crf=24), family)
    assert value(args, option[0]) == option[1]
    rung = video_encoder_args(VideoEncode(codec=codec, bitrate_kbps=900, gop=48), family, stream="v:1")
    assert value(rung, f"{option[0]}:v:1") == option[1]
