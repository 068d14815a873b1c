"""The reorder (B-frame) delay the planner predicts, against what each encoder really writes.

HLS TS groups start their sound at the video's first decode time (groups.ts_audio_lead), computed at plan
time by encoders.reorder_delay_frames from the rung's settings. Here every encoder and preset an HLS TS
rung can use encodes a few frames with exactly the options the project writes, into MPEG-TS as the hls
muxer does, and the first packet's PTS - DTS must be the predicted number of frames: a new x264/x265 or a
changed preset table cannot silently move the sound.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest

from framefleet.core.ladders import VIDEO_CODECS, GroupType, SegmentType
from framefleet.core.specbase import Preset, Profile, VideoCodec
from framefleet.media.encoders import Family, VideoEncode, reorder_delay_frames, video_encoder_args

pytestmark = pytest.mark.integration

FPS = 25
FRAMES = 12
SIZE = (128, 72)
TS_CODECS = sorted(VIDEO_CODECS[(GroupType.hls, SegmentType.ts)])


def first_reorder_frames(ffmpeg: str, enc: VideoEncode, family: Family, path: Path) -> float:
    """PTS - DTS of the first packet, in frames, of `enc` encoded with the project's own options."""
    args = video_encoder_args(enc, family)
    subprocess.run(
        [
            ffmpeg,
            *("-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=s={SIZE[0]}x{SIZE[1]}:r={FPS}:d={FRAMES / FPS}"),
            *args,
            *("-f", "mpegts", str(path)),
        ],
        check=True,
    )
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packet = next(p for p in container.demux(stream) if p.pts is not None)
        assert packet.dts is not None
        return float((packet.pts - packet.dts) * stream.time_base * FPS)


CPU_CASES = [
    *[(codec, preset, None, FPS) for codec in TS_CODECS for preset in Preset],
    (VideoCodec.h264, Preset.medium, Profile.baseline, FPS),
    (VideoCodec.h264, Preset.medium, Profile.main, FPS),
    (VideoCodec.h264, Preset.medium, Profile.high, FPS),
    # Tiny GOPs (a low frame rate with short segments): the encoders keep fewer B-frames, or none.
    *[(codec, Preset.medium, None, gop) for codec in TS_CODECS for gop in (1, 2, 3)],
]


@pytest.mark.parametrize(
    ("codec", "preset", "profile", "gop"),
    CPU_CASES,
    ids=[f"{c.value}-{p.value}-{f.value if f else 'default'}-gop{g}" for c, p, f, g in CPU_CASES],
)
def test_cpu_reorder_delay_is_predicted(
    ffmpeg: str, tmp_path: Path, codec: VideoCodec, preset: Preset, profile: Profile | None, gop: int
) -> None:
    enc = VideoEncode(codec=codec, preset=preset, profile=profile, gop=gop, width=SIZE[0], height=SIZE[1])
    measured = first_reorder_frames(ffmpeg, enc, Family.cpu, tmp_path / "out.ts")
    assert measured == reorder_delay_frames(enc, Family.cpu)


@pytest.mark.parametrize("codec", TS_CODECS)
def test_pinned_zero_b_frames_means_no_reorder_delay(ffmpeg: str, tmp_path: Path, codec: VideoCodec) -> None:
    # What hardware rungs of an HLS TS group get (the driver decides their B-frames otherwise).
    enc = VideoEncode(codec=codec, gop=FPS, b_frames=0, width=SIZE[0], height=SIZE[1])
    assert reorder_delay_frames(enc, Family.nvenc) == 0
    assert first_reorder_frames(ffmpeg, enc, Family.cpu, tmp_path / "out.ts") == 0


@pytest.mark.gpu
@pytest.mark.parametrize("codec", TS_CODECS)
def test_nvenc_with_pinned_b_frames_has_no_reorder_delay(
    ffmpeg: str, tmp_path: Path, codec: VideoCodec
) -> None:
    enc = VideoEncode(codec=codec, gop=FPS, b_frames=0, width=256, height=144)
    assert first_reorder_frames(ffmpeg, enc, Family.nvenc, tmp_path / "out.ts") == 0


def test_unpinned_hardware_delay_is_not_guessed() -> None:
    with pytest.raises(ValueError, match="h264_nvenc"):
        reorder_delay_frames(VideoEncode(codec=VideoCodec.h264, gop=FPS), Family.nvenc)
