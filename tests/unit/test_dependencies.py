"""Dependency rules (pure): when a parent's end satisfies a condition, and the verdict on a dependant."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from framefleet.core.spec import JobSpec
from framefleet.workflows.dependencies import holds, verdict

A = "00000000-0000-4000-8000-00000000000a"
B = "00000000-0000-4000-8000-00000000000b"


@pytest.mark.parametrize(
    ("condition", "state", "expected"),
    [
        ("succeeded", "succeeded", True),
        ("succeeded", "failed", False),
        ("succeeded", "canceled", False),
        ("failed", "failed", True),
        ("failed", "succeeded", False),
        ("finished", "canceled", True),
        ("finished", "succeeded", True),
        ("finished", "running", False),
    ],
)
def test_conditions(condition: str, state: str, expected: bool) -> None:
    assert holds(condition, state) is expected


def test_verdict_waits_releases_and_dooms() -> None:
    needs = [(A, "succeeded"), (B, "finished")]
    assert verdict(needs, {A: "succeeded", B: "running"}).action == "wait"
    assert verdict(needs, {A: "succeeded", B: "running"}).reason == f"waits for parents {B}"
    assert verdict(needs, {A: "succeeded", B: "canceled"}).action == "release"
    doomed = verdict(needs, {A: "failed", B: "running"})
    # One parent that can no longer end as needed decides at once, whatever the others still do.
    assert doomed.action == "doom" and doomed.reason.startswith(f"parent failed: {A} ended failed")
    assert verdict([(A, "succeeded")], {}).action == "doom"  # a parent that vanished


def test_spec_takes_bare_ids_and_refuses_duplicates_and_stray_input_references() -> None:
    spec = JobSpec.model_validate(
        {
            "input": {"from": A, "output": "hd"},
            "depends_on": [A, {"job": B, "condition": "failed"}],
            "outputs": [{"name": "o", "container": "mp4"}],
        }
    )
    dumped = spec.model_dump(mode="json")
    assert dumped["input"] == {"from": A, "output": "hd"}
    assert dumped["depends_on"] == [{"job": A, "condition": "succeeded"}, {"job": B, "condition": "failed"}]
    # A spec without parents dumps exactly as before (its idempotency digest is unchanged).
    assert (
        "depends_on"
        not in JobSpec.model_validate(
            {"input": "file:///x.mp4", "outputs": [{"container": "mp4"}]}
        ).model_dump()
    )
    with pytest.raises(ValidationError, match="listed twice"):
        JobSpec.model_validate(
            {"input": "file:///x.mp4", "depends_on": [A, A], "outputs": [{"container": "mp4"}]}
        )
    with pytest.raises(ValidationError, match=r"input\.from must name"):
        JobSpec.model_validate(
            {
                "input": {"from": B, "output": "hd"},
                "depends_on": [{"job": B, "condition": "failed"}],
                "outputs": [{"container": "mp4"}],
            }
        )
