"""Client commands: `submit`, `watch`, `get` and `cancel` a job through the HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx

from framefleet.cli.client import ApiClient, ApiError, default_api_key, default_api_url
from framefleet.cli.progress import RESULT_HEADERS, ProgressDisplay, format_table, result_rows
from framefleet.config import get_settings
from framefleet.core.spec import Priority

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_ERROR = 2


def add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api", metavar="URL", help="API base URL (default: FRAMEFLEET_API_URL or public_url)"
    )
    parser.add_argument("--key", metavar="KEY", help="API key (default: FRAMEFLEET_API_KEY or the demo key)")


def client_from(args: argparse.Namespace) -> ApiClient:
    """An API client from --api/--key, falling back to the environment and the demo key file."""
    settings = get_settings()
    return ApiClient(args.api or default_api_url(settings), args.key or default_api_key(settings))


def watch_job(client: ApiClient, job_id: str, out: TextIO | None = None) -> dict[str, Any]:
    """Follow the job's event stream with a live progress display; returns the finished job."""
    display = ProgressDisplay(out or sys.stdout)
    try:
        for event in client.events(job_id):
            try:
                data = event.json()
            except ValueError:
                continue
            display.event(event.event, data if isinstance(data, dict) else {})
    finally:
        display.close()
    return client.get(job_id)


def report_result(job: dict[str, Any], out: TextIO | None = None) -> int:
    """Print how the job ended (a table of outputs, or the failure) and return the exit status."""
    out = out or sys.stdout
    state = job.get("state")
    if state == "succeeded":
        out.write(f"Job {job.get('id')} succeeded.\n\n")
        out.write(format_table(RESULT_HEADERS, result_rows(job.get("outputs") or [])) + "\n")
        out.write(usage_line(job.get("usage")))
        return EXIT_OK
    out.write(f"Job {job.get('id')} {state}")
    progress = job.get("progress")
    if isinstance(progress, int | float) and progress > 0:
        out.write(f" at {progress:.1f}%")
    if job.get("failure_class"):
        out.write(f": {job['failure_class']}")
    if job.get("error"):
        out.write(f" - {job['error']}")
    out.write("\n")
    return EXIT_JOB_FAILED


def usage_line(usage: Any) -> str:
    """One line of what the job consumed and cost, or nothing when it recorded no usage."""
    if not isinstance(usage, dict) or not isinstance(usage.get("cost"), dict):
        return ""
    cost = usage["cost"]
    return (
        f"\nUsage: {usage.get('cpu_seconds', 0):.2f} CPU-s, {usage.get('wall_seconds', 0):.2f} s wall, "
        + (f"{usage['gpu_seconds']:.2f} GPU-s, " if usage.get("gpu_seconds") else "")
        + f"{usage.get('joules', 0):.1f} J ({usage.get('joules_source')}), "
        f"cost {cost.get('amount', 0):.6f} {cost.get('currency', '')}\n"
    )


def local_input_uri(value: Any, *, cwd: Path) -> Any:
    """A spec's `input` as the API wants it: a local path (no `scheme:`) becomes its absolute file:// URI.

    Lets a spec on the stack's own machine name a file the way a shell would (`.data/media/...`); the API
    itself takes only URIs, so anything else is sent as it is and judged there.
    """
    if not isinstance(value, str) or not value or "://" in value or value.startswith("file:"):
        return value
    path = (cwd / Path(value).expanduser()).resolve()
    if not path.is_file():
        raise ValueError(f"input {value!r} is not a URI, and no file {path} exists")
    return path.as_uri()


