"""Client-side logic of the job commands and the demo: result reports, API errors, the demo's spec."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from framefleet.cli.client import ApiError, default_api_key, default_api_url, raise_for_problem
from framefleet.cli.common import EXIT_JOB_FAILED, EXIT_OK
from framefleet.cli.demo import clip_argv, demo_spec
from framefleet.cli.jobs import report_result
from framefleet.config import Settings
from framefleet.core.spec import JobSpec


def test_report_of_a_failed_job_names_the_failure_class(capsys: pytest.CaptureFixture[str]) -> None:
    job = {"id": "j1", "state": "failed", "failure_class": "input_invalid", "error": "no video stream"}
    assert report_result(job) == EXIT_JOB_FAILED == 3
    assert capsys.readouterr().out == "Job j1 failed: input_invalid - no video stream\n"


def test_report_of_a_canceled_job_is_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    job = {"id": "j2", "state": "canceled", "failure_class": "canceled", "progress": 56.6}
    assert report_result(job) == EXIT_JOB_FAILED
    assert capsys.readouterr().out == "Job j2 canceled at 56.6%: canceled\n"


def test_report_of_a_succeeded_job_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    job = {"id": "j3", "state": "succeeded", "outputs": [{"name": "a", "uri": "file:///a.mp4"}]}
    assert report_result(job) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Job j3 succeeded."
    assert lines[2].split() == ["output", "uri", "duration", "size", "bitrate", "VMAF", "PSNR-Y", "SSIM"]
    assert lines[3].split()[:2] == ["a", "file:///a.mp4"]


def test_problem_details_become_an_api_error() -> None:
    response = httpx.Response(
        422,
        json={
            "type": "validation",
            "title": "Invalid request",
            "detail": "2 problems",
            "errors": [
                {"field": "outputs.0.container", "message": "bad"},
                {"field": "input", "message": "x"},
            ],
        },
    )
    with pytest.raises(ApiError) as caught:
        raise_for_problem(response)
    assert caught.value.status == 422
    assert str(caught.value) == "422 Invalid request: 2 problems outputs.0.container: bad; input: x"


def test_non_json_error_keeps_the_body() -> None:
    with pytest.raises(ApiError, match="502 Bad Gateway: upstream down"):
        raise_for_problem(httpx.Response(502, text="upstream down"))
    raise_for_problem(httpx.Response(201, json={}))


def test_api_url_and_key_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAMEFLEET_API_URL", raising=False)
    monkeypatch.delenv("FRAMEFLEET_API_KEY", raising=False)
    settings = Settings(data_dir=tmp_path, api_port=9123)
    assert default_api_url(settings) == "http://127.0.0.1:9123"
    assert default_api_key(settings) is None
    (tmp_path / "demo-api-key").write_text("ff_from_file\n")
    assert default_api_key(settings) == "ff_from_file"
    monkeypatch.setenv("FRAMEFLEET_API_URL", "http://api.example:8080/")
    monkeypatch.setenv("FRAMEFLEET_API_KEY", "ff_from_env")
    assert default_api_url(settings) == "http://api.example:8080"
    assert default_api_key(settings) == "ff_from_env"


def test_demo_spec_is_a_valid_job_spec(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(demo_spec(tmp_path / "demo" / "clip.mp4"))
    assert [(o.container.value, o.video.codec, o.video.height, o.audio.codec) for o in spec.outputs] == [
        ("mp4", "h264", 720, "aac"),
        ("webm", "vp9", 480, "opus"),
    ]
    assert spec.quality is not None
    assert [m.value for m in spec.quality.metrics] == ["vmaf", "psnr", "ssim"]


def test_clip_command_is_an_argument_list(tmp_path: Path) -> None:
    argv = clip_argv("/bin/ffmpeg", tmp_path / "x.mp4")
    assert argv[0] == "/bin/ffmpeg" and argv[-1] == str(tmp_path / "x.mp4")
    assert "testsrc2=size=1280x720:rate=30:duration=10" in argv
    assert "sine=frequency=440:sample_rate=48000:duration=10" in argv
