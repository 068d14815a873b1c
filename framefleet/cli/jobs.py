"""Job commands over the HTTP API: `submit`, `watch`, `get`, `cancel`, `priority` at the top level (the short
forms of the tour) and the `jobs` group (list, history, hold, release, share, quality, download), plus
`uploads` (tus, resumable, with a progress bar)."""

from __future__ import annotations

import json
import operator
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from framefleet.cli.client import ApiClient
from framefleet.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Cli,
    Column,
    Output,
    api_command,
    auto_table,
    console,
    fail,
    rows_table,
)
from framefleet.cli.progress import (
    RESULT_HEADERS,
    TERMINAL_STATES,
    ProgressDisplay,
    format_size,
    result_rows,
)
from framefleet.core.spec import Priority
from framefleet.core.states import JobState

JobId = Annotated[str, typer.Argument(metavar="JOB_ID", help="the job's id")]
UPLOAD_CHUNK = 4 * 1024 * 1024


def watch_job(client: ApiClient, job_id: str, *, to_stderr: bool = False) -> dict[str, Any]:
    """Follow the job's event stream with a live progress display (on stderr when stdout carries a
    document); returns the finished job."""
    display = ProgressDisplay(console(stderr=to_stderr))
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


def report_result(job: dict[str, Any]) -> int:
    """Print how the job ended (a table of outputs, or the failure) and return the exit code."""
    out = console()
    state = job.get("state")
    if state == "succeeded":
        out.print(f"Job {job.get('id')} succeeded.\n", markup=False)
        rows = result_rows(job.get("outputs") or [])
        out.print(
            rows_table(rows, [(header, operator.itemgetter(i)) for i, header in enumerate(RESULT_HEADERS)])
        )
        line = usage_line(job.get("usage"))
        if line:
            out.print(line, markup=False)
        return EXIT_OK
    text = f"Job {job.get('id')} {state}"
    progress = job.get("progress")
    if isinstance(progress, int | float) and progress > 0:
        text += f" at {progress:.1f}%"
    if job.get("failure_class"):
        text += f": {job['failure_class']}"
    if job.get("error"):
        text += f" - {job['error']}"
    out.print(text, markup=False)
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
        f"cost {cost.get('amount', 0):.6f} {cost.get('currency', '')}"
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


def param_pairs(values: list[str]) -> dict[str, str]:
    """`--param name=value` options as a dict; the API types each value as the template declares it."""
    params = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {text!r}", param_hint="--param")
        params[name] = value
    return params


