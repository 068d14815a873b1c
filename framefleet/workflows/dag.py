"""A workflow's steps as a graph (pure): references by step name checked, cycles refused, names turned
into the job ids the steps will have, and a run's status derived from its jobs' states.

Steps refer to each other where a lone job refers to its parents: in `depends_on` (a step name, or
`{"job": "<step>", "condition": ...}`) and in `"input": {"from": "<step>", "output": "<name>"}`. An input
taken from a step implies that the step must succeed first, so it is added to `depends_on` when missing.
A reference that is no step name may still be the id of an existing job of the tenant (checked later, as
for any job); anything else is refused here, naming the field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any

from framefleet.core.spec import JOB_ID_PATTERN
from framefleet.core.states import TERMINAL, JobState

STEP_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_STEPS = 100
_JOB_ID = re.compile(JOB_ID_PATTERN)


class StepError(ValueError):
    """What is wrong with the graph, and the field at fault (`steps.2.spec.depends_on.0`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Planned:
    """A step ready to be resolved as a job spec: its name, its job id, and its spec with step names
    replaced by job ids."""

    name: str
    job_id: str
    spec: dict[str, Any]


def _reference(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping) and isinstance(entry.get("job"), str):
        return str(entry["job"])
    return None  # malformed: the spec's own validation names it


def _input_from(spec: Mapping[str, Any]) -> str | None:
    ref = spec.get("input")
    if isinstance(ref, Mapping) and isinstance(ref.get("from"), str):
        return str(ref["from"])
    return None


def plan(steps: Sequence[tuple[str, Mapping[str, Any]]], ids: Mapping[str, str]) -> list[Planned]:
    """Check the graph of (name, spec) steps and rewrite step references to the ids in `ids` (one per step
    name). StepError for a repeated name, a reference to no step and no job id, or a cycle."""
    index_of: dict[str, int] = {}
    for index, (name, _) in enumerate(steps):
        if name in index_of:
            raise StepError(f"steps.{index}.name", f"step {name!r} is named twice")
        index_of[name] = index
    graph: dict[str, list[str]] = {}
    specs: list[dict[str, Any]] = []
    for index, (name, raw) in enumerate(steps):
        spec = copy.deepcopy(dict(raw))
        parents = spec.get("depends_on")
        if parents is None:
            parents = []
        if not isinstance(parents, list):
            specs.append(spec)  # not a list: the spec's validation names it
            graph[name] = []
            continue
        named: list[str] = []
        for position, entry in enumerate(parents):
            ref = _reference(entry)
            if ref is None:
                continue
            _check_reference(ref, index_of, f"steps.{index}.spec.depends_on.{position}")
            named.append(ref)
        source = _input_from(spec)
        if source is not None:
            _check_reference(source, index_of, f"steps.{index}.spec.input.from")
            if source in index_of and source not in named:
                parents.append({"job": source})
                named.append(source)
        spec["depends_on"] = parents
        graph[name] = [ref for ref in named if ref in index_of]
        specs.append(spec)
    _refuse_cycles(graph, index_of)
    return [
        Planned(name=name, job_id=ids[name], spec=_rewritten(spec, ids))
        for (name, _), spec in zip(steps, specs, strict=True)
    ]


def _check_reference(ref: str, index_of: Mapping[str, int], field: str) -> None:
    if ref not in index_of and not _JOB_ID.match(ref):
        raise StepError(field, f"no step named {ref!r} in this workflow (nor is it a job id)")


def _refuse_cycles(graph: Mapping[str, list[str]], index_of: Mapping[str, int]) -> None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        # args[1] is the cycle, its first node repeated at the end; graphlib lists each node before the
        # one that depends on it. Reversed, the ring reads "a needs b needs ... needs a"; it starts at the
        # step submitted first, so the same graph is always refused with the same message.
        ring = list(reversed(list(exc.args[1])[:-1]))
        start = min(range(len(ring)), key=lambda i: index_of[ring[i]])
        ring = ring[start:] + ring[:start]
        first = ring[0]
        raise StepError(
            f"steps.{index_of[first]}.spec.depends_on",
            "steps depend on each other in a cycle: " + " → ".join([*ring, first]),
        ) from None


def _rewritten(spec: dict[str, Any], ids: Mapping[str, str]) -> dict[str, Any]:
    parents = spec.get("depends_on")
    if isinstance(parents, list):
        spec["depends_on"] = [
            ids.get(entry, entry)
            if isinstance(entry, str)
            else {**entry, "job": ids.get(entry["job"], entry["job"])}
            if isinstance(entry, Mapping) and isinstance(entry.get("job"), str)
            else entry
            for entry in parents
        ]
        if not spec["depends_on"]:
            del spec["depends_on"]
    source = _input_from(spec)
    if source is not None:
        spec["input"] = {**spec["input"], "from": ids.get(source, source)}
    return spec


def status(states: Iterable[str]) -> str:
    """A run's status from its jobs' states: `succeeded` when all succeeded; once all ended, `failed` if
    one failed, else `canceled`; before that `running` once any job started or ended, else `queued`."""
    found = [JobState(state) for state in states]
    if all(state in TERMINAL for state in found):
        if all(state is JobState.succeeded for state in found):
            return "succeeded"
        return "failed" if JobState.failed in found else "canceled"
    if any(state not in (JobState.queued, JobState.pending) for state in found):
        return "running"
    return "queued"
