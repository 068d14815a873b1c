"""The MPD rules the worker checks before publishing (pure): the validator and the fixes."""

from __future__ import annotations

from framefleet.media.mpd import fix_mpd, format_duration, iso_duration, mpd_problems

HEAD = '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="{profiles}" type="static" '


def mpd(
    *,
    profiles: str = "urn:mpeg:dash:profile:isoff-live:2011",
    total: str = "PT4.0S",
    longest: str = "PT2.0S",
    switching: str = ' bitstreamSwitching="true"',
    audio: str = '<S t="0" d="96256" /><S d="95744" />',
    init: str = "init-$RepresentationID$.m4s",
) -> str:
    """A two-set MPD shaped like ffmpeg's: 25 fps video in 2 s segments, AAC ending on whole frames."""
    template = f'<SegmentTemplate timescale="{{scale}}" initialization="{init}" media="c-$Number$.m4s">'
    return (
        HEAD.format(profiles=profiles)
        + f'mediaPresentationDuration="{total}" maxSegmentDuration="{longest}" minBufferTime="PT2.0S">'
        + "<Period>"
        + f'<AdaptationSet id="0" contentType="video" frameRate="25/1"{switching}>'
        + '<Representation id="0" bandwidth="1">'
        + template.format(scale=12800)
        + '<SegmentTimeline><S t="0" d="25600" r="1" /></SegmentTimeline></SegmentTemplate></Representation>'
        + '<Representation id="1" bandwidth="1">'
        + template.format(scale=12800)
        + '<SegmentTimeline><S t="0" d="25600" r="1" /></SegmentTimeline></SegmentTemplate></Representation>'
        + "</AdaptationSet>"
        + f'<AdaptationSet id="1" contentType="audio"{switching}>'
        + '<Representation id="2" bandwidth="1" audioSamplingRate="48000">'
        + template.format(scale=48000)
        + f"<SegmentTimeline>{audio}</SegmentTimeline></SegmentTemplate></Representation>"
        + "</AdaptationSet></Period></MPD>"
    )


def test_durations_read_and_written() -> None:
    assert iso_duration("PT4.0S") == 4.0 and iso_duration("PT1H2M3.5S") == 3723.5
    assert iso_duration("P1DT1S") == 86401 and iso_duration("soon") is None and iso_duration(None) is None
    assert format_duration(2.0053333) == "PT2.006S" and format_duration(2.0) == "PT2.000S"


def test_what_ffmpeg_writes_breaks_two_rules_and_the_fix_makes_both_true() -> None:
    written = mpd()
    problems = mpd_problems(written)
    assert len(problems) == 3, problems  # an audio segment of 2.0053 s, and two false switching claims
    assert "representation 2: a segment lasts 2.0053 s, above maxSegmentDuration 2.0000 s" in problems
    assert sum("bitstreamSwitching" in p for p in problems) == 2
    fixed = fix_mpd(written)
    assert mpd_problems(fixed) == []
    assert 'maxSegmentDuration="PT2.006S"' in fixed and "bitstreamSwitching" not in fixed


def test_switching_is_kept_where_one_init_segment_serves_the_set() -> None:
    shared = mpd(init="init.m4s")
    assert mpd_problems(fix_mpd(shared)) == [] and fix_mpd(shared).count('bitstreamSwitching="true"') == 2


def test_profiles_and_timeline_sums_are_checked() -> None:
    assert mpd_problems(mpd(profiles="", longest="PT3S", switching="")) == ["no profiles are declared"]
    assert "is a DASH profile" in mpd_problems(mpd(profiles="urn:example", longest="PT3S"))[0]
    short = mpd(longest="PT3S", total="PT4.1S", switching="")
    assert [p for p in mpd_problems(short) if "presentation" in p] == [
        "representation 0: its segments last 4.0000 s, the presentation 4.1000 s",
        "representation 1: its segments last 4.0000 s, the presentation 4.1000 s",
        "representation 2: its segments last 4.0000 s, the presentation 4.1000 s",
    ]
    # Within one frame (40 ms of video, 1024 samples of audio) is a match.
    assert mpd_problems(mpd(longest="PT3S", total="PT4.02S", switching="")) == []
    assert mpd_problems("<MPD") and "not well-formed" in mpd_problems("<MPD")[0]
