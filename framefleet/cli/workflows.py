"""API commands of a tenant's own things: `presets`, `templates`, `workflows`, `storage-profiles`, and the
read-only views `queues`, `usage` and `slo` (the key's tenant, like every client command)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from framefleet.cli.common import EXIT_USAGE, Cli, Output, api_command, auto_table, fail, rows_table
from framefleet.cli.jobs import param_pairs

Name = Annotated[str, typer.Argument(help="its name")]
JsonFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, metavar="FILE.json")]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise fail(f"{path}: not JSON: {exc}", EXIT_USAGE) from None


def _items(page: Any) -> list[Any]:
    return list(page["items"]) if isinstance(page, dict) and "items" in page else list(page)


# presets


@api_command()
def presets_list(cli: Cli) -> None:
    """Built-in presets and the tenant's own."""
    with cli.client() as client:
        page = client.call("GET", "/v1/presets")
    cli.show(
        page,
        lambda p: rows_table(
            p["items"],
            [
                ("NAME", "name"),
                ("KIND", lambda r: "built-in" if r["builtin"] else "tenant"),
                ("DESCRIPTION", "description"),
            ],
        ),
    )


@api_command(default=Output.json)
def presets_get(cli: Cli, name: Name) -> None:
    """A preset's output fields."""
    with cli.client() as client:
        cli.show(client.call("GET", f"/v1/presets/{name}"))


def _preset_body(file: Path, description: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"output": _read(file)}
    if description is not None:
        body["description"] = description
    return body


Description = Annotated[str | None, typer.Option(help="a note shown in listings")]
OutputFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, metavar="OUTPUT.json", help="the output's fields")
]


@api_command(default=Output.json)
def presets_create(cli: Cli, name: Name, file: OutputFile, description: Description = None) -> None:
    """A tenant preset from an output's fields (no name or destination)."""
    with cli.client() as client:
        cli.show(client.call("POST", "/v1/presets", {"name": name, **_preset_body(file, description)}))


@api_command(default=Output.json)
def presets_update(cli: Cli, name: Name, file: OutputFile, description: Description = None) -> None:
    """Replace a tenant preset's output fields."""
    with cli.client() as client:
        cli.show(client.call("PATCH", f"/v1/presets/{name}", _preset_body(file, description)))


@api_command()
def presets_delete(cli: Cli, name: Name) -> None:
    """Delete a tenant preset."""
    with cli.client() as client:
        client.call("DELETE", f"/v1/presets/{name}")
    cli.show({"name": name, "deleted": True}, lambda v: f"preset {name} deleted")


# templates


@api_command()
def templates_list(cli: Cli) -> None:
    """The tenant's job templates, latest versions."""
    with cli.client() as client:
        page = client.call("GET", "/v1/templates")
    cli.show(
        page,
        lambda p: rows_table(
            p["items"], [("NAME", "name"), ("VERSION", "version"), ("DESCRIPTION", "description")]
        ),
    )


@api_command(default=Output.json)
def templates_get(
    cli: Cli, name: Name, version: Annotated[int | None, typer.Option(help="default: the latest")] = None
) -> None:
    """A template: its parameters and spec."""
    with cli.client() as client:
        cli.show(client.call("GET", f"/v1/templates/{name}", version=version))


@api_command()
def templates_versions(cli: Cli, name: Name) -> None:
    """Every version of a template."""
    with cli.client() as client:
        found = client.call("GET", f"/v1/templates/{name}/versions")
    cli.show(
        found,
        lambda f: rows_table(
            _items(f), [("VERSION", "version"), ("CREATED", "created_at"), ("DESCRIPTION", "description")]
        ),
    )


TemplateFile = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, metavar="TEMPLATE.json", help='{"parameters": {...}, "spec": {...}}'
    ),
]


@api_command(default=Output.json)
def templates_create(cli: Cli, name: Name, file: TemplateFile) -> None:
    """A new template (version 1)."""
    with cli.client() as client:
        cli.show(client.call("POST", "/v1/templates", {"name": name, **_read(file)}))


@api_command(default=Output.json)
def templates_update(cli: Cli, name: Name, file: TemplateFile) -> None:
    """A new version of a template."""
    with cli.client() as client:
        cli.show(client.call("PUT", f"/v1/templates/{name}", _read(file)))


@api_command()
def templates_delete(cli: Cli, name: Name) -> None:
    """Delete a template and its versions."""
    with cli.client() as client:
        client.call("DELETE", f"/v1/templates/{name}")
    cli.show({"name": name, "deleted": True}, lambda v: f"template {name} deleted")


# workflows

WorkflowId = Annotated[str, typer.Argument(metavar="ID", help="the workflow's id")]


@api_command()
def workflows_list(cli: Cli, limit: Annotated[int, typer.Option(help="runs per page")] = 50) -> None:
    """Workflow runs, newest first."""
    with cli.client() as client:
        page = client.call("GET", "/v1/workflows", limit=limit)
    cli.show(
        page,
        lambda p: rows_table(
            p["items"],
            [("ID", "id"), ("STATUS", "status"), ("STEPS", lambda r: len(r["steps"])), ("NAME", "name")],
        ),
    )


@api_command(default=Output.json)
def workflows_submit(
    cli: Cli,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, metavar="WORKFLOW.json", help='{"name": ..., "steps": [...]}'
        ),
    ],
) -> None:
    """Submit a workflow: a DAG of named steps."""
    with cli.client() as client:
        cli.show(client.call("POST", "/v1/workflows", _read(file)))


