"""From what a client sends to a job spec: a spec (whose outputs may name presets) or a template call,
one at a time (`POST /v1/jobs`) or up to MAX_ITEMS at once (`POST /v1/jobs/batch`).

A Resolver serves one request: the tenant presets and template versions it reads are read once, and a
spec naming only built-in presets needs no database at all (the single-submission path stays in memory).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from framefleet.core.spec import JobSpec
from framefleet.jobs.locations import spec_locations
from framefleet.storage import profile_service, uploads
from framefleet.workflows import presets, templates

MAX_ITEMS = 1000
TEMPLATE_CALL_FIELDS = frozenset({"template", "version", "params"})


class TemplateCall(BaseModel):
    """A job made from a saved template (documents the shape; resolve() checks it)."""

    model_config = {"extra": "forbid"}
    template: str = Field(description="the name of one of the tenant's templates")
    version: int | None = Field(default=None, ge=1, description="default: the latest")
    params: dict[str, Any] = Field(default_factory=dict, description="a value for each parameter")


class SubmissionInvalid(ValueError):
    """What is wrong with a submission: [{field, message, type}], fields dotted from the item's root."""

    def __init__(self, errors: Sequence[Mapping[str, str]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid")
        self.errors = [dict(e) for e in errors]


def _error(field_name: str, message: str, kind: str = "validation") -> SubmissionInvalid:
    return SubmissionInvalid([{"field": field_name, "message": message, "type": kind}])


def spec_errors(
    exc: ValidationError, origins: Mapping[tuple[str, ...], str] | None = None
) -> list[dict[str, str]]:
    """A job spec's validation errors as [{field, message, type}]; a field a template parameter filled in
    whole is named `params.<name>` instead."""
    found = []
    for error in exc.errors():
        parts = tuple(str(p) for p in error["loc"])
        sub = (error.get("ctx") or {}).get("field")
        if sub:
            parts += tuple(str(sub).split("."))
        name = (origins or {}).get(parts)
        found.append(
            {
                "field": f"params.{name}" if name else ".".join(parts),
                "message": str(error["msg"]),
                "type": str(error["type"]),
            }
        )
    return found


def origins(value: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Where a template's spec takes a parameter as a whole value: path -> parameter name."""
    if isinstance(value, str):
        whole = templates.PLACEHOLDER.fullmatch(value)
        return {path: whole.group(1)} if whole else {}
    found: dict[tuple[str, ...], str] = {}
    items = (
        value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, item in items:
        found.update(origins(item, (*path, str(key))))
    return found


def needs_database(document: Mapping[str, Any]) -> bool:
    """Whether resolving this submission reads the tenant's presets, templates or uploads."""
    return (
        "template" in document
        or _names_upload(document)
        or _names_profile(document)
        or bool(presets.referenced(document) - set(presets.BUILTIN))
    )


def _names_profile(document: Mapping[str, Any]) -> bool:
    # Any storage:// URI (input, destinations, assets): cheap enough on a document of a few KiB.
    return "storage://" in json.dumps(document)


def _names_upload(document: Mapping[str, Any]) -> bool:
    source = document.get("input")
    return isinstance(source, str) and source.lower().startswith(uploads.SCHEME)


@dataclass
class Resolver:
    """Resolves the submissions of one request for one tenant. `session` may be None when no submission
    needs the database (needs_database)."""

    session: Session | None
    tenant_id: int
    _presets: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _templates: dict[tuple[str, int | None], Any] = field(default_factory=dict)
    _profiles: set[str] | None = None

    def _lookup(self, name: str) -> dict[str, Any] | None:
        if name not in self._presets:
            assert self.session is not None
            self._presets.update(presets.outputs_of(self.session, tenant_id=self.tenant_id, names={name}))
            self._presets.setdefault(name, None)
        return self._presets[name]

    def prefetch(self, documents: Sequence[Any]) -> None:
        """Read every tenant preset these submissions name in one query."""
        names: set[str] = set()
        for document in documents:
            if isinstance(document, Mapping):
                names |= presets.referenced(document) - set(presets.BUILTIN)
        if names and self.session is not None:
            found = presets.outputs_of(self.session, tenant_id=self.tenant_id, names=names)
            self._presets.update({name: found.get(name) for name in names})

    def expand(self, document: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return presets.expand(document, self._lookup)
        except presets.PresetError as exc:
            raise _error(exc.field, str(exc), "unknown-preset") from None

    def _template(self, name: str, version: int | None) -> Any:
        key = (name, version)
        if key not in self._templates:
            assert self.session is not None
            self._templates[key] = templates.find(
                self.session, tenant_id=self.tenant_id, name=name, version=version
            )
        return self._templates[key]

    def origin(self, document: Any) -> tuple[str, int] | None:
        """The (name, version) of the template a resolved submission called; None for a plain spec. Read
        from the rows resolve() cached, so it costs no query."""
        if not isinstance(document, Mapping) or "template" not in document:
            return None
        row = self._template(document["template"], document.get("version"))
        return str(row.name), int(row.version)

    def _upload(self, uri: str) -> str:
        """The stored URI of one of this tenant's finished uploads: `upload://<id>` names nothing else."""
        assert self.session is not None
        try:
            return uploads.stored_uri(self.session, tenant_id=self.tenant_id, uri=uri)
        except uploads.UploadNotFound:
            message = f"{uri} names no finished upload of this tenant"
            raise _error("input", message, "unknown-upload") from None

    def resolve(self, document: Any) -> tuple[JobSpec, dict[str, Any]]:
        """The validated spec and its JSON document; SubmissionInvalid naming each field at fault."""
        if not isinstance(document, Mapping):
            raise _error("", "a submission is a JSON object: a job spec or a template call")
        where: Mapping[tuple[str, ...], str] = {}
        if "template" in document:
            document, where = self._from_template(document)
        raw = self.expand(document)
        if _names_upload(raw):
            raw = {**raw, "input": self._upload(raw["input"])}
        try:
            spec = JobSpec.model_validate(raw)
        except ValidationError as exc:
            raise SubmissionInvalid(spec_errors(exc, where)) from None
        if _names_profile(raw):
            self._check_profiles(spec)
        return spec, spec.model_dump(mode="json")

    def _check_profiles(self, spec: JobSpec) -> None:
        """Every storage:// URI names one of this tenant's profiles (another tenant's name is unknown)."""
        assert self.session is not None
        if self._profiles is None:
            found = profile_service.load(self.session, tenant_id=self.tenant_id, secret_key=None)
            self._profiles = set(found)
        for field_name, uri, _ in spec_locations(spec):
            if uri.lower().startswith("storage://"):
                name = uri[len("storage://") :].partition("/")[0]
                if name not in self._profiles:
                    raise _error(field_name, f"no storage profile named {name!r}", "unknown-profile")

    def _from_template(self, call: Mapping[str, Any]) -> tuple[dict[str, Any], Mapping[tuple[str, ...], str]]:
        extra = sorted(set(call) - TEMPLATE_CALL_FIELDS)
        if extra:
            raise _error(extra[0], "a template call takes only template, version and params")
        name, version, given = call["template"], call.get("version"), call.get("params", {})
        if not isinstance(name, str) or not name:
            raise _error("template", "the name of one of the tenant's templates")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise _error("version", "a positive integer (default: the latest)")
        if not isinstance(given, Mapping):
            raise _error("params", "an object of parameter values")
        try:
            row = self._template(name, version)
        except templates.NotFound as exc:
            raise _error("template", str(exc), "unknown-template") from None
        try:
            values = templates.bind(templates.parameters_of(row), given)
        except templates.ParamError as exc:
            raise _error(exc.field, str(exc)) from None
        return templates.render(row.spec, values), origins(row.spec)


def check_template(
    resolver: Resolver, parameters: Mapping[str, templates.Parameter], spec: Mapping[str, Any]
) -> None:
    """A template about to be saved: every placeholder declared and, with values every parameter may
    take, a valid job spec (SubmissionInvalid naming `spec.<field>` or `parameters.<name>`)."""
    try:
        templates.check(parameters, spec)
    except templates.ParamError as exc:
        raise _error(exc.field, str(exc)) from None
    trial = resolver.expand(templates.render(spec, templates.sample_values(parameters)))
    try:
        JobSpec.model_validate(trial)
    except ValidationError as exc:
        errors = spec_errors(exc, origins(spec))
        raise SubmissionInvalid(
            [
                {**e, "field": e["field"].replace("params.", "parameters.", 1)}
                if e["field"].startswith("params.")
                else {**e, "field": f"spec.{e['field']}"}
                for e in errors
            ]
        ) from None


def prefixed(errors: Sequence[Mapping[str, str]], prefix: str) -> list[dict[str, str]]:
    """Errors of one item of a list, named from the list's root (`items.3.outputs.0.container`)."""
    return [{**e, "field": f"{prefix}.{e['field']}" if e["field"] else prefix} for e in errors]
