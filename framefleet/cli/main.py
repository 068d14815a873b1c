"""The `framefleet` command: parses arguments and hands each subcommand to its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="framefleet",
        description="FrameFleet: self-hosted, distributed video transcoding. Settings come from FRAMEFLEET_* "
        "environment variables (see docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"framefleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    supervisor.add_parser(sub)
    demo.add_parser(sub)
    worker.add_parser(sub)
    services.add_parsers(sub)
    admin.add_parsers(sub)
    lifecycle.add_parsers(sub)
    pools.add_parsers(sub)
    jobs.add_parsers(sub)
    webhooks.add_parsers(sub)
    workflows.add_parsers(sub)
    schedules.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `framefleet` console script."""
    args = build_parser().parse_args(argv)
    # Children of `framefleet up` go down with it, even if it is killed outright.
    supervisor.die_with_parent()
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