@api_command(default=Output.json)
def workflows_get(cli: Cli, workflow_id: WorkflowId) -> None:
    """A workflow run with its steps."""
    with cli.client() as client:
        cli.show(client.call("GET", f"/v1/workflows/{workflow_id}"))


@api_command(default=Output.json)
def workflows_cancel(cli: Cli, workflow_id: WorkflowId) -> None:
    """Cancel a workflow run's unfinished steps."""
    with cli.client() as client:
        cli.show(client.call("POST", f"/v1/workflows/{workflow_id}/cancel"))


# storage profiles


@api_command()
def storage_list(cli: Cli) -> None:
    """The tenant's storage profiles (never their secrets)."""
    with cli.client() as client:
        page = client.call("GET", "/v1/storage")
    cli.show(
        page, lambda p: rows_table(_items(p), [("NAME", "name"), ("KIND", "kind"), ("CREATED", "created_at")])
    )


@api_command(default=Output.json)
def storage_get(cli: Cli, name: Name) -> None:
    """A storage profile."""
    with cli.client() as client:
        cli.show(client.call("GET", f"/v1/storage/{name}"))


ProfileFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, metavar="PROFILE.json", help="the profile's fields")
]


@api_command(default=Output.json)
def storage_create(cli: Cli, file: ProfileFile) -> None:
    """A storage profile from a JSON document (see docs/storage.md)."""
    with cli.client() as client:
        cli.show(client.call("POST", "/v1/storage", _read(file)))


@api_command(default=Output.json)
def storage_update(cli: Cli, name: Name, file: ProfileFile) -> None:
    """Change a storage profile."""
    with cli.client() as client:
        cli.show(client.call("PATCH", f"/v1/storage/{name}", _read(file)))


@api_command()
def storage_delete(cli: Cli, name: Name) -> None:
    """Delete a storage profile."""
    with cli.client() as client:
        client.call("DELETE", f"/v1/storage/{name}")
    cli.show({"name": name, "deleted": True}, lambda v: f"storage profile {name} deleted")


# read-only views


@api_command()
def queues(cli: Cli) -> None:
    """Each queue's depth and oldest job's age (operators)."""
    with cli.client() as client:
        found = client.call("GET", "/v1/queues")
    cli.show(found, lambda f: auto_table(_items(f)))


@api_command(default=Output.json)
def usage(
    cli: Cli, tenant: Annotated[str | None, typer.Option(help="another tenant (admins)")] = None
) -> None:
    """The tenant's usage against its quotas, and cost."""
    with cli.client() as client:
        cli.show(client.call("GET", f"/v1/tenants/{tenant}/usage" if tenant else "/v1/usage"))


@api_command(default=Output.json)
def slo(cli: Cli) -> None:
    """Service level objectives and how much error budget is left."""
    with cli.client() as client:
        cli.show(client.call("GET", "/v1/slo"))


class Method(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


@api_command(default=Output.json)
def request(
    cli: Cli,
    method: Annotated[Method, typer.Argument(help="the HTTP method")],
    path: Annotated[str, typer.Argument(metavar="PATH", help="an API path, like /v1/keys")],
    data: Annotated[
        str | None, typer.Option(metavar="JSON|@FILE", help="the JSON body, or @ and a file holding it")
    ] = None,
    query: Annotated[
        list[str] | None, typer.Option(metavar="NAME=VALUE", help="a query parameter (repeatable)")
    ] = None,
) -> None:
    """Any API route with this command's key, profile and output: for what has no command of its own
    (the API's tenants, keys, audit, webhooks, schedules and workers routes, for a tenant's admin away from
    the installation)."""
    if not path.startswith("/") or "://" in path or path.startswith("//"):
        # The key goes only to the configured API, never to a host named in the path.
        raise fail(f"PATH must be a path on the API, like /v1/keys (got {path!r})", EXIT_USAGE)
    body = None
    if data is not None:
        text = _read_text(Path(data[1:])) if data.startswith("@") else data
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise fail(f"--data is not JSON: {exc}", EXIT_USAGE) from None
    with cli.client() as client:
        answer = client.call(method.value, path, body, **param_pairs(query or []))
    cli.show(answer if answer is not None else {"status": "done"})


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None


def _group(app: typer.Typer, name: str, text: str, commands: dict[str, Any]) -> None:
    group = typer.Typer(help=text)
    for command_name, command in commands.items():
        group.command(command_name)(command)
    app.add_typer(group, name=name)


def register(app: typer.Typer) -> None:
    """Register presets, templates, workflows, storage-profiles, queues, usage and slo."""
    _group(
        app,
        "presets",
        "output presets: built-in and the tenant's",
        {
            "list": presets_list,
            "get": presets_get,
            "create": presets_create,
            "update": presets_update,
            "delete": presets_delete,
        },
    )
    _group(
        app,
        "templates",
        "versioned job templates with parameters",
        {
            "list": templates_list,
            "get": templates_get,
            "versions": templates_versions,
            "create": templates_create,
            "update": templates_update,
            "delete": templates_delete,
        },
    )
    _group(
        app,
        "workflows",
        "workflow runs: DAGs of steps",
        {
            "list": workflows_list,
            "submit": workflows_submit,
            "get": workflows_get,
            "cancel": workflows_cancel,
        },
    )
    _group(
        app,
        "storage-profiles",
        "the tenant's storage profiles (where inputs are read, outputs written)",
        {
            "list": storage_list,
            "get": storage_get,
            "create": storage_create,
            "update": storage_update,
            "delete": storage_delete,
        },
    )
    app.command("request")(request)
    app.command("queues")(queues)
    app.command("usage")(usage)
    app.command("slo")(slo)
