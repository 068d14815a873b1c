"""plan_job: groups, pictures and in-process scoring in the one ffmpeg argument list (pure, no ffmpeg run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from framefleet.core.failures import JobFailure
from framefleet.core.operations import LoudnessSpec
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import CPU_ENCODERS, Capabilities
from framefleet.media.command import JobPlan, plan_job
from framefleet.media.loudness import check_loudness
from framefleet.media.metadata import STRIP_METADATA
from framefleet.media.planning import LoudnessCheck
from framefleet.media.probe import AudioInfo, MediaInfo, VideoInfo, idet_parity

FILTERS = frozenset(
    {
        "split",
        "asplit",
        "scale",
        "setsar",
        "setparams",
        "fps",
        "aresample",
        "adelay",
        "asetpts",
        "aformat",
        "pan",
        "null",
        "anull",
        "select",
        "tile",
        "thumbnail",
        "palettegen",
        "paletteuse",
        "libvmaf",
        "ssim",
        "psnr",
        "format",
        "setpts",
        "crop",
        "pad",
        "transpose",
        "hflip",
        "vflip",
        "bwdif",
        "hqdn3d",
        "overlay",
        "colorchannelmixer",
        "subtitles",
        "loudnorm",
        "zscale",
        "tonemap",
        "sidedata",
        "scale_cuda",
        "hwdownload",
        "hwupload",
    }
)
CAPS = Capabilities(
    encoders=frozenset(CPU_ENCODERS.values()) | {"libwebp"}, filters=FILTERS, hwaccels=frozenset()
)
SOURCE = Path("/w/in.mp4")
WORK = Path("/w/out")

# How every encoded picture of a BT.709 source is scaled (see framefleet/media/colour.py).
SWS = (
    "flags=lanczos+accurate_rnd+full_chroma_int"
    ":in_range=limited:out_range=limited:in_color_matrix=bt709:out_color_matrix=bt709"
)


def media(width: int = 1280, height: int = 720, audio: bool = True, **kw: Any) -> MediaInfo:
    video = VideoInfo(
        codec="h264",
        width=width,
        height=height,
        fps=25.0,
        pix_fmt="yuv420p",
        rotation=0,
        frames=250,
        bit_rate=None,
        **kw,
    )
    sound = (
        AudioInfo(codec="aac", channels=2, sample_rate=48000, bit_rate=None, layout="stereo")
        if audio
        else None
    )
    return MediaInfo(format_name="mp4", duration=10.0, size_bytes=1, bit_rate=None, video=video, audio=sound)


def plan(body: dict[str, Any], info: MediaInfo | None = None, **kw: Any) -> JobPlan:
    spec = JobSpec.model_validate({"input": "file:///in.mp4", **body})
    return plan_job(spec, info or media(), CAPS, SOURCE, WORK, **kw)


def graph(argv: list[str], which: int = 0) -> str:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-filter_complex"][which]


def output(argv: list[str], path: str) -> list[str]:
    """Options of the output written to `path`: from after the previous output's path (an argument that is
    no flag's value) or the first graph."""
    end = argv.index(path)
    begin = argv.index("-filter_complex") + 2 if "-filter_complex" in argv else argv.index(str(SOURCE)) + 1
    index = begin
    while index < end:
        if argv[index] in ("-an", "-vn"):
            index += 1
            continue
        if argv[index].startswith("-") and argv[index] != "-":
            index += 2
            continue
        begin = index + 1  # a bare argument here ends an output
        index += 1
    # Every output first drops the input's metadata (media/metadata.py); the rest is the output's own.
    assert argv[begin : begin + len(STRIP_METADATA)] == list(STRIP_METADATA)
    return argv[begin + len(STRIP_METADATA) : end]


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


HLS = {"name": "abr", "type": "hls", "ladder": ["720p", "360p"], "segment_seconds": 2, "preset": "fast"}


