"""Packaging (pure parts): rates, manifest text, MPD templates, publish order, RFC 6381 codec strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from framefleet.media.codecs import annexb_nals, av1_string, avc_string, hevc_string
from framefleet.media.packaging import (
    PackagedGroup,
    Rendition,
    Segment,
    _patch_bandwidth,
    _template_name,
    average_bitrate,
    dash_bandwidth,
    master_playlist,
    media_playlist,
    parse_media_playlist,
    peak_bitrate,
    target_duration,
)


def seg(size: int, duration: float = 2.0, name: str = "s.ts") -> Segment:
    return Segment(name, duration, size)


def test_peak_is_the_richest_run_of_half_to_one_and_a_half_target_durations() -> None:
    # Target 2 s: single 2 s segments qualify, pairs (4 s) do not.
    segments = [seg(250_000), seg(500_000), seg(250_000)]
    assert peak_bitrate(segments, 2.0) == 2_000_000
    # 1 s segments with a 2 s target: runs of one, two or three segments (0.5-1.5 x 2 s = 1-3 s).
    ones = [seg(100_000, 1.0), seg(400_000, 1.0), seg(100_000, 1.0)]
    assert peak_bitrate(ones, 2.0) == 3_200_000  # the 400 kB second alone
    # A stub last segment is not a run of its own, only together with the segment before it.
    stub = [seg(250_000), seg(10_000, 0.02)]
    assert peak_bitrate(stub, 2.0) == 1_029_703  # 260 kB over 2.02 s


def test_average_and_dash_bandwidth() -> None:
    segments = [seg(500_000), seg(250_000), seg(250_000)]
    assert average_bitrate(segments) == pytest.approx(1_333_334, abs=1)
    # Channel B, 4 s buffered: segment i must be in by its start time; the first needs 4 Mbit in 4 s.
    assert dash_bandwidth(segments, 4.0) == 1_000_000
    assert dash_bandwidth(segments, 0.5) == 8_000_000


def test_target_duration_rounds_to_the_nearest_second() -> None:
    renditions = [
        Rendition("a", "video", [seg(1, 2.002), seg(1, 1.5)]),
        Rendition("b", "audio", [seg(1, 2.49)]),
    ]
    assert target_duration(renditions) == 2
    assert target_duration([Rendition("c", "video", [seg(1, 2.5)])]) == 3


def video(name: str, peak: int, average: int, codecs: str = "avc1.64001f") -> Rendition:
    return Rendition(
        name,
        "video",
        [seg(1)],
        playlist=f"{name}.m3u8",
        codecs=codecs,
        width=1280,
        height=720,
        fps=30000 / 1001,
        peak_bps=peak,
        average_bps=average,
    )


def test_master_playlist_adds_the_richest_audio_to_every_variant() -> None:
    audio = [
        Rendition(
            "en",
            "audio",
            [seg(1)],
            playlist="en.m3u8",
            codecs="mp4a.40.2",
            channels=2,
            language="en",
            default=True,
            peak_bps=130_000,
            average_bps=128_000,
        ),
        Rendition(
            "dd",
            "audio",
            [seg(1)],
            playlist="dd.m3u8",
            codecs="mp4a.40.2",
            channels=6,
            peak_bps=400_000,
            average_bps=384_000,
        ),
    ]
    text = master_playlist([video("720p", 3_000_000, 2_500_000), *audio], 6)
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="en",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,'
        'CHANNELS="2",URI="en.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="dd",DEFAULT=NO,AUTOSELECT=YES,CHANNELS="6",URI="dd.m3u8"',
        "#EXT-X-STREAM-INF:BANDWIDTH=3400000,AVERAGE-BANDWIDTH=2884000,RESOLUTION=1280x720,FRAME-RATE=29.970,"
        'CODECS="avc1.64001f,mp4a.40.2",VIDEO-RANGE=SDR,AUDIO="audio",CLOSED-CAPTIONS=NONE',
        "720p.m3u8",
    ]


def test_master_playlist_without_audio() -> None:
    text = master_playlist([video("a", 10, 5, "hvc1.1.6.L93.B0")], 7)
    assert 'CODECS="hvc1.1.6.L93.B0"' in text and "AUDIO=" not in text and "EXT-X-MEDIA" not in text
    assert text.splitlines()[-2].endswith(",CLOSED-CAPTIONS=NONE")


def test_cmaf_media_playlist_is_vod_with_its_init_segment() -> None:
    rendition = Rendition(
        "v", "video", [seg(1, 2.0, "chunk-0-00001.m4s"), seg(1, 1.5, "chunk-0-00002.m4s")], init="init-0.m4s"
    )
    assert media_playlist(rendition, 2, independent=True).splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        '#EXT-X-MAP:URI="init-0.m4s"',
        "#EXTINF:2.000000,",
        "chunk-0-00001.m4s",
        "#EXTINF:1.500000,",
        "chunk-0-00002.m4s",
        "#EXT-X-ENDLIST",
    ]


def test_media_playlists_parse_back(tmp_path: Path) -> None:
    path = tmp_path / "p.m3u8"
    path.write_text(
        '#EXTM3U\n#EXT-X-MAP:URI="i.mp4"\n#EXTINF:2.0,\na.m4s\n#EXTINF:1.25,\nb.m4s\n#EXT-X-ENDLIST\n'
    )
    assert parse_media_playlist(path) == ("i.mp4", [("a.m4s", 2.0), ("b.m4s", 1.25)])


def test_mpd_templates_durations_and_bandwidth_patch() -> None:
    assert _template_name("chunk-$RepresentationID$-$Number%05d$.m4s", "3", 12) == "chunk-3-00012.m4s"
    assert _template_name("seg-$Number$.m4s", "0", 7) == "seg-7.m4s"
    text = (
        '<Representation id="1" codecs="x" bandwidth="300000" w="1">\n<Representation id="10" bandwidth="5">'
    )
    assert _patch_bandwidth(text, "1", 123) == text.replace("300000", "123")


def test_manifests_come_last_in_the_publish_order(tmp_path: Path) -> None:
    renditions = [
        Rendition("v", "video", [seg(1, 2, "v_1.ts"), seg(1, 2, "v_2.ts")], playlist="v.m3u8"),
        Rendition("a", "audio", [seg(1, 2, "a_1.ts")], init="a_init.mp4", playlist="a.m3u8"),
    ]
    group = PackagedGroup(
        plan=None,
        folder=tmp_path,
        renditions=renditions,  # type: ignore[arg-type]
        manifests={"hls": "master.m3u8", "dash": "manifest.mpd"},
    )
    assert group.publish_order() == [
        "v_1.ts",
        "v_2.ts",
        "a_init.mp4",
        "a_1.ts",
        "v.m3u8",
        "a.m3u8",
        "master.m3u8",
        "manifest.mpd",
    ]


# --- codec strings -----------------------------------------------------------------------------------------


def test_avc_from_sps_bytes() -> None:
    assert avc_string(0x64, 0x00, 0x1F) == "avc1.64001f"
    assert avc_string(0x42, 0xC0, 0x1E) == "avc1.42c01e"
    stream = b"\x00\x00\x00\x01\x67\x4d\x40\x1e\xaa\x00\x00\x01\x68\xee"
    assert [n[0] & 0x1F for n in annexb_nals(stream)] == [7, 8]


def test_hevc_main_profile_string() -> None:
    # general_profile_space 0, tier Main, profile 1; compatibility flags 0x60000000; progressive/frame-only
    # constraint byte 0xB0; level 93 (3.1).
    ptl = bytes([0x01, 0x60, 0x00, 0x00, 0x00, 0xB0, 0, 0, 0, 0, 0, 93])
    assert hevc_string(ptl) == "hvc1.1.6.L93.B0"
    main10 = bytes([0x02, 0x20, 0x00, 0x00, 0x00, 0x90, 0, 0, 0, 0, 0, 120])
    assert hevc_string(main10) == "hvc1.2.4.L120.90"
    high_tier = bytes([0x21, 0x60, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 150])
    assert hevc_string(high_tier) == "hvc1.1.6.H150"


def test_av1_string_from_its_configuration_record() -> None:
    # marker/version, seq_profile 0 + level 8 (4.0), tier 0 + 8-bit 4:2:0.
    assert av1_string(bytes([0x81, 0x08, 0x0C, 0x00])) == "av01.0.08M.08"
    assert av1_string(bytes([0x81, 0x0D, 0xCC, 0x00])) == "av01.0.13H.10"
