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
        found.append((f"{loc}.{field}" if field else loc, error["msg"]))
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
    ],
)
def test_invalid_outputs_name_the_field(output: dict[str, Any], field: str, words: str) -> None:
    found = errors(spec(outputs=[output]))
    assert any(loc == field and words in msg for loc, msg in found), found


def test_odd_size_is_fine_for_444() -> None:
    JobSpec.model_validate(
        spec(outputs=[{"container": "mkv", "video": {"width": 641, "pix_fmt": "yuv444p"}}])
    )


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
