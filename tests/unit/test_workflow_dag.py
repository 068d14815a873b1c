"""The workflow graph (pure): step references resolved to job ids, unknown names and cycles refused naming
the field, an input taken from a step implying the dependency, and a run's status from its jobs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from framefleet.workflows import dag

IDS = {name: str(uuid.uuid4()) for name in ("a", "b", "c", "d")}


def spec(**fields: Any) -> dict[str, Any]:
    return {"input": "file:///in.mp4", "outputs": [{"name": "hd", "container": "mp4"}], **fields}


def test_step_names_become_job_ids_in_depends_on_and_input() -> None:
    outside = str(uuid.uuid4())
    planned = dag.plan(
        [
            ("a", spec()),
            ("b", spec(input={"from": "a", "output": "hd"})),
            ("c", spec(depends_on=["b", {"job": "a", "condition": "failed"}, outside])),
        ],
        IDS,
    )
    assert [p.job_id for p in planned] == [IDS["a"], IDS["b"], IDS["c"]]
    assert "depends_on" not in planned[0].spec
    # The input's step is made a parent (condition succeeded) when it is not listed.
    assert planned[1].spec["input"] == {"from": IDS["a"], "output": "hd"}
    assert planned[1].spec["depends_on"] == [{"job": IDS["a"]}]
    assert planned[2].spec["depends_on"] == [IDS["b"], {"job": IDS["a"], "condition": "failed"}, outside]


@pytest.mark.parametrize(
    ("steps", "field", "words"),
    [
        ([("a", spec()), ("b", spec(depends_on=["x"]))], "steps.1.spec.depends_on.0", "no step named 'x'"),
        (
            [("a", spec()), ("b", spec(input={"from": "nope", "output": "hd"}))],
            "steps.1.spec.input.from",
            "no step named 'nope'",
        ),
        ([("a", spec()), ("a", spec())], "steps.1.name", "named twice"),
        ([("a", spec(depends_on=["a"]))], "steps.0.spec.depends_on", "cycle: a → a"),
        (
            [
                ("d", spec()),
                ("a", spec(depends_on=["c", "d"])),
                ("b", spec(input={"from": "a", "output": "hd"})),
                ("c", spec(depends_on=[{"job": "b"}])),
            ],
            "steps.1.spec.depends_on",
            "cycle: a → c → b → a",
        ),
    ],
)
def test_unknown_references_and_cycles_are_refused_naming_the_step(
    steps: list[tuple[str, dict[str, Any]]], field: str, words: str
) -> None:
    with pytest.raises(dag.StepError) as raised:
        dag.plan(steps, IDS)
    assert raised.value.field == field
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("states", "status"),
    [
        (["pending", "queued"], "queued"),
        (["running", "pending"], "running"),
        (["succeeded", "pending"], "running"),
        (["succeeded", "succeeded"], "succeeded"),
        (["failed", "canceled"], "failed"),
        (["succeeded", "canceled"], "canceled"),
    ],
)
def test_a_runs_status_comes_from_its_jobs(states: list[str], status: str) -> None:
    assert dag.status(states) == status
