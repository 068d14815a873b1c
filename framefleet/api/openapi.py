"""The OpenAPI document as the API really answers: errors are `application/problem+json`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from framefleet.api.errors import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA_REF = "#/components/schemas/ProblemView"
# FastAPI's default 422 body, which this API never sends (validation errors are problems too).
FRAMEWORK_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
FRAMEWORK_SCHEMAS = ("HTTPValidationError", "ValidationError")


def problem_media_types(document: dict[str, Any]) -> dict[str, Any]:
    """Document errors as they are sent: every problem response as application/problem+json with the
    ProblemView schema, FastAPI's default 422 body included."""
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                plain = content.get("application/json")
                ref = plain.get("schema", {}).get("$ref") if plain else None
                if ref == FRAMEWORK_VALIDATION_REF:
                    response["description"] = "Invalid request; `errors` names each field"
                if ref in (PROBLEM_SCHEMA_REF, FRAMEWORK_VALIDATION_REF):
                    del content["application/json"]
                    content[PROBLEM_MEDIA_TYPE] = {"schema": {"$ref": PROBLEM_SCHEMA_REF}}
    schemas = document.get("components", {}).get("schemas", {})
    for name in FRAMEWORK_SCHEMAS:
        schemas.pop(name, None)
    return document


PERMISSION_KEY = "x-permission"


def declared_permissions(document: dict[str, Any]) -> dict[str, Any]:
    """Each operation's permission (the security scope its `requires` declares) as `x-permission`, with the
    roles holding it in the description."""
    from framefleet.tenancy.permissions import PERMISSIONS, ROLES

    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            scopes = {
                scope
                for requirement in operation.get("security", [])
                for s in requirement.values()
                for scope in s
            }
            if len(scopes) != 1:
                continue
            (permission,) = scopes
            operation[PERMISSION_KEY] = permission
            roles = ", ".join(role for role in ROLES if role in PERMISSIONS.get(permission, ()))
            operation["description"] = (
                f"{operation.get('description', '')}\n\nPermission `{permission}` (roles: {roles})."
            ).strip()
    return document


def submission_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The schemas of what a submission may be (a JobSpec or a TemplateCall), which the submit and batch
    routes take as plain JSON objects so that presets and templates resolve before the spec is checked."""
    from pydantic.json_schema import models_json_schema

    from framefleet.core.spec import JobSpec
    from framefleet.workflows.batch import TemplateCall

    _, found = models_json_schema(
        [(JobSpec, "validation"), (TemplateCall, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(found.get("$defs", {}))
    return document


def install(app: FastAPI) -> None:
    """Serve the corrected document (built once, on first request, like FastAPI's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declared_permissions(problem_media_types(submission_schemas(build())))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
