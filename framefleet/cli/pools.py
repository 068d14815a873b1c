"""`framefleet workers …` and `framefleet pools`: see worker nodes, cordon, drain and uncordon them, and each
pool's capacity, backlog and scale hint, straight on the database like the other admin commands (audited
as `cli`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from framefleet.cli.admin import database, handled
from framefleet.config import get_settings

if TYPE_CHECKING:
    from framefleet.scheduling.control import Hold


def _show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, default=str, indent=2))
        return
    running = ", ".join(view["running_jobs"]) or "-"
    reason = f" ({view['reason']})" if view.get("reason") else ""
    processes = len(view["workers"])
    print(f"{view['node']}: {view['state']}{reason}; {processes} live process(es); running: {running}")


@handled
def cmd_workers_list(args: argparse.Namespace) -> int:
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
    if args.json:
        print(json.dumps(views, default=str, indent=2))
    else:
        print(f"{'NODE':<40} {'STATE':<10} {'PROCS':>5} {'BUSY':>5} REASON")
        for v in views:
            print(
                f"{v['node']:<40} {v['state']:<10} {len(v['workers']):>5} {len(v['running_jobs']):>5} "
                f"{v['reason'] or ''}"
            )
    return 0


def _hold_command(hold: Hold | None) -> Any:
    @handled
    def run(args: argparse.Namespace) -> int:
        from framefleet.scheduling import control
        from framefleet.tenancy.audit import CLI

        settings = get_settings()
        try:
            with database() as session:
                node = control.set_hold(
                    session, worker=args.worker, hold=hold, actor=CLI, reason=getattr(args, "reason", None)
                )
                session.commit()
                view = control.node_view(session, settings, node=node)
                # --wait: until the node runs nothing (drain), polling the database.
                while getattr(args, "wait", False) and view["running_jobs"]:
                    time.sleep(1.0)
                    session.expire_all()
                    view = control.node_view(session, settings, node=node)
        except control.UnknownWorker as exc:
            raise ValueError(str(exc)) from exc
        _show(view, args.json)
        return 0

    return run


@handled
def cmd_pools(args: argparse.Namespace) -> int:
    from framefleet.scheduling import pools

    with database() as session:
        views = pools.pools_view(session, get_settings())
    if args.json:
        print(json.dumps(views, default=str, indent=2))
        return 0
    print(f"{'POOL':<6} {'ALIVE':>5} {'BUSY':>5} {'HELD':>5} {'BACKLOG':>8} {'DONE/MIN':>9} {'NEEDED':>7}")
    for v in views:
        w = v["workers"]
        needed = "?" if v["workers_needed"] is None else v["workers_needed"]
        print(
            f"{v['pool']:<6} {w['alive']:>5} {w['busy']:>5} {w['held']:>5} {v['backlog']['total']:>8} "
            f"{v['drain_rate_per_minute']:>9} {needed:>7}"
        )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `workers` and `pools`."""
    workers = sub.add_parser("workers", help="worker nodes: list, cordon, drain, uncordon (operator)")
    w_sub = workers.add_subparsers(dest="workers_command", metavar="COMMAND", required=True)
    w_sub.add_parser("list", help="live and held worker nodes").set_defaults(handler=cmd_workers_list)
    holds: tuple[tuple[str, Hold | None, str], ...] = (
        ("cordon", "cordoned", "take no new job on this node (running jobs go on)"),
        ("drain", "draining", "take no new job on this node and follow its running jobs to their end"),
        ("uncordon", None, "let the node take jobs again"),
    )
    for name, hold, text in holds:
        command = w_sub.add_parser(name, help=text)
        command.add_argument("worker", help="a worker id (<node>:<pid>) or a node name")
        if hold is not None:
            command.add_argument("--reason", help="why, shown in listings")
        if name == "drain":
            command.add_argument("--wait", action="store_true", help="return once the node runs nothing")
        command.set_defaults(handler=_hold_command(hold))
    pools_parser = sub.add_parser("pools", help="each pool's workers, backlog, drain rate and workers needed")
    pools_parser.set_defaults(handler=cmd_pools)
    for parser in (*w_sub.choices.values(), pools_parser):
        parser.add_argument("--json", action="store_true", help="print JSON")