def _template_value(text: str) -> Any:
    """A --param value as JSON when it reads as JSON (numbers, true, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _batch(
    cli: Cli, client: ApiClient, items: list[Any], *, atomic: bool, idempotency_key: str | None
) -> int:
    answer = client.submit_batch(items, atomic=atomic, idempotency_key=idempotency_key)
    refused = [item for item in answer["items"] if "job" not in item]
    cli.show(
        answer,
        lambda a: rows_table(
            a["items"],
            [
                ("#", "index"),
                ("STATUS", "status"),
                ("JOB", lambda i: i["job"]["id"] if "job" in i else None),
                (
                    "STATE / PROBLEM",
                    lambda i: i["job"].get("state") if "job" in i else i["problem"].get("detail"),
                ),
            ],
        ),
    )
    if cli.output is Output.table:
        console().print(f"{answer['created']} created, {len(refused)} refused, {len(answer['items'])} items.")
    return EXIT_JOB_FAILED if refused else EXIT_OK


def _follow(cli: Cli, client: ApiClient, job_id: str) -> int:
    """Follow the job to its end, then print it: the result table, or the finished job as asked."""
    finished = watch_job(client, job_id, to_stderr=cli.output is not Output.table)
    if cli.output is Output.table:
        return report_result(finished)
    cli.show(finished)
    return EXIT_OK if finished.get("state") == "succeeded" else EXIT_JOB_FAILED


def _submitted(cli: Cli, client: ApiClient, job: dict[str, Any], *, wait: bool, note: str) -> int:
    """Say that the job was created (a line, or the job as asked); with `wait`, follow it."""
    if cli.output is Output.table:
        console().print(f"Job {job['id']} {job.get('state', 'submitted')}{note}.", markup=False)
    if wait:
        return _follow(cli, client, job["id"])
    if cli.output is not Output.table:
        cli.show(job)
    return EXIT_OK


@api_command()
def submit(
    cli: Cli,
    spec: Annotated[
        str | None,
        typer.Argument(
            metavar="SPEC.json",
            help="a job spec or template call (- for stdin), or a JSON list of them as one batch; an input "
            "may be a local file path",
        ),
    ] = None,
    template: Annotated[str | None, typer.Option(help="submit this job template instead of a file")] = None,
    version: Annotated[int | None, typer.Option(help="the template's version (default: latest)")] = None,
    param: Annotated[
        list[str] | None, typer.Option(metavar="NAME=VALUE", help="a template parameter (repeatable)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job and print its result")] = False,
    atomic: Annotated[bool, typer.Option("--atomic", help="a batch: all items are created or none")] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(metavar="K", help="repeat-safe submission key")
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(metavar="JOB_ID", help="wait for this job to succeed first (repeatable)"),
    ] = None,
) -> int:
    """Submit a job spec file, a batch, or a template with parameters; with --wait, follow it to the end."""
    if (spec is None) == (template is None):
        raise fail("give a SPEC.json or --template NAME (one of them)", EXIT_USAGE)
    if template is None and (version is not None or param):
        raise fail("--version and --param go with --template", EXIT_USAGE)
    body: Any
    if template is not None:
        if after:
            raise fail("--after goes with a spec file (a template call carries no depends_on)", EXIT_USAGE)
        params = {name: _template_value(value) for name, value in param_pairs(param or []).items()}
        body = {"template": template, "params": params}
        if version is not None:
            body["version"] = version
    else:
        assert spec is not None
        try:
            body = read_spec(spec)
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read job spec {spec}: {exc}", EXIT_USAGE) from None
    if after:
        if isinstance(body, list):
            raise fail("--after goes with one job, not a batch", EXIT_USAGE)
        # Parents by id with the default condition (succeeded); the spec file may say more.
        body["depends_on"] = [*body.get("depends_on", []), *after]
    with cli.client() as client:
        if isinstance(body, list):
            return _batch(cli, client, body, atomic=atomic, idempotency_key=idempotency_key)
        job = client.submit(body, idempotency_key=idempotency_key)
        return _submitted(cli, client, job, wait=wait, note=f" (priority {job.get('priority', '-')})")


@api_command()
def watch(cli: Cli, job_id: JobId) -> int:
    """Follow a job's progress live, then show its result."""
    with cli.client() as client:
        return _follow(cli, client, job_id)


@api_command(default=Output.json)
def get(cli: Cli, job_id: JobId) -> None:
    """Print a job (JSON unless --output says otherwise)."""
    with cli.client() as client:
        cli.show(client.get(job_id))


@api_command()
def cancel(cli: Cli, job_id: JobId) -> None:
    """Cancel a queued or running job."""
    with cli.client() as client:
        job = client.cancel(job_id)
    pending = " (the worker is stopping it)" if job.get("state") == "running" else ""
    cli.show(job, lambda j: f"Job {j.get('id', job_id)}: {j.get('state')}{pending}")


@api_command()
def priority(cli: Cli, job_id: JobId, to: Annotated[Priority, typer.Argument(metavar="PRIORITY")]) -> None:
    """Move a queued or pending job to another priority's queue."""
    with cli.client() as client:
        job = client.change_priority(job_id, to.value)
    cli.show(job, lambda j: f"Job {j.get('id', job_id)}: {j.get('state')} at priority {j.get('priority')}")


JOB_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("STATE", "state"),
    ("PRIORITY", "priority"),
    ("PROGRESS", lambda j: f"{j['progress']:.0f}%" if isinstance(j.get("progress"), int | float) else None),
    ("CREATED", "created_at"),
    ("FAILURE", "failure_class"),
]


