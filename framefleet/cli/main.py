"""The `framefleet` command: one Typer app with every command group (docs/cli.md lists them all)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from framefleet import __version__
from framefleet.cli import (
    admin,
    demo,
    jobs,
    lifecycle,
    pools,
    schedules,
    services,
    supervisor,
    webhooks,
    worker,
    workflows,
)

PROG = "framefleet"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The app with every command registered."""
    app = typer.Typer(
        name=PROG,
        help="FrameFleet: self-hosted, distributed video transcoding. Settings come from FRAMEFLEET_* "
        "environment variables (see docs/configuration.md); client commands take --api/--key/--profile "
        "(see docs/cli.md).",
        no_args_is_help=True,
        # Tracebacks are for bugs, not for a refused request: errors are printed as one line.
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def root(
        version: Annotated[
            bool | None,
            typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit"),
        ] = None,
    ) -> None:
        """FrameFleet: self-hosted, distributed video transcoding."""

    app.command("up")(supervisor.up)
    app.command("demo")(demo.demo)
    app.command("worker")(worker.worker)
    for module in (services, jobs, workflows, admin, lifecycle, pools, webhooks, schedules):
        module.register(app)
    return app


app = build_app()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `framefleet` console script; returns the exit code (docs/cli.md), so callers in
    Python get it too."""
    # Children of `framefleet up` go down with it, even if it is killed outright.
    supervisor.die_with_parent()
    try:
        app(args=list(argv) if argv is not None else None, prog_name=PROG)
    except SystemExit as done:
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        sys.stderr.write(f"{code}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