def test_hls_rungs_share_one_decode_with_aligned_gops() -> None:
    argv = plan({"groups": [HLS]}).argv
    assert argv.count("-i") == 1
    g = graph(argv)
    assert g.startswith("[0:V:0]split=2[vsrcg0r0][vsrcg0r1];")
    assert (
        "[vsrcg0r0]setsar=1/1,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv[voutg0r0]"
        in g
    )
    assert (
        "[vsrcg0r1]scale=640:360:"
        + SWS
        + ",setsar=1/1,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv[voutg0r1]"
        in g
    )
    rung = output(argv, "/w/out/groups/abr/720p.m3u8")
    assert rung[:2] == ["-map", "[voutg0r0]"]
    assert (value(rung, "-b:v"), value(rung, "-maxrate"), value(rung, "-bufsize")) == (
        "2800k",
        "4200k",
        "5600k",
    )
    assert (value(rung, "-g"), value(rung, "-keyint_min"), value(rung, "-sc_threshold")) == ("50", "50", "0")
    assert value(rung, "-force_key_frames") == "expr:eq(mod(n,50),0)"
    assert (value(rung, "-profile:v"), value(rung, "-preset"), value(rung, "-aspect:v")) == (
        "high",
        "fast",
        "16:9",
    )
    assert (value(rung, "-f"), value(rung, "-hls_time"), value(rung, "-hls_playlist_type")) == (
        "hls",
        "2",
        "vod",
    )
    assert value(rung, "-hls_segment_type") == "mpegts" and "-an" in rung
    assert value(rung, "-hls_segment_filename") == "/w/out/groups/abr/720p_%05d.ts"
    audio = output(argv, "/w/out/groups/abr/aac_128k.m3u8")
    assert audio[:2] == ["-map", "[aoutg0a0]"]
    assert (value(audio, "-c:a"), value(audio, "-b:a")) == ("aac", "128k")
    assert "-vn" in audio
    # x264 at `fast` starts decoding two frames (80 ms) before the first picture; the sound's first AAC
    # packet starts there too: 3840 samples less the encoder's 1024 of priming, in silence before t=0.
    assert "[0:a:0]adelay=delays=2816S:all=1,asetpts=PTS-2816/SR/TB[aoutg0a0]" in g
    for muxed in (rung, audio):  # every playlist keeps the encoders' timestamps: one clock for A and V
        assert value(muxed, "-avoid_negative_ts") == "disabled"
        assert value(muxed, "-hls_segment_options") == "avoid_negative_ts=disabled"


def test_hls_fmp4_segments_and_no_audio() -> None:
    argv = plan({"groups": [{**HLS, "segment_type": "fmp4", "audio": []}]}).argv
    rung = output(argv, "/w/out/groups/abr/360p.m3u8")
    assert value(rung, "-hls_segment_type") == "fmp4"
    assert value(rung, "-hls_fmp4_init_filename") == "360p_init.mp4"
    assert value(rung, "-hls_segment_filename") == "/w/out/groups/abr/360p_%05d.m4s"
    assert "0:a:0" not in argv


def test_dash_output_holds_every_rendition_with_sets_by_codec_and_language() -> None:
    group = {
        "name": "d",
        "type": "dash",
        "ladder": [
            {"height": 720, "codec": "hevc", "crf": 26},
            {"height": 360, "codec": "av1", "crf": 40},
            {"height": 240, "codec": "hevc", "bitrate_kbps": 300},
        ],
        "segment_seconds": 4,
        "audio": [
            {"name": "en", "language": "en"},
            {"name": "en2", "language": "en", "bitrate_kbps": 64},
            {"name": "fr", "codec": "opus", "language": "fr"},
        ],
    }
    argv = plan({"groups": [group]}, media(1920, 1080)).argv
    dash = output(argv, "/w/out/groups/d/manifest.mpd")
    assert [dash[i + 1] for i, a in enumerate(dash) if a == "-map"] == [
        "[voutg0r0]",
        "[voutg0r1]",
        "[voutg0r2]",
        "0:a:0",
        "0:a:0",
        "0:a:0",  # stereo 48 kHz needs no filter
    ]
    assert value(dash, "-c:v:0") == "libx265" and value(dash, "-c:v:1") == "libsvtav1"
    assert (
        value(dash, "-x265-params:v:0")
        == "log-level=error:info=0:keyint=50:min-keyint=50:scenecut=0:open-gop=0:level-idc=3.1"
    )
    assert value(dash, "-svtav1-params:v:1") == "irefresh-type=2:scd=0"
    assert value(dash, "-tag:v:0") == "hvc1" and value(dash, "-forced-idr:v:2") == "1"
    assert (
        value(dash, "-adaptation_sets") == "id=0,streams=0,2 id=1,streams=1 id=2,streams=3,4 id=3,streams=5"
    )
    assert value(dash, "-metadata:s:a:2") == "language=fr" and value(dash, "-c:a:2") == "libopus"
    assert (value(dash, "-seg_duration"), value(dash, "-dash_segment_type")) == ("4", "mp4")
    assert value(dash, "-media_seg_name") == "chunk-$RepresentationID$-$Number%05d$.m4s"
    assert "-format_options" not in dash


