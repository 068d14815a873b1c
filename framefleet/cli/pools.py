"""`framefleet workers …` and `framefleet pools`: see worker nodes, cordon, drain and uncordon them, and each
pool's capacity, backlog and scale hint, straight on the database like the other admin commands (audited
as `cli`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from framefleet.cli import remote
from framefleet.cli.admin import database
from framefleet.cli.common import Cli, Column, Output, operator_command, rows_table
from framefleet.config import get_settings

if TYPE_CHECKING:
    from framefleet.scheduling.control import Hold


def node_line(view: dict[str, Any]) -> str:
    running = ", ".join(view["running_jobs"]) or "-"
    reason = f" ({view['reason']})" if view.get("reason") else ""
    processes = len(view["workers"])
    return f"{view['node']}: {view['state']}{reason}; {processes} live process(es); running: {running}"


NODE_COLUMNS: list[Column] = [
    ("NODE", "node"),
    ("STATE", "state"),
    ("PROCS", lambda v: len(v["workers"])),
    ("BUSY", lambda v: len(v["running_jobs"])),
    ("REASON", "reason"),
]


@operator_command(remote=remote.workers_list)
def workers_list(cli: Cli) -> None:
    """Live and held worker nodes."""
    import sqlalchemy as sa

    from framefleet.db.models import Worker, WorkerControl, utcnow
    from framefleet.scheduling import control

    settings = get_settings()
    now = utcnow()
    with database() as session:
        # Nodes with a process that has not said it stopped, and every held node.
        nodes = set(session.scalars(sa.select(Worker.node).where(Worker.stopped_at.is_(None))))
        nodes |= set(session.scalars(sa.select(WorkerControl.node)))
        views = [control.node_view(session, settings, node=node, now=now) for node in sorted(nodes)]
    views = [view for view in views if view["workers"] or view["state"] != "active"]
    cli.show(views, lambda v: rows_table(v, NODE_COLUMNS), empty="no worker nodes")


WorkerArg = Annotated[str, typer.Argument(metavar="WORKER", help="a worker id (<node>:<pid>) or a node name")]
Reason = Annotated[str | None, typer.Option(help="why, shown in listings")]


@operator_command(remote=remote.workers_describe, default=Output.json)
def workers_describe(cli: Cli, worker: WorkerArg) -> None:
    """A node: its hold, its live processes (capabilities, heartbeat) and running jobs."""
    from framefleet.scheduling import control

    with database() as session:
        try:
            node = control.node_of(session, worker=worker)
        except control.UnknownWorker as exc:
            raise ValueError(str(exc)) from exc
        cli.show(control.node_view(session, get_settings(), node=node), node_line)


def _hold(cli: Cli, worker: str, hold: Hold | None, *, reason: str | None = None, wait: bool = False) -> None:
    from framefleet.scheduling import control
    from framefleet.tenancy.audit import CLI

    settings = get_settings()
    try:
        with database() as session:
            node = control.set_hold(session, worker=worker, hold=hold, actor=CLI, reason=reason)
            session.commit()
            view = control.node_view(session, settings, node=node)
            # --wait: until the node runs nothing (drain), polling the database.
            while wait and view["running_jobs"]:
                time.sleep(1.0)
                session.expire_all()
                view = control.node_view(session, settings, node=node)
    except control.UnknownWorker as exc:
        raise ValueError(str(exc)) from exc
    cli.show(view, node_line)


@operator_command(remote=remote.workers_cordon)
def workers_cordon(cli: Cli, worker: WorkerArg, reason: Reason = None) -> None:
    """Take no new job on this node (running jobs go on)."""
    _hold(cli, worker, "cordoned", reason=reason)


@operator_command(remote=remote.workers_drain)
def workers_drain(
    cli: Cli,
    worker: WorkerArg,
    reason: Reason = None,
    wait: Annotated[bool, typer.Option("--wait", help="return once the node runs nothing")] = False,
) -> None:
    """Take no new job on this node and follow its running jobs to their end."""
    _hold(cli, worker, "draining", reason=reason, wait=wait)


@operator_command(remote=remote.workers_uncordon)
def workers_uncordon(cli: Cli, worker: WorkerArg) -> None:
    """Let the node take jobs again."""
    _hold(cli, worker, None)


POOL_COLUMNS: list[Column] = [
    ("POOL", "pool"),
    ("ALIVE", lambda v: v["workers"]["alive"]),
    ("BUSY", lambda v: v["workers"]["busy"]),
    ("HELD", lambda v: v["workers"]["held"]),
    ("BACKLOG", lambda v: v["backlog"]["total"]),
    ("DONE/MIN", "drain_rate_per_minute"),
    ("NEEDED", lambda v: "?" if v["workers_needed"] is None else v["workers_needed"]),
]


@operator_command(remote=remote.pools_view)
def pools_view(cli: Cli) -> None:
    """Each pool's workers, backlog, drain rate and workers needed."""
    from framefleet.scheduling import pools

    with database() as session:
        views = pools.pools_view(session, get_settings())
    cli.show(views, lambda v: rows_table(v, POOL_COLUMNS))


def register(app: typer.Typer) -> None:
    """Register `workers` and `pools`."""
    workers = typer.Typer(
        help="worker nodes: list, describe, cordon, drain, uncordon (on this installation, or over the API)"
    )
    for name, command in (
        ("list", workers_list),
        ("describe", workers_describe),
        ("cordon", workers_cordon),
        ("drain", workers_drain),
        ("uncordon", workers_uncordon),
    ):
        workers.command(name)(command)
    app.add_typer(workers, name="workers")
    app.command("pools")(pools_view)
