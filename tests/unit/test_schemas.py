"""The OpenAPI response shapes match what the routes really send (job_view and output_view dicts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from framefleet.api.schemas import JobView, OutputView
from framefleet.db.models import Base, Job, JobOutput
from framefleet.jobs.service import job_view, output_view

RowT = TypeVar("RowT", bound=Base)

SAMPLES: list[tuple[type[sa.types.TypeEngine[Any]], Any]] = [
    (sa.Boolean, True),
    (sa.DateTime, datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
    (sa.Float, 1.5),
    (sa.Integer, 7),
    (sa.String, "s"),
    (sa.JSON, {"k": 1}),
]


def sample_for(column: sa.Column[Any]) -> Any:
    """A non-null value of the column's type, so every column shows up in a view with its real type."""
    kind = column.type
    if isinstance(kind, sa.TypeDecorator):
        kind = kind.impl_instance
    for base, value in SAMPLES:
        if isinstance(kind, base):
            return value
    raise AssertionError(f"no sample value for column {column.key} of type {kind!r}: add one to SAMPLES")


def filled(model: type[RowT]) -> RowT:
    """An unsaved row of `model` with every column set."""
    table = model.__table__
    assert isinstance(table, sa.Table)
    return model(**{column.key: sample_for(column) for column in table.columns})


def test_job_view_has_exactly_the_fields_of_job_view_schema() -> None:
    job = filled(Job)
    outputs = [filled(JobOutput)]

    view = job_view(job, outputs)

    assert set(view) == set(JobView.model_fields)
    assert set(job_view(job)) == set(JobView.model_fields) - {"outputs"}
    JobView.model_validate(view)


def test_output_view_has_exactly_the_fields_of_output_view_schema() -> None:
    view = output_view(filled(JobOutput))

    assert set(view) == set(OutputView.model_fields)
    OutputView.model_validate(view)