def test_cmaf_brands_its_segments_and_tags_colour() -> None:
    body = {"groups": [{"name": "c", "type": "cmaf", "ladder": ["360p", "240p"]}]}
    cmaf = plan(body).argv
    assert (
        value(output(cmaf, "/w/out/groups/c/manifest.mpd"), "-format_options") == "movflags=+cmaf+write_colr"
    )
    # An untagged HD source is BT.709, as players assume; scaling keeps its pixels so, and every rung says so.
    hd = "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"
    assert graph(cmaf).count(hd) == 2
    sd = "setparams=color_primaries=bt470bg:color_trc=smpte170m:colorspace=bt470bg:range=tv"
    assert sd in graph(plan(body, media(720, 576)).argv)
    ntsc = "setparams=color_primaries=smpte170m:color_trc=smpte170m:colorspace=smpte170m:range=tv"
    ntsc_source = media(640, 480)  # 480 lines at 29.97 Hz: NTSC (at 25 Hz it would be taken as PAL)
    assert ntsc_source.video is not None
    ntsc_source = replace(ntsc_source, video=replace(ntsc_source.video, fps=29.97))
    assert ntsc in graph(plan(body, ntsc_source).argv)
    tagged = media(720, 576, color_primaries="bt2020", color_transfer="smpte2084")
    hdr = "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc:range=tv"
    ten_bit = [{"height": 360, "codec": "hevc", "pix_fmt": "yuv420p10le"}]
    hevc = {"groups": [{**body["groups"][0], "video_codec": "hevc", "ladder": ten_bit}]}
    assert hdr in graph(plan(hevc, tagged).argv)
    # 8-bit H.264 rungs of a PQ source are tone-mapped, and tagged as the BT.709 pictures they now are.
    sdr = graph(plan(body, tagged).argv)
    assert "tonemap=" in sdr and hdr not in sdr and "zscale=t=bt709:m=bt709:r=tv" in sdr
    # Every encoded picture is tagged, DASH and HLS rungs too (an untagged source is tagged as assumed).
    dash = plan({"groups": [{**body["groups"][0], "type": "dash"}]}).argv
    assert graph(dash).count(hd) == 2


def test_odd_rung_sizes_keep_the_exact_display_aspect() -> None:
    argv = plan({"groups": [{"name": "g", "type": "dash", "ladder": ["240p"]}]}).argv
    assert "scale=426:240:" + SWS + ",setsar=640/639" in graph(argv)


