"""Parsing ffmpeg's -encoders, -filters and -hwaccels listings (text captured from the bundled ffmpeg 9)."""

from __future__ import annotations

from framefleet.core.spec import AudioCodec, VideoCodec
from framefleet.media.capabilities import CPU_ENCODERS, parse_encoders, parse_filters, parse_hwaccels

ENCODERS = """Encoders:
 V..... = Video
 A..... = Audio
 S..... = Subtitle
 .F.... = Frame-level multithreading
 ..S... = Slice-level multithreading
 ...X.. = Codec is experimental
 ....B. = Supports draw_horiz_band
 .....D = Supports direct rendering method 1
 ------
 V....D a64multi             Multicolor charset for Commodore 64 (codec a64_multi)
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V..... libsvtav1            SVT-AV1(Scalable Video Technology for AV1) encoder (codec av1)
 VF...D bitpacked            Bitpacked
 V..X.D avui                 Avid Meridien Uncompressed
 A....D aac                  AAC (Advanced Audio Coding)
 A....D libopus              libopus Opus (codec opus)
 S..... srt                  SubRip subtitle (codec subrip)
"""

FILTERS = """Filters:
  T.. = Timeline support
  .S. = Slice threading
  A = Audio input/output
  V = Video input/output
  N = Dynamic number and/or type of input/output
  | = Source or sink filter
  ------
 TS aap               AA->A      Apply Affine Projection algorithm to first audio stream.
 .. abench            A->A       Benchmark part of a filtergraph.
 .. amerge            N->A       Merge two or more audio streams into a single multi-channel stream.
 .. libvmaf           VV->V      Calculate the VMAF between two video streams.
 .. scale             V->V       Scale the input video size and/or convert the image format.
 .. split             V->N       Pass on the input to N video outputs.
 .. abuffer           |->A       Buffer audio frames, and make them accessible to the filterchain.
 .. buffersink        V->|       Buffer video frames, and make them available to the end of the filter graph.
"""

HWACCELS = """Hardware acceleration methods:
cuda
vaapi
qsv

"""


def test_encoders_are_read_after_the_legend() -> None:
    assert parse_encoders(ENCODERS) == {
        "a64multi",
        "libx264",
        "libsvtav1",
        "bitpacked",
        "avui",
        "aac",
        "libopus",
        "srt",
    }


def test_filters_include_sources_and_sinks_but_not_the_legend() -> None:
    names = parse_filters(FILTERS)
    assert names == {"aap", "abench", "amerge", "libvmaf", "scale", "split", "abuffer", "buffersink"}


def test_hwaccels_are_one_per_line() -> None:
    assert parse_hwaccels(HWACCELS) == {"cuda", "vaapi", "qsv"}
    assert parse_hwaccels("Hardware acceleration methods:\n\n") == frozenset()


def test_unexpected_text_gives_empty_sets() -> None:
    assert parse_encoders("garbage") == frozenset()
    assert parse_filters("") == frozenset()


def test_every_spec_codec_has_a_cpu_encoder() -> None:
    codecs = [c for c in (*VideoCodec, *AudioCodec) if c.value not in ("copy", "none")]
    assert {c: CPU_ENCODERS[c] for c in codecs} == {
        VideoCodec.h264: "libx264",
        VideoCodec.hevc: "libx265",
        VideoCodec.av1: "libsvtav1",
        VideoCodec.vp9: "libvpx-vp9",
        AudioCodec.aac: "aac",
        AudioCodec.opus: "libopus",
        AudioCodec.mp3: "libmp3lame",
        AudioCodec.flac: "flac",
        VideoCodec.gif: "gif",
        VideoCodec.webp: "libwebp_anim",
        VideoCodec.png: "png",
        VideoCodec.jpeg: "mjpeg",
    }
