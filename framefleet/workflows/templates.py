"""Job templates: a saved job spec with typed parameters, versioned.

A parameter is written `{{name}}` inside a string of the spec. Substitution is structural: a string that is
exactly one placeholder becomes the parameter's typed value (a number stays a number), a placeholder inside
longer text is replaced within that string only; the JSON text is never built by concatenation, so a
value cannot add fields. An optional parameter without a value leaves a whole-value field out (the spec's
default applies). The result is then validated as a normal job spec.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from contextlib import suppress
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy.orm import Session

from framefleet.core.specbase import check_uri
from framefleet.db.models import JobTemplate

MAX_VERSIONS = 1000
MAX_TEMPLATES_PER_TENANT = 500
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
ParamType = Literal["string", "number", "integer", "boolean", "uri"]
# What a required parameter stands for while a new template is checked.
_SAMPLES: dict[str, Any] = {
    "string": "sample",
    "number": 1.0,
    "integer": 1,
    "boolean": True,
    "uri": "https://example.com/sample.mp4",
}
_MISSING = object()


class ParamError(ValueError):
    """A value a parameter cannot take, or a template that does not hold together; `field` is the
    dotted field at fault (`params.<name>`, `parameters.<name>`, `spec`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(Exception):
    pass


class Exists(Exception):
    pass


def coerce(kind: str, value: Any) -> Any:
    """`value` as a parameter of type `kind` (ValueError saying what was expected)."""
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if isinstance(value, bool):
        raise ValueError(f"must be a {kind}, not a boolean")
    if kind == "integer":
        if not isinstance(value, int):
            raise ValueError("must be an integer")
        return value
    if kind == "number":
        if not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a {kind} (a JSON string)")
    if kind == "uri":
        try:
            check_uri(value)
        except PydanticCustomError as exc:
            raise ValueError(exc.message()) from None
    return value


def from_text(kind: str, text: str) -> Any:
    """A parameter written as text (a command line's `name=value`) as the JSON value its type takes. Text
    that is not one is passed on unchanged, for `bind` to refuse with the parameter's name."""
    if kind == "integer" and text.strip().lstrip("+-").isdigit():
        return int(text)
    if kind == "number":
        with suppress(ValueError):
            return int(text)
        with suppress(ValueError):
            number = float(text)
            return number if math.isfinite(number) else text
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


class Parameter(BaseModel):
    model_config = {"extra": "forbid"}
    type: ParamType = "string"
    required: bool = False
    default: Any = None
    description: Annotated[str, Field(max_length=255)] | None = None

    @model_validator(mode="after")
    def _default(self) -> Parameter:
        if self.default is not None:
            if self.required:
                raise ValueError("a required parameter takes no default")
            self.default = coerce(self.type, self.default)
        return self


def placeholders(value: Any) -> set[str]:
    """Every parameter name a raw spec refers to."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def bind(parameters: Mapping[str, Parameter], given: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each parameter: given, else its default; ParamError naming `params.<name>`."""
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise ParamError(
            f"params.{unknown[0]}", f"not a parameter of this template ({', '.join(parameters)})"
        )
    values: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name in given and given[name] is not None:
            try:
                values[name] = coerce(parameter.type, given[name])
            except ValueError as exc:
                raise ParamError(f"params.{name}", str(exc)) from None
        elif parameter.required:
            raise ParamError(f"params.{name}", f"required ({parameter.type})")
        elif parameter.default is not None:
            values[name] = parameter.default
    return values


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(value: Any, values: Mapping[str, Any]) -> Any:
    """The spec with its placeholders replaced (structurally, see the module's docstring); `_MISSING`
    for a whole-value placeholder without a value, which its container leaves out."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return values.get(whole.group(1), _MISSING)
        return PLACEHOLDER.sub(lambda match: _text(values.get(match.group(1), "")), value)
    if isinstance(value, Mapping):
        rendered = {key: render(item, values) for key, item in value.items()}
        return {key: item for key, item in rendered.items() if item is not _MISSING}
    if isinstance(value, list):
        return [item for item in (render(item, values) for item in value) if item is not _MISSING]
    return value


def sample_values(parameters: Mapping[str, Parameter]) -> dict[str, Any]:
    """Values that every parameter may take: what a new template is checked with."""
    return {name: p.default if p.default is not None else _SAMPLES[p.type] for name, p in parameters.items()}


def check(parameters: Mapping[str, Parameter], spec: Mapping[str, Any]) -> None:
    """Every placeholder is a declared parameter (ParamError naming `spec`)."""
    undeclared = sorted(placeholders(spec) - set(parameters))
    if undeclared:
        raise ParamError("spec", f"{{{{{undeclared[0]}}}}} is not a declared parameter")


def parameters_of(row: JobTemplate) -> dict[str, Parameter]:
    return {name: Parameter.model_validate(p) for name, p in row.parameters.items()}


def view(row: JobTemplate) -> dict[str, Any]:
    return {
        "name": row.name,
        "version": row.version,
        "description": row.description,
        "parameters": row.parameters,
        "spec": row.spec,
        "created_at": row.created_at,
    }


def find(session: Session, *, tenant_id: int, name: str, version: int | None = None) -> JobTemplate:
    """A version of a template (the latest when `version` is None); NotFound otherwise."""
    query = sa.select(JobTemplate).where(JobTemplate.tenant_id == tenant_id, JobTemplate.name == name)
    if version is None:
        query = query.order_by(JobTemplate.version.desc()).limit(1)
    else:
        query = query.where(JobTemplate.version == version)
    row = session.scalar(query)
    if row is None:
        suffix = "" if version is None else f" version {version}"
        raise NotFound(f"no template {name!r}{suffix}")
    return row


def list_templates(session: Session, *, tenant_id: int) -> list[JobTemplate]:
    """The latest version of each of the tenant's templates, by name."""
    latest = (
        sa.select(JobTemplate.name, sa.func.max(JobTemplate.version).label("version"))
        .where(JobTemplate.tenant_id == tenant_id)
        .group_by(JobTemplate.name)
        .subquery()
    )
    return list(
        session.scalars(
            sa.select(JobTemplate)
            .join(latest, sa.and_(JobTemplate.name == latest.c.name, JobTemplate.version == latest.c.version))
            .where(JobTemplate.tenant_id == tenant_id)
            .order_by(JobTemplate.name)
        )
    )


def versions(session: Session, *, tenant_id: int, name: str) -> list[JobTemplate]:
    rows = list(
        session.scalars(
            sa.select(JobTemplate)
            .where(JobTemplate.tenant_id == tenant_id, JobTemplate.name == name)
            .order_by(JobTemplate.version)
        )
    )
    if not rows:
        raise NotFound(f"no template {name!r}")
    return rows


def save(
    session: Session,
    *,
    tenant_id: int,
    name: str,
    description: str | None,
    parameters: Mapping[str, Parameter],
    spec: Mapping[str, Any],
    new: bool,
) -> JobTemplate:
    """Version 1 of a new template (`new`: Exists if the name is taken) or the next version of one
    (NotFound if there is none). The caller has checked the spec (check() and a trial render)."""
    latest = session.scalar(
        sa.select(sa.func.max(JobTemplate.version)).where(
            JobTemplate.tenant_id == tenant_id, JobTemplate.name == name
        )
    )
    if new and latest is not None:
        raise Exists(f"template {name!r} exists; PUT adds a version")
    if not new and latest is None:
        raise NotFound(f"no template {name!r}")
    if new:
        count = session.scalar(
            sa.select(sa.func.count(sa.distinct(JobTemplate.name))).where(JobTemplate.tenant_id == tenant_id)
        )
        if (count or 0) >= MAX_TEMPLATES_PER_TENANT:
            raise ParamError("name", f"a tenant has at most {MAX_TEMPLATES_PER_TENANT} templates")
    version = (latest or 0) + 1
    if version > MAX_VERSIONS:
        raise ParamError("name", f"a template has at most {MAX_VERSIONS} versions")
    row = JobTemplate(
        tenant_id=tenant_id,
        name=name,
        version=version,
        description=description,
        parameters={k: p.model_dump(exclude_none=True) for k, p in parameters.items()},
        spec=dict(spec),
    )
    session.add(row)
    session.commit()
    return row


def delete(session: Session, *, tenant_id: int, name: str) -> int:
    """Delete every version of a template (submitted jobs keep their specs); how many there were."""
    rows = list(
        session.scalars(
            sa.select(JobTemplate).where(JobTemplate.tenant_id == tenant_id, JobTemplate.name == name)
        )
    )
    if not rows:
        raise NotFound(f"no template {name!r}")
    for row in rows:
        session.delete(row)
    session.commit()
    return len(rows)
