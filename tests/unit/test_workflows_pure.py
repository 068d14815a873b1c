"""Pure parts of presets and templates: merging, structural substitution, parameter binding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framefleet.cli.jobs import read_spec
from framefleet.workflows import presets, templates


def test_merge_is_field_by_field_for_objects() -> None:
    base = {"container": "mp4", "video": {"crf": 23, "width": 1280}}
    assert presets.merge(base, {"video": {"crf": 20}, "name": "hd"}) == {
        "container": "mp4",
        "video": {"crf": 20, "width": 1280},
        "name": "hd",
    }
    assert base["video"] == {"crf": 23, "width": 1280}  # not changed in place


def test_every_builtin_preset_is_a_valid_output() -> None:
    for name in presets.BUILTIN:
        assert presets.check_output(presets.BUILTIN[name]["output"])


def test_render_places_values_structurally() -> None:
    spec = {"a": "{{n}}", "b": "x {{n}} {{s}}", "c": ["{{missing}}", "{{flag}}"], "d": {"e": "{{missing}}"}}
    hostile = '", "injected": "1'
    out = templates.render(spec, {"n": 3, "s": hostile, "flag": False})
    assert out == {"a": 3, "b": f"x 3 {hostile}", "c": [False], "d": {}}
    assert "injected" not in out


def test_bind_checks_types_and_requirements() -> None:
    params = {
        "i": templates.Parameter(type="integer", required=True),
        "u": templates.Parameter(type="uri", default="s3://b/k.mp4"),
        "b": templates.Parameter(type="boolean"),
    }
    assert templates.bind(params, {"i": 2}) == {"i": 2, "u": "s3://b/k.mp4"}
    for given, field in [
        ({}, "params.i"),
        ({"i": True}, "params.i"),
        ({"i": 1, "u": "nope"}, "params.u"),
        ({"i": 1, "x": 1}, "params.x"),
    ]:
        with pytest.raises(templates.ParamError) as caught:
            templates.bind(params, given)
        assert caught.value.field == field


def test_submit_reads_a_batch_file(tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    path.write_text(json.dumps([{"input": "s3://b/a.mp4", "outputs": []}, {"template": "t", "params": {}}]))
    items = read_spec(str(path))
    assert isinstance(items, list) and len(items) == 2


def test_parameters_from_text_take_their_declared_type() -> None:
    assert templates.from_text("integer", "28") == 28
    assert templates.from_text("integer", "-3") == -3
    assert templates.from_text("number", "2") == 2 and templates.from_text("number", "0.5") == 0.5
    assert templates.from_text("boolean", "TRUE") is True and templates.from_text("boolean", "false") is False
    assert (
        templates.from_text("string", "42") == "42" and templates.from_text("uri", "s3://b/k") == "s3://b/k"
    )
    # Text that is not of the type is passed on, so that binding refuses it naming the parameter.
    for kind, text in (("integer", "high"), ("integer", "2.5"), ("number", "nan"), ("boolean", "yes")):
        assert templates.from_text(kind, text) == text
    declared = {"crf": templates.Parameter(type="integer")}
    with pytest.raises(templates.ParamError) as caught:
        templates.bind(declared, {"crf": templates.from_text("integer", "1x")})
    assert caught.value.field == "params.crf"
