"""docs/cli.md lists every command of the Typer app, and each command's help says what it does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from framefleet.cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every runnable command: leaves, and groups that run on their own (`audit`)."""
    children = getattr(command, "commands", None)
    if not children:
        yield path, command
        return
    if path and getattr(command, "invoke_without_command", False):
        yield path, command
    for name, child in children.items():
        yield from command_paths(child, (*path, name))


def test_docs_list_every_command_and_no_other() -> None:
    commands = {" ".join(path): command for path, command in command_paths(typer.main.get_command(app))}
    documented = set(re.findall(r"^\| `framefleet ([a-z -]+)` \|", DOC.read_text(), flags=re.MULTILINE))
    assert sorted(set(commands) - documented) == [], "commands missing from docs/cli.md"
    assert sorted(documented - set(commands)) == [], "docs/cli.md lists commands that do not exist"
    assert all((command.help or "").strip() for command in commands.values())
    # The CLI covers the API: about 60 commands or more.
    assert len(commands) >= 60