def test_scored_streams_are_decoded_back_in_the_same_process() -> None:
    body = {
        "outputs": [{"name": "main", "container": "mp4", "video": {"height": 360}}],
        "groups": [{"name": "d", "type": "dash", "ladder": ["720p", "360p"], "audio": []}],
        "quality": {"metrics": ["vmaf", "ssim"]},
    }
    job = plan(body)
    argv = job.argv
    g = graph(argv)
    # Scaled streams are scored at the source's size: the reference is split off before the scale.
    assert (
        "[vsrc0]split=2[vout0raw][vref0];[vout0raw]scale=640:360:"
        + SWS
        + ",setsar=1,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv[vout0]"
        in g
    )
    assert "[vsrcg0r1]split=2[voutg0r1raw][vrefg0r1];[voutg0r1raw]scale=640:360:" + SWS + "" in g
    refs = argv[argv.index("[vref0]") - 1 : argv.index("rawvideo") + 4]
    assert refs == [
        "-map",
        "[vref0]",
        "-map",
        "[vrefg0r0]",
        "-map",
        "[vrefg0r1]",
        "-c:v",
        "rawvideo",
        "-f",
        "null",
        "-",
    ]
    decoders = [argv[i + 1] for i, a in enumerate(argv) if a == "-dec"]
    # main.mp4 is output 0; the DASH output (1) holds both rungs; the references are output 2.
    assert decoders == ["0:0", "1:0", "1:1", "2:0", "2:1", "2:2"]
    scoring = graph(argv, 1)
    # main (360p) is upscaled to 1280x720 and compared there; a copy of each side stays at 640x360.
    assert scoring.startswith(
        "[dec:0]split=2[qn0d][qu0d];[qu0d]scale=1280:720:flags=bicubic,setsar=1[qx0d];"
        "[dec:3]split=2[qx0r][qu0r];[qu0r]scale=640:360:flags=bicubic,setsar=1[qn0r];"
        "[qx0d]setparams=range=unknown:color_primaries=unknown:color_trc=unknown:colorspace=unknown,setpts=PTS-STARTPTS,format=yuv420p,split=2[qd0v][qd0s];"
    )
    untagged = "setparams=range=unknown:color_primaries=unknown:color_trc=unknown:colorspace=unknown"
    assert f"[qn0d]{untagged},setpts=PTS-STARTPTS,format=yuv420p,split=2[qd0nv][qd0ns]" in scoring
    assert f"[dec:1]{untagged},setpts=PTS-STARTPTS" in scoring  # the 720p rung is at display size already
    assert scoring.count("libvmaf=") == 5 and scoring.count("ssim=") == 5
    assert [s.name for s in job.scores] == ["main", "d/720p", "d/360p"]
    assert job.scores[1].segment_seconds == 4.0 and job.scores[1].model == "vmaf_v0.6.1"
    assert job.scores[0].display == (1280, 720) and job.scores[1].display is None
    native = job.scores[2].native
    assert native is not None and (native.width, native.height) == (640, 360)
    maps = ["-map", "[qv2]", "-map", "[qs2]", "-map", "[qv2n]", "-map", "[qs2n]"]
    assert argv[-11:] == [*maps, "-f", "null", "-"]


def test_rungs_of_a_uhd_source_are_scored_at_its_size_with_the_4k_model_or_at_a_configured_display() -> None:
    ladder = {"name": "abr", "type": "hls", "ladder": ["1080p", "720p"], "segment_seconds": 2}
    job = plan({"groups": [ladder], "quality": {"metrics": ["vmaf"]}}, media(3840, 2160))
    for score, (w, h) in zip(job.scores, [(1920, 1080), (1280, 720)], strict=True):
        # Upscaled to the 2160p source and scored there with the 4K model; own size with the HD one.
        assert (score.display, score.model) == ((3840, 2160), "vmaf_4k_v0.6.1")
        assert score.native is not None and (score.native.width, score.native.height) == (w, h)
        assert score.native.model == "vmaf_v0.6.1"
    scoring = graph(job.argv, 1).split(";")
    assert scoring[:4] == [
        "[dec:0]split=2[qn0d][qu0d]",
        "[qu0d]scale=3840:2160:flags=bicubic,setsar=1[qx0d]",  # the rung up to the source's size
        "[dec:2]split=2[qx0r][qu0r]",  # the unscaled source, and a copy brought down for the native score
        "[qu0r]scale=1920:1080:flags=bicubic,setsar=1[qn0r]",
    ]
    # A configured display size: the 1080p rung is at that size already, the 720p rung goes up to it, and
    # the reference comes down to it from the source.
    shown = {"metrics": ["vmaf"], "display": {"width": 1920, "height": 1080}}
    job = plan({"groups": [ladder], "quality": shown}, media(3840, 2160))
    top, low = job.scores
    assert (top.display, top.native, top.model) == (None, None, "vmaf_v0.6.1")
    assert (low.display, low.model) == ((1920, 1080), "vmaf_v0.6.1")
    assert "[vrefg0r1raw]scale=1920:1080:flags=bicubic,setsar=1[vrefg0r1]" in graph(job.argv).split(";")
    assert "[qu1d]scale=1920:1080:flags=bicubic,setsar=1[qx1d]" in graph(job.argv, 1).split(";")