def read_spec(path: str, *, cwd: Path | None = None) -> Any:
    """A job spec (or a template call) from a file (or - for stdin), or a JSON list of them (a batch),
    with a local input path turned into a file:// URI."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    found = json.loads(text)
    specs = found if isinstance(found, list) else [found]
    for spec in specs:
        if not isinstance(spec, dict):
            raise ValueError("a job spec must be a JSON object (a batch: a JSON list of them)")
        if isinstance(spec.get("input"), str):  # not a parent's output by reference
            spec["input"] = local_input_uri(spec["input"], cwd=cwd or Path.cwd())
    return found


def _submit_batch(client: ApiClient, items: list[Any], args: argparse.Namespace) -> int:
    """One line per item; exit status 1 when any item was refused."""
    answer = client.submit_batch(items, atomic=args.atomic, idempotency_key=args.idempotency_key)
    refused = 0
    for item in answer["items"]:
        if "job" in item:
            job = item["job"]
            print(f"{item['index']:>4}  {item['status']}  job {job['id']} {job.get('state')}")
        else:
            refused += 1
            print(f"{item['index']:>4}  {item['status']}  {item['problem'].get('detail')}")
    print(f"{answer['created']} created, {refused} refused, {len(answer['items'])} items.")
    return EXIT_JOB_FAILED if refused else EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a job spec file; with --wait, follow it to the end."""
    try:
        spec = read_spec(args.spec)
    except (OSError, ValueError) as exc:
        print(f"cannot read job spec {args.spec}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.after:
        # Parents by id with the default condition (succeeded); the spec file may say more.
        spec["depends_on"] = [*spec.get("depends_on", []), *args.after]
    with client_from(args) as client:
        if isinstance(spec, list):
            return _submit_batch(client, spec, args)
        job = client.submit(spec, idempotency_key=args.idempotency_key)
        print(f"Job {job['id']} {job.get('state', 'submitted')} (priority {job.get('priority', '-')}).")
        if not args.wait:
            return EXIT_OK
        return report_result(watch_job(client, job["id"]))


def cmd_watch(args: argparse.Namespace) -> int:
    """Follow a job live, then print its result."""
    with client_from(args) as client:
        return report_result(watch_job(client, args.job_id))


def cmd_get(args: argparse.Namespace) -> int:
    """Print a job as JSON."""
    with client_from(args) as client:
        job = client.get(args.job_id)
    print(json.dumps(job, indent=2, default=str))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a job."""
    with client_from(args) as client:
        job = client.cancel(args.job_id)
    pending = " (the worker is stopping it)" if job.get("state") == "running" else ""
    print(f"Job {job.get('id', args.job_id)}: {job.get('state')}{pending}")
    return EXIT_OK


def cmd_priority(args: argparse.Namespace) -> int:
    """Give a queued or pending job another priority (queue hopping)."""
    with client_from(args) as client:
        job = client.change_priority(args.job_id, args.priority)
    print(f"Job {job.get('id', args.job_id)}: {job.get('state')} at priority {job.get('priority')}")
    return EXIT_OK


def run_api_command(handler: Any, args: argparse.Namespace) -> int:
    """Run a client command, turning API and connection errors into a message and exit status 2."""
    try:
        return int(handler(args))
    except ApiError as exc:
        print(f"API error: {exc}", file=sys.stderr)
    except httpx.TransportError as exc:
        url = args.api or default_api_url(get_settings())
        print(f"cannot reach the API at {url}: {exc} (is `framefleet up` running?)", file=sys.stderr)
    return EXIT_ERROR


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register submit, watch, get and cancel."""
    submit = sub.add_parser(
        "submit",
        help="submit a job spec or template call (JSON file, or - for stdin), or a JSON list of them as one "
        "batch; an input may be a local file path",
    )
    submit.add_argument("--atomic", action="store_true", help="a batch: all items are created or none")
    submit.add_argument("spec", metavar="SPEC.json")
    submit.add_argument("--wait", action="store_true", help="follow the job and print its result")
    submit.add_argument("--idempotency-key", metavar="K", help="repeat-safe submission key")
    submit.add_argument(
        "--after", action="append", metavar="JOB_ID", help="wait for this job to succeed first (repeatable)"
    )
    add_api_options(submit)
    submit.set_defaults(handler=lambda a: run_api_command(cmd_submit, a))

    for name, handler, text in (
        ("watch", cmd_watch, "follow a job's progress live, then show its result"),
        ("get", cmd_get, "print a job as JSON"),
        ("cancel", cmd_cancel, "cancel a queued or running job"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("job_id", metavar="JOB_ID")
        add_api_options(parser)
        parser.set_defaults(handler=lambda a, h=handler: run_api_command(h, a))
    priority = sub.add_parser("priority", help="move a queued or pending job to another priority")
    priority.add_argument("job_id", metavar="JOB_ID")
    priority.add_argument("priority", choices=[p.value for p in Priority])
    add_api_options(priority)
    priority.set_defaults(handler=lambda a: run_api_command(cmd_priority, a))
