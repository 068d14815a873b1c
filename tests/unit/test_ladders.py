"""Output groups: the spec (presets, validation with field names) and ladders resolved against a source."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from framefleet.core.ladders import GroupSpec, SegmentType
from framefleet.core.spec import JobSpec, VideoCodec
from framefleet.media.ladder import resolve_ladder, rung_size
from framefleet.media.probe import VideoInfo


def video(width: int = 1920, height: int = 1080, fps: float = 25.0, **kw: Any) -> VideoInfo:
    return VideoInfo(
        codec="h264",
        width=width,
        height=height,
        fps=fps,
        pix_fmt="yuv420p",
        rotation=0,
        frames=None,
        bit_rate=None,
        **kw,
    )


def groupspec(**kw: Any) -> GroupSpec:
    return GroupSpec.model_validate({"type": "hls", "ladder": "standard", **kw})


def errors(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate({"input": "file:///in.mp4", "groups": [body]})
    found = []
    for error in info.value.errors():
        loc = ".".join(str(p) for p in error["loc"])
        field = (error.get("ctx") or {}).get("field")
        found.append((".".join(p for p in (loc, field) if p), error["msg"]))
    return found


def test_a_named_ladder_expands_into_explicit_rungs() -> None:
    group = groupspec()
    assert [(r.name, r.height, r.bitrate_kbps, r.maxrate_kbps, r.bufsize_kbps) for r in group.ladder] == [
        ("1080p", 1080, 5000, 7500, 10000),
        ("720p", 720, 2800, 4200, 5600),
        ("480p", 480, 1200, 1800, 2400),
        ("360p", 360, 700, 1050, 1400),
    ]
    assert all(r.codec is VideoCodec.h264 for r in group.ladder)
    assert [r.profile.value for r in group.ladder if r.profile] == ["high", "high", "main", "main"]
    assert group.segment_type is SegmentType.ts and group.segment_seconds == 4.0


def test_rung_names_mix_with_explicit_rungs_and_newer_codecs_get_fewer_bits() -> None:
    group = GroupSpec.model_validate(
        {"type": "dash", "video_codec": "av1", "ladder": ["720p", {"height": 300, "crf": 40}]}
    )
    assert [(r.name, r.bitrate_kbps, r.profile) for r in group.ladder] == [
        ("720p", 1540, None),
        ("300p", None, None),
    ]
    assert group.segment_type is SegmentType.fmp4
    assert all(r.codec is VideoCodec.av1 for r in group.ladder)


def test_the_normalised_spec_validates_again_to_the_same_thing() -> None:
    spec = JobSpec.model_validate(
        {"input": "file:///in.mp4", "groups": [{"type": "cmaf", "ladder": "mobile"}]}
    )
    again = JobSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec and again.groups[0].name == "group0"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"type": "hls", "ladder": "huge"}, "groups.0.ladder", "unknown ladder"),
        ({"type": "hls", "ladder": ["999p"]}, "groups.0", "unknown rung"),
        ({"type": "hls", "ladder": []}, "groups.0.ladder", "at least 1"),
        (
            {"type": "hls", "ladder": ["720p"], "video_codec": "vp9"},
            "groups.0.video_codec",
            "cannot carry vp9",
        ),
        (
            {"type": "hls", "ladder": [{"height": 240, "codec": "av1"}]},
            "groups.0.ladder.0.codec",
            "cannot carry av1",
        ),
        ({"type": "dash", "ladder": ["720p"], "segment_type": "ts"}, "groups.0.segment_type", "fmp4"),
        (
            {"type": "hls", "ladder": ["720p"], "video_codec": "hevc"},
            "groups.0.video_codec",
            "cannot carry hevc video; use one of h264; or set segment_type fmp4",
        ),
        ({"type": "hls", "ladder": ["720p", "720p"]}, "groups.0.ladder.1.name", "used twice"),
        ({"type": "hls", "ladder": [{"height": 241}]}, "groups.0.ladder.0.height", "even"),
        ({"type": "hls", "ladder": [{"name": "x"}]}, "groups.0.ladder.0.height", "height or a width"),
        (
            {"type": "hls", "ladder": [{"height": 240, "crf": 20, "bitrate_kbps": 500}]},
            "groups.0.ladder.0.crf",
            "not both",
        ),
        (
            {"type": "hls", "ladder": [{"height": 240, "profile": "main10"}]},
            "groups.0.ladder.0.profile",
            "h264",
        ),
        ({"type": "hls", "ladder": [{"height": 240, "level": "9.9"}]}, "groups.0.ladder.0.level", "levels"),
        ({"type": "hls", "ladder": ["720p"], "audio": [{"codec": "opus"}]}, "groups.0.audio.0.codec", "aac"),
        (
            {"type": "dash", "ladder": ["720p"], "audio": [{"language": "english!"}]},
            "groups.0.audio.0.language",
            "tag",
        ),
        ({"type": "dash", "ladder": ["720p"], "audio": [{"name": "720p"}]}, "groups.0.audio.0.name", "twice"),
        (
            {
                "type": "dash",
                "ladder": ["720p"],
                "audio": [{"default": True}, {"name": "b", "default": True}],
            },
            "groups.0.audio",
            "at most one",
        ),
        ({"type": "hls", "ladder": ["720p"], "segment_seconds": 0.2}, "groups.0.segment_seconds", "greater"),
        ({"type": "hls", "ladder": ["720p"], "name": "a/b"}, "groups.0.name", "must be 1-64"),
    ],
)
def test_group_errors_name_their_field(body: dict[str, Any], field: str, words: str) -> None:
    found = errors(body)
    assert any(loc == field and words in msg for loc, msg in found), found


def test_group_names_cannot_clash_with_outputs() -> None:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(
            {
                "input": "file:///in.mp4",
                "outputs": [{"name": "abr", "container": "mp4"}],
                "groups": [{"name": "abr", "type": "hls", "ladder": ["360p"]}],
            }
        )
    assert "already used in outputs" in str(info.value)


def test_the_first_audio_rendition_is_the_default() -> None:
    group = GroupSpec.model_validate(
        {
            "type": "cmaf",
            "ladder": ["360p"],
            "audio": [{"language": "en"}, {"name": "fr", "language": "fr", "codec": "opus", "channels": 6}],
        }
    )
    assert [(a.name, a.default, a.bitrate_kbps, a.sample_rate) for a in group.audio or []] == [
        ("aac_128k", True, 128, None),
        ("fr", False, 288, 48000),
    ]


# --- against a source ---------------------------------------------------------------------------------------


def test_rungs_above_the_source_are_dropped() -> None:
    ladder = resolve_ladder(groupspec(), video(1280, 720))
    assert [(r.spec.name, r.width, r.height) for r in ladder.rungs] == [
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]
    assert ladder.dropped == [{"name": "1080p", "reason": "1920x1080 is above the 1280x720 source"}]


def test_portrait_sources_take_the_rung_as_their_width() -> None:
    ladder = resolve_ladder(groupspec(), video(1080, 1920))
    assert [(r.width, r.height) for r in ladder.rungs] == [(1080, 1920), (720, 1280), (480, 854), (360, 640)]
    assert ladder.dropped == []


def test_all_rungs_above_the_source_keep_the_smallest_at_source_size() -> None:
    ladder = resolve_ladder(groupspec(), video(320, 240))
    assert [(r.spec.name, r.width, r.height) for r in ladder.rungs] == [("360p", 320, 240)]
    assert [d["name"] for d in ladder.dropped] == ["1080p", "720p", "480p"]
    assert "kept at the source's 320x240" in ladder.notes[0]


@pytest.mark.parametrize(
    ("fps", "seconds", "gop", "real"),
    [
        (25.0, 4, 50, 4.0),
        (30000 / 1001, 2, 60, 2.002),
        (30000 / 1001, 4, 60, 4.004),
        (24.0, 6, 48, 6.0),
        (50.0, 1, 50, 1.0),
        (25.0, 5, 25, 5.0),  # 2.5 s does not fit: 5 keyframes per segment
    ],
)
def test_keyframes_every_two_seconds_at_most_and_on_every_segment_start(
    fps: float, seconds: float, gop: int, real: float
) -> None:
    ladder = resolve_ladder(groupspec(segment_seconds=seconds), video(fps=fps))
    assert ladder.gop == gop and ladder.segment_seconds == pytest.approx(real, abs=1e-3)
    assert not ladder.needs_fps_filter


def test_variable_frame_rate_is_made_constant_at_a_standard_rate() -> None:
    ladder = resolve_ladder(groupspec(), video(fps=29.6, vfr=True))
    assert ladder.fps == pytest.approx(30000 / 1001) and ladder.needs_fps_filter and ladder.gop == 60


def test_group_fps_above_the_source_is_not_upsampled() -> None:
    ladder = resolve_ladder(groupspec(fps=60), video(fps=25.0))
    assert ladder.fps == 25.0 and "kept at the source's rate" in ladder.notes[0]
    assert resolve_ladder(groupspec(fps=12.5), video(fps=25.0)).needs_fps_filter


def test_rung_size_keeps_the_aspect_and_even_sides() -> None:
    rung = groupspec().ladder[3]  # 360p
    assert rung_size(rung, 1440, 1080) == (480, 360)
    assert rung_size(rung, 1000, 562) == (640, 360)
    assert rung_size(rung.model_copy(update={"width": 500, "height": None}), 1920, 1080) == (500, 282)
