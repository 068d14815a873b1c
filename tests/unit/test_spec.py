"""Job spec validation: defaults, normalisation and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from framefleet.core.spec import AudioCodec, JobSpec, Priority, VideoCodec


def spec(**overrides: Any) -> dict[str, Any]:
    return {"input": "file:///media/in.mp4", "outputs": [{"container": "mp4"}], **overrides}


def errors(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(body)
    found = []
    for error in info.value.errors():
        loc = ".".join(str(p) for p in error["loc"])
        field = (error.get("ctx") or {}).get("field")
        found.append((".".join(p for p in (loc, field) if p), error["msg"]))
    return found


def test_defaults_are_written_in() -> None:
    job = JobSpec.model_validate(spec(outputs=[{"container": "mp4"}, {"container": "webm"}]))
    assert job.priority is Priority.normal
    assert [o.name for o in job.outputs] == ["output0", "output1"]
    assert (job.outputs[0].video.codec, job.outputs[0].audio.codec) == (VideoCodec.h264, AudioCodec.aac)
    assert (job.outputs[1].video.codec, job.outputs[1].audio.codec) == (VideoCodec.vp9, AudioCodec.opus)
    assert job.outputs[1].audio.sample_rate == 48000


def test_spec_hash_ignores_key_order_and_spelled_out_defaults() -> None:
    from framefleet.jobs.service import spec_hash

    a = JobSpec.model_validate(spec(metadata={"b": "2", "a": "1"}))
    b = JobSpec.model_validate({**spec(metadata={"a": "1", "b": "2"}), "priority": "normal"})
    c = JobSpec.model_validate(spec(priority="high"))
    assert spec_hash(a.model_dump(mode="json")) == spec_hash(b.model_dump(mode="json"))
    assert spec_hash(a.model_dump(mode="json")) != spec_hash(c.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("output", "field", "words"),
    [
        ({"container": "webm", "video": {"codec": "h264"}}, "outputs.0.video.codec", "webm cannot hold h264"),
        ({"container": "mov", "audio": {"codec": "opus"}}, "outputs.0.audio.codec", "mov cannot hold opus"),
        ({"container": "ts", "audio": {"codec": "opus"}}, "outputs.0.audio.codec", "ts cannot hold opus"),
        ({"container": "mp4", "video": {"width": 641}}, "outputs.0.video.width", "must be even"),
        ({"container": "mp4", "video": {"height": 359}}, "outputs.0.video.height", "must be even"),
        ({"container": "mp4", "video": {"crf": 20, "bitrate_kbps": 900}}, "outputs.0.video.crf", "not both"),
        ({"container": "mp4", "video": {"codec": "h264", "crf": 60}}, "outputs.0.video.crf", "at most 51"),
        (
            {"container": "mp4", "video": {"codec": "copy", "width": 640}},
            "outputs.0.video.width",
            "cannot be set",
        ),
        ({"container": "mp4", "video": {"pix_fmt": "yuv420p10le"}}, "outputs.0.video.pix_fmt", "10-bit"),
        (
            {"container": "mp4", "audio": {"sample_rate": 12345}},
            "outputs.0.audio.sample_rate",
            "must be one of",
        ),
        (
            {"container": "mp4", "video": {"codec": "none"}, "audio": {"codec": "none"}},
            "outputs.0.video.codec",
            "needs video or audio",
        ),
        ({"container": "avi"}, "outputs.0.container", "Input should be"),
        ({"container": "mp4", "bogus": 1}, "outputs.0.bogus", "Extra inputs"),
        ({"container": "mp4", "name": "../x"}, "outputs.0.name", "must be 1-64"),
        (
            {"container": "mp4", "metadata": {"location": "+48+2/"}},
            "outputs.0.metadata.location.[key]",
            "Input should",
        ),
        ({"container": "mp4", "metadata": {"language": "fr"}}, "outputs.0.metadata.language", "ISO 639-2"),
    ],
)
def test_invalid_outputs_name_the_field(output: dict[str, Any], field: str, words: str) -> None:
    found = errors(spec(outputs=[output]))
    assert any(loc == field and words in msg for loc, msg in found), found


def test_odd_size_is_fine_for_444() -> None:
    # 4:4:4 has no chroma subsampling, so an odd width is valid (4:2:0 refuses it: see the test above).
    parsed = JobSpec.model_validate(
        spec(outputs=[{"container": "mkv", "video": {"width": 641, "pix_fmt": "yuv444p"}}])
    )
    assert parsed.outputs[0].video is not None
    assert (parsed.outputs[0].video.width, parsed.outputs[0].video.pix_fmt) == (641, "yuv444p")


@pytest.mark.parametrize(
    "uri", ["", "nope", "ftp://host/x", "file://", "javascript:alert(1)", "file:///a\nb"]
)
def test_bad_input_uri(uri: str) -> None:
    assert any(loc == "input" for loc, _ in errors(spec(input=uri)))


def test_duplicate_output_names() -> None:
    found = errors(spec(outputs=[{"container": "mp4", "name": "a"}, {"container": "ts", "name": "a"}]))
    assert any(loc == "outputs.1.name" for loc, _ in found), found


def test_limits() -> None:
    assert any(loc == "outputs" for loc, _ in errors(spec(outputs=[])))
    assert any(loc == "outputs" for loc, _ in errors(spec(outputs=[{"container": "mp4"}] * 17)))
    assert any(loc == "priority" for loc, _ in errors(spec(priority="urgent")))
    assert any(loc == "hardware" for loc, _ in errors(spec(hardware="tpu")))
    assert any(loc.startswith("metadata") for loc, _ in errors(spec(metadata={"bad key": "x"})))
    assert any(
        loc.startswith("quality.metrics") for loc, _ in errors(spec(quality={"metrics": ["vmaf", "vmaf"]}))
    )


def test_first_release_specs_are_stored_exactly_as_before() -> None:
    import json
    from pathlib import Path

    recorded = json.loads((Path(__file__).parent / "data" / "spec_v1_dumps.json").read_text())
    for body, dumped in zip(recorded["inputs"], recorded["dumps"], strict=True):
        spec = JobSpec.model_validate(body)
        assert spec.model_dump(mode="json") == dumped
        assert JobSpec.model_validate(dumped) == spec


def test_a_run_time_limit_is_kept_when_given() -> None:
    limited = JobSpec.model_validate(spec(max_run_seconds=90)).model_dump(mode="json")
    assert limited["max_run_seconds"] == 90
    assert "max_run_seconds" not in JobSpec.model_validate(spec()).model_dump(mode="json")


def test_a_job_needs_something_to_make() -> None:
    assert (
        "outputs",
        "a job needs at least 1 output, group, thumbnail set, sprite set or poster",
    ) in errors({"input": "file:///media/in.mp4"})
    JobSpec.model_validate({"input": "file:///media/in.mp4", "poster": {}})


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"outputs": [{"container": "m4a", "video": {"codec": "h264"}}]},
            "outputs.0.video.codec",
            "audio only",
        ),
        (
            {"outputs": [{"container": "gif", "audio": {"codec": "aac"}}]},
            "outputs.0.audio.codec",
            "holds no sound",
        ),
        (
            {"outputs": [{"container": "images", "video": {"codec": "gif"}}]},
            "outputs.0.video.codec",
            "cannot hold",
        ),
        ({"outputs": [{"container": "webp", "video": {"crf": 20}}]}, "outputs.0.video.crf", "does not apply"),
        (
            {"outputs": [{"container": "gif", "video": {"image_quality": 50}}]},
            "outputs.0.video.image_quality",
            "lossless",
        ),
        (
            {"outputs": [{"container": "mp4", "video": {"image_quality": 50}}]},
            "outputs.0.video.image_quality",
            "jpeg and webp",
        ),
        (
            {"outputs": [{"container": "flac", "audio": {"bitrate_kbps": 500}}]},
            "outputs.0.audio.bitrate_kbps",
            "lossless",
        ),
        (
            {"outputs": [{"container": "mp4", "video": {"width": 640, "fit": "pad"}}]},
            "outputs.0.video.fit",
            "both width and height",
        ),
        (
            {"outputs": [{"container": "mp4", "video": {"maxrate_kbps": 900}}]},
            "outputs.0.video.maxrate_kbps",
            "caps crf",
        ),
        (
            {"outputs": [{"container": "mp4", "video": {"bitrate_kbps": 900, "maxrate_kbps": 500}}]},
            "outputs.0.video.maxrate_kbps",
            "at least",
        ),
        (
            {"outputs": [{"container": "mp4", "video": {"profile": "main10"}}]},
            "outputs.0.video.profile",
            "h264",
        ),
        (
            {
                "outputs": [
                    {
                        "container": "mp4",
                        "video": {"codec": "hevc", "profile": "main", "pix_fmt": "yuv420p10le"},
                    }
                ]
            },
            "outputs.0.video.profile",
            "only yuv420p",
        ),
        ({"outputs": [{"container": "webm", "video": {"level": "4.1"}}]}, "outputs.0.video.level", "not vp9"),
        (
            {"outputs": [{"container": "mp4"}], "quality": {"metrics": ["psnr"], "phone": True}},
            "quality.phone",
            "VMAF model",
        ),
        (
            {"outputs": [{"container": "mp4"}], "thumbnails": [{"format": "jpeg"}]},
            "thumbnails.0.times",
            "times or every_seconds",
        ),
        (
            {"outputs": [{"container": "mp4", "name": "x"}], "thumbnails": [{"name": "x", "times": [1]}]},
            "thumbnails.0.name",
            "already used",
        ),
        ({"poster": {"name": "p"}, "sprites": [{"name": "p"}]}, "poster.name", "already used"),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"trim": {"start": 5, "end": 2}}},
            "operations.trim.end",
            "after start",
        ),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"trim": {}}},
            "operations.trim.start",
            "start, an end or a duration",
        ),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"crop": {"width": 101, "height": 100}}},
            "operations.crop.width",
            "even",
        ),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"rotate": 45}},
            "operations.rotate",
            "Input should be",
        ),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"subtitles": {"uri": "s3://b/subs.txt"}}},
            "operations.subtitles.format",
            "srt from vtt",
        ),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"watermark": {"uri": "ftp://x/logo.png"}}},
            "operations.watermark.uri",
            "schemes",
        ),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"loudness": {"integrated": 3}}},
            "operations.loudness.integrated",
            "less than or equal",
        ),
        (
            {
                "outputs": [{"container": "mp4"}],
                "operations": {"channel_mix": {"layout": "stereo", "gains": [[1]]}},
            },
            "operations.channel_mix.gains",
            "2 channels",
        ),
        (
            {"outputs": [{"container": "mp4"}], "operations": {"strip_audio": True, "loudness": {}}},
            "operations.loudness",
            "no sound",
        ),
        ({"outputs": [{"container": "mp4"}], "fallback": "gpu"}, "fallback", "Input should be"),
        ({"outputs": [{"container": "mp4"}], "max_run_seconds": 0}, "max_run_seconds", "greater than"),
    ],
)
def test_new_fields_name_their_errors(body: dict[str, Any], field: str, words: str) -> None:
    found = errors({"input": "file:///media/in.mp4", **body})
    assert any(loc == field and words in msg for loc, msg in found), found
