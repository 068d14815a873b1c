"""`framefleet presets ...`, `framefleet templates ...` and `framefleet workflows ...`: a tenant's presets,
job templates and workflow runs through the HTTP API (the key's tenant, like every client command)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from framefleet.cli.jobs import EXIT_OK, add_api_options, client_from, run_api_command


def _read(path: str) -> Any:
    return json.loads(Path(path).read_text())


def _show(value: Any) -> int:
    if value is not None:
        print(json.dumps(value, indent=2, default=str))
    return EXIT_OK


def cmd_presets(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.action == "list":
            items = client.call("GET", "/v1/presets")["items"]
            for p in items:
                kind = "built-in" if p["builtin"] else "tenant"
                print(f"{p['name']:<24} {kind:<9} {p.get('description') or ''}")
            return EXIT_OK
        if args.action == "get":
            return _show(client.call("GET", f"/v1/presets/{args.name}"))
        if args.action == "delete":
            return _show(client.call("DELETE", f"/v1/presets/{args.name}"))
        body: dict[str, Any] = {"output": _read(args.file)}
        if args.description is not None:
            body["description"] = args.description
        if args.action == "create":
            return _show(client.call("POST", "/v1/presets", {"name": args.name, **body}))
        return _show(client.call("PATCH", f"/v1/presets/{args.name}", body))


def cmd_templates(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.action == "list":
            for t in client.call("GET", "/v1/templates")["items"]:
                print(f"{t['name']:<32} v{t['version']:<4} {t.get('description') or ''}")
            return EXIT_OK
        if args.action == "get":
            return _show(client.call("GET", f"/v1/templates/{args.name}", version=args.version))
        if args.action == "versions":
            return _show(client.call("GET", f"/v1/templates/{args.name}/versions"))
        if args.action == "delete":
            return _show(client.call("DELETE", f"/v1/templates/{args.name}"))
        # The file holds {"parameters": {...}, "spec": {...}, "description": "..."}.
        body = _read(args.file)
        if args.action == "create":
            return _show(client.call("POST", "/v1/templates", {"name": args.name, **body}))
        return _show(client.call("PUT", f"/v1/templates/{args.name}", body))


def cmd_workflows(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.action == "list":
            page = client.call("GET", "/v1/workflows", limit=args.limit)
            for run in page["items"]:
                print(f"{run['id']}  {run['status']:<10} {len(run['steps']):>3} steps  {run['name']}")
            return EXIT_OK
        if args.action == "submit":
            # The file holds {"name": ..., "steps": [{"name": ..., "spec": {...}}, ...]}.
            return _show(client.call("POST", "/v1/workflows", _read(args.file)))
        if args.action == "cancel":
            return _show(client.call("POST", f"/v1/workflows/{args.id}/cancel"))
        return _show(client.call("GET", f"/v1/workflows/{args.id}"))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `presets`, `templates` and `workflows`."""
    presets = sub.add_parser("presets", help="list and manage output presets (built-in and the tenant's)")
    actions = presets.add_subparsers(dest="action", required=True)
    for name in ("list", "get", "create", "update", "delete"):
        parser = actions.add_parser(name)
        if name != "list":
            parser.add_argument("name")
        if name in ("create", "update"):
            parser.add_argument(
                "file", metavar="OUTPUT.json", help="the output's fields (no name or destination)"
            )
            parser.add_argument("--description")
        add_api_options(parser)
        parser.set_defaults(handler=lambda a: run_api_command(cmd_presets, a))
    templates = sub.add_parser("templates", help="list and manage versioned job templates")
    actions = templates.add_subparsers(dest="action", required=True)
    for name in ("list", "get", "versions", "create", "update", "delete"):
        parser = actions.add_parser(name, help="update adds a version" if name == "update" else None)
        if name != "list":
            parser.add_argument("name")
        if name == "get":
            parser.add_argument("--version", type=int, help="default: the latest")
        if name in ("create", "update"):
            parser.add_argument("file", metavar="TEMPLATE.json", help='{"parameters": {...}, "spec": {...}}')
        add_api_options(parser)
        parser.set_defaults(handler=lambda a: run_api_command(cmd_templates, a))
    workflows = sub.add_parser("workflows", help="submit, follow and cancel workflow runs (DAGs of steps)")
    actions = workflows.add_subparsers(dest="action", required=True)
    for name in ("list", "submit", "get", "cancel"):
        parser = actions.add_parser(name)
        if name == "list":
            parser.add_argument("--limit", type=int, default=50)
        elif name == "submit":
            parser.add_argument("file", metavar="WORKFLOW.json", help='{"name": ..., "steps": [...]}')
        else:
            parser.add_argument("id", help="the workflow's id")
        add_api_options(parser)
        parser.set_defaults(handler=lambda a: run_api_command(cmd_workflows, a))