def test_scoring_can_be_switched_off() -> None:
    job = plan({"outputs": [{"container": "mp4"}], "quality": {}}, score=False)
    assert job.scores == [] and "-dec" not in job.argv


def test_thumbnails_sprites_and_poster_are_branches_of_the_same_graph() -> None:
    body = {
        "thumbnails": [
            {"name": "at", "times": [1, 0.5, 99], "format": "webp", "width": 320},
            {"name": "every", "every_seconds": 2.5, "format": "png", "height": 90},
        ],
        "sprites": [{"name": "sp", "every_seconds": 1, "columns": 4, "rows": 3}],
        "poster": {},
    }
    job = plan(body)
    g = graph(job.argv)
    assert "[0:V:0]split=4[vsrcp0][vsrcp1][vsrcp2][vsrcp3]" in g
    assert (
        "[vsrcp0]select=expr=gte(t\\,0.499999)*(isnan(prev_t)+lt(prev_t\\,0.499999))+gte(t\\,0.999999)"
        "*(isnan(prev_t)+lt(prev_t\\,0.999999)),scale=320:180:flags=bicubic,setsar=1[voutp0]" in g
    )
    assert (
        "[vsrcp1]select=expr=isnan(prev_t)+gt(floor(t/2.5+1e-06)\\,floor(prev_t/2.5+1e-06)),scale=160:90" in g
    )
    assert "scale=160:90:flags=bicubic,setsar=1,format=yuvj420p,tile=4x3[voutp2]" in g
    assert "[vsrcp3]select=expr=gte(t\\,1),scale=1280:720:flags=bicubic,setsar=1,thumbnail=n=30[voutp3]" in g
    at = output(job.argv, "/w/out/pictures/at/at_%05d.webp")
    assert at[:2] == ["-map", "[voutp0]"] and value(at, "-c:v") == "libwebp" and value(at, "-quality") == "80"
    assert value(at, "-fps_mode") == "passthrough" and value(at, "-f") == "image2"
    poster = output(job.argv, "/w/out/pictures/poster/poster.jpg")
    assert (value(poster, "-frames:v"), value(poster, "-update"), value(poster, "-c:v")) == (
        "1",
        "1",
        "mjpeg",
    )
    thumbs = job.pictures[0]
    assert thumbs.times == [0.5, 1] and thumbs.dropped_times == [99]
    assert job.pictures[1].times == [0.0, 2.5, 5.0, 7.5]
    assert job.pictures[3].times == [1.0]  # 10 % of 10 s


def test_picture_and_sound_containers() -> None:
    body = {
        "outputs": [
            {"name": "a", "container": "m4a", "audio": {"bitrate_kbps": 96}},
            {"name": "b", "container": "mp3"},
            {"name": "c", "container": "opus"},
            {"name": "d", "container": "flac"},
            {"name": "e", "container": "gif", "video": {"width": 320, "fps": 10}},
            {"name": "f", "container": "webp", "video": {"width": 320, "image_quality": 70}},
            {"name": "g", "container": "images", "video": {"codec": "png", "fps": 1}},
        ]
    }
    argv = plan(body).argv
    assert output(argv, "/w/out/a.m4a")[-5:] == ["-vn", "-f", "ipod", "-movflags", "+faststart"]
    assert value(output(argv, "/w/out/b.mp3"), "-c:a") == "libmp3lame"
    assert value(output(argv, "/w/out/c.opus"), "-f") == "ogg"
    flac = output(argv, "/w/out/d.flac")
    assert value(flac, "-c:a") == "flac" and "-b:a" not in flac
    g = graph(argv)
    assert "[vsrc4]fps=10,scale=320:180:flags=bicubic,setsar=1,split=2[vout4a][vout4b]" in g
    assert "[vout4a]palettegen=stats_mode=single[vout4p];[vout4b][vout4p]paletteuse=new=1[vout4]" in g
    gif = output(argv, "/w/out/e.gif")
    assert value(gif, "-c:v") == "gif" and value(gif, "-loop") == "0" and value(gif, "-f") == "gif"
    webp = output(argv, "/w/out/f.webp")
    assert (value(webp, "-c:v"), value(webp, "-quality"), value(webp, "-f")) == ("libwebp_anim", "70", "webp")
    images = output(argv, "/w/out/g/g_%05d.png")
    assert value(images, "-c:v") == "png" and value(images, "-f") == "image2"
    assert sum(1 for a in argv if a == "-map") == 7