@api_command()
def list_jobs(
    cli: Cli,
    state: Annotated[JobState | None, typer.Option(help="only jobs in this state")] = None,
    priority: Annotated[Priority | None, typer.Option(help="only jobs of this priority")] = None,
    since: Annotated[str | None, typer.Option(metavar="ISO8601", help="created at or after")] = None,
    until: Annotated[str | None, typer.Option(metavar="ISO8601", help="created before")] = None,
    tenant: Annotated[str | None, typer.Option(help="another tenant's jobs (operators)")] = None,
    limit: Annotated[int, typer.Option(help="jobs per page")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
) -> None:
    """The tenant's jobs, newest first, a page at a time."""
    with cli.client() as client:
        page = client.call(
            "GET",
            "/v1/jobs",
            state=state.value if state else None,
            priority=priority.value if priority else None,
            created_after=since,
            created_before=until,
            tenant=tenant,
            limit=limit,
            cursor=cursor,
        )
    more = f"\n(more: --cursor {page['next_cursor']})" if page.get("next_cursor") else ""
    cli.show(page, lambda p: rows_table(p["items"], JOB_COLUMNS) if p["items"] else "no jobs" + more)
    if more and cli.output is Output.table and page["items"]:
        console().print(more.strip(), markup=False)


@api_command()
def history(cli: Cli, job_id: JobId) -> None:
    """A job's state changes, oldest first."""
    with cli.client() as client:
        found = client.call("GET", f"/v1/jobs/{job_id}/history")
    items = found["items"] if isinstance(found, dict) and "items" in found else found
    cli.show(found, lambda _: auto_table(items))


@api_command()
def retry(
    cli: Cli,
    job_id: JobId,
    wait: Annotated[bool, typer.Option("--wait", help="follow the new job and print its result")] = False,
) -> int:
    """Submit an ended job's spec again as a new job (the API keeps each job's end; a retry is a new job)."""
    with cli.client() as client:
        job = client.get(job_id)
        if job.get("state") not in TERMINAL_STATES:
            raise fail(f"job {job_id} is {job.get('state')}: only an ended job is submitted again")
        again = client.submit(job["spec"])
        return _submitted(cli, client, again, wait=wait, note=f" (a retry of {job_id})")


@api_command()
def hold(cli: Cli, job_id: JobId) -> None:
    """Put a job under legal hold: its files outlive their retention until released."""
    with cli.client() as client:
        job = client.call("POST", f"/v1/jobs/{job_id}/hold")
    cli.show(job, lambda j: f"Job {j.get('id', job_id)}: under legal hold")


@api_command()
def release(cli: Cli, job_id: JobId) -> None:
    """Lift a job's legal hold (retention applies again)."""
    with cli.client() as client:
        job = client.call("DELETE", f"/v1/jobs/{job_id}/hold")
    cli.show(job, lambda j: f"Job {j.get('id', job_id)}: legal hold lifted")


@api_command()
def share(
    cli: Cli,
    job_id: JobId,
    name: Annotated[str, typer.Argument(help="the output's name (a ladder's group name)")],
    expires_in: Annotated[int, typer.Option(metavar="SECONDS", help="how long the link works")] = 86400,
) -> None:
    """A share link to a job's output (works without a key until it expires)."""
    with cli.client() as client:
        link = client.call(
            "POST", f"/v1/jobs/{job_id}/share", {"output": name, "expires_in_seconds": expires_in}
        )
    cli.show(link)


@api_command(default=Output.json)
def quality(cli: Cli, job_id: JobId, name: Annotated[str, typer.Argument(help="the output's name")]) -> None:
    """An output's per-frame quality log (VMAF, PSNR, SSIM)."""
    with cli.client() as client:
        cli.show(client.call("GET", f"/v1/jobs/{job_id}/quality/{name}"))


def _transfer_bar() -> Progress:
    return Progress(
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
    )


@api_command()
def download(
    cli: Cli,
    job_id: JobId,
    name: Annotated[str, typer.Argument(help="the output's name")],
    dest: Annotated[
        Path | None, typer.Option("--to", help="file to write (default: the output's file name)")
    ] = None,
    path: Annotated[str | None, typer.Option(help="a file inside a ladder output (e.g. master.m3u8)")] = None,
) -> None:
    """Download a job's output, with a progress bar on stderr."""
    route = f"/v1/jobs/{job_id}/outputs/{name}" + (f"/{path}" if path else "")
    with cli.client() as client:
        if dest is None:
            job = client.get(job_id)
            uri = next((o.get("uri") for o in job.get("outputs") or [] if o.get("name") == name), None)
            dest = Path(path or (str(uri).rsplit("/", 1)[-1] if uri else name))
        part = dest.with_name(dest.name + ".part")
        written = 0
        with _transfer_bar() as bar, part.open("wb") as out:
            task = bar.add_task("download", total=None)

            def chunks(total: int | None) -> Any:
                bar.update(task, total=total)
                return lambda size: bar.advance(task, size)

            for chunk in client.download(route, chunks=chunks):
                out.write(chunk)
                written += len(chunk)
        part.replace(dest)
    cli.show({"path": str(dest), "bytes": written}, lambda v: f"{v['path']}: {format_size(v['bytes'])}")


def _send(client: ApiClient, location: str, file: Path, offset: int) -> int:
    """PATCH the file from `offset` to its end a chunk at a time, under a progress bar on stderr."""
    size = file.stat().st_size
    with _transfer_bar() as bar, file.open("rb") as source:
        task = bar.add_task("upload", total=size, completed=offset)
        source.seek(offset)
        while offset < size:
            offset = client.tus_append(location, offset=offset, chunk=source.read(UPLOAD_CHUNK))
            bar.update(task, completed=offset)
    return offset


@api_command()
def upload(cli: Cli, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Upload a local file (tus, resumable); prints the upload's id and the uri a job spec takes."""
    with cli.client() as client:
        location = client.tus_create(length=file.stat().st_size, filename=file.name)
        _send(client, location, file, 0)
        cli.show(client.call("GET", location))


@api_command()
def resume(
    cli: Cli,
    upload_id: Annotated[str, typer.Argument(help="the upload's id")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """Send the rest of an interrupted upload, from the offset the server holds."""
    location = f"/v1/uploads/{upload_id}"
    with cli.client() as client:
        _send(client, location, file, client.tus_offset(location))
        cli.show(client.call("GET", location))


@api_command()
def upload_status(cli: Cli, upload_id: Annotated[str, typer.Argument(help="the upload's id")]) -> None:
    """An upload's state, offset and, once complete, its uri."""
    with cli.client() as client:
        cli.show(client.call("GET", f"/v1/uploads/{upload_id}"))


@api_command()
def upload_delete(cli: Cli, upload_id: Annotated[str, typer.Argument(help="the upload's id")]) -> None:
    """Abandon an upload and delete its bytes."""
    with cli.client() as client:
        client.tus_delete(f"/v1/uploads/{upload_id}")
    cli.show({"id": upload_id, "deleted": True}, lambda v: f"upload {v['id']} deleted")


def register(app: typer.Typer) -> None:
    """The top-level short forms, and the `jobs` and `uploads` groups."""
    for name, command in (("submit", submit), ("watch", watch), ("get", get), ("cancel", cancel)):
        app.command(name)(command)
    app.command("priority")(priority)
    jobs = typer.Typer(help="jobs: list, get, history, watch, cancel, hold, share, quality, download")
    for name, command in (
        ("list", list_jobs),
        ("get", get),
        ("history", history),
        ("watch", watch),
        ("cancel", cancel),
        ("retry", retry),
        ("priority", priority),
        ("hold", hold),
        ("release", release),
        ("share", share),
        ("quality", quality),
        ("download", download),
    ):
        jobs.command(name)(command)
    app.add_typer(jobs, name="jobs")
    uploads = typer.Typer(help="resumable uploads (tus) of local files, with a progress bar")
    for name, command in (
        ("create", upload),
        ("resume", resume),
        ("get", upload_status),
        ("delete", upload_delete),
    ):
        uploads.command(name)(command)
    app.add_typer(uploads, name="uploads")