def test_plan_folders_are_created_only_when_asked(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "input": "file:///in.mp4",
            "groups": [HLS],
            "thumbnails": [{"times": [1]}],
            "outputs": [{"name": "seq", "container": "images"}],
            "quality": {},
        }
    )
    job = plan_job(spec, media(), CAPS, SOURCE, tmp_path / "w")
    assert not (tmp_path / "w").exists()
    job.prepare()
    for folder in ("w", "w/seq", "w/groups/abr", "w/pictures/thumbnail0", "w/quality"):
        assert (tmp_path / folder).is_dir(), folder


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"groups": [HLS]}, "no video stream"),
        ({"thumbnails": [{"times": [1]}]}, "need video"),
    ],
)
def test_pictures_and_groups_need_video(body: dict[str, Any], words: str) -> None:
    from framefleet.core.failures import FailureClass, JobFailure

    info = MediaInfo(
        format_name="mp3", duration=3.0, size_bytes=1, bit_rate=None, video=None, audio=media().audio
    )
    with pytest.raises(JobFailure) as caught:
        plan(body, info)
    assert caught.value.failure_class is FailureClass.spec_unsupported and words in caught.value.message


def test_a_loudness_miss_warns_or_fails_as_the_spec_says(tmp_path: Path) -> None:
    meter = tmp_path / "m.txt"
    frame = "frame:{n} pts:{n} pts_time:{n}\nlavfi.r128.I={i}\nlavfi.r128.LRA=4.0\n"
    meter.write_text(
        frame.format(n=0, i=-40.0) + frame.format(n=1, i=-22.1) + "lavfi.r128.true_peaks_ch0=0.5\n"
        "lavfi.r128.true_peaks_ch1=0.25\n"
    )
    warn = check_loudness([LoudnessCheck("out", meter, LoudnessSpec(integrated=-23))])[0].summary()
    assert warn["integrated_lufs"] == -22.1 and warn["true_peak_dbtp"] == -6.02 and warn["lra_lu"] == 4.0
    assert warn["within_tolerance"] is False and warn["warning"] == "+0.9 LU from the target"
    assert check_loudness([LoudnessCheck("out", meter, LoudnessSpec(integrated=-23, tolerance=1))])[0].within
    with pytest.raises(JobFailure, match=r"more than 0\.5 LU"):
        check_loudness([LoudnessCheck("out", meter, LoudnessSpec(integrated=-23, on_miss="fail"))])


def test_idet_decides_only_on_enough_mostly_interlaced_frames() -> None:
    assert idet_parity({"tff": 40.0, "bff": 0.0, "progressive": 2.0}) == "tff"
    assert idet_parity({"tff": 1.0, "bff": 30.0, "progressive": 0.0}) == "bff"
    assert idet_parity({"tff": 6.0, "bff": 0.0, "progressive": 0.0}) is None  # too few frames decided
    assert idet_parity({"tff": 20.0, "bff": 0.0, "progressive": 20.0}) is None  # not clearly interlaced
    assert idet_parity({}) is None


@pytest.mark.parametrize(
    ("mode", "parity", "expected"),
    [
        ("auto", None, "bwdif=mode=send_frame:parity=auto:deint=interlaced"),
        ("auto", "bff", "bwdif=mode=send_frame:parity=bff:deint=all"),
        ("field_rate", "tff", "bwdif=mode=send_field:parity=tff:deint=all"),
        ("on", "tff", "bwdif=mode=send_frame:parity=tff:deint=all"),
    ],
)
def test_fields_found_by_idet_are_deinterlaced_in_every_frame_with_their_parity(
    mode: str, parity: str | None, expected: str
) -> None:
    """Frames idet judged carry no interlaced flag: bwdif must be told to take them all, and which field
    comes first (unflagged, it would assume bottom first)."""
    info = media(interlaced=True, field_parity=parity)
    argv = plan({"outputs": [{"container": "mp4"}], "operations": {"deinterlace": mode}}, info).argv
    assert expected in graph(argv)
