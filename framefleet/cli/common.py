"""What every command shares: exit codes, `--output table|json|yaml`, the API options and profiles, and the
turning of errors into one line on stderr and an exit code.

A command is a plain function; `api_command` and `output_command` add the shared options to the signature
Typer reads, and hand the function a `Cli` (how to print, and for API commands how to reach the API).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

from framefleet.cli.client import ApiClient, ApiError, default_api_key, default_api_url
from framefleet.cli.profiles import ConfigError, config_path, load_profile
from framefleet.config import get_settings

# Exit codes (docs/cli.md): the same for every command.
EXIT_OK = 0
EXIT_ERROR = 1  # the API (or, for operator commands, the installation) refused: 4xx/5xx, not found, conflict
EXIT_USAGE = 2  # bad options or arguments, an unreadable file, a bad config file or profile
EXIT_JOB_FAILED = 3  # a followed job ended failed or canceled; a batch had refused items
EXIT_UNREACHABLE = 4  # no answer from the API (connection refused, timeout)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def console(*, stderr: bool = False) -> Console:
    """A console on the current stdout/stderr; wide when not a terminal, so piped tables keep whole cells."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 240, highlight=False)


def plain(value: Any) -> Any:
    """The value as JSON would carry it (datetimes as ISO strings), for JSON and YAML alike."""
    return json.loads(json.dumps(value, default=str))


Column = tuple[str, Callable[[Any], Any] | str]


def _cell(row: Any, how: Callable[[Any], Any] | str) -> str:
    value = how(row) if callable(how) else (row.get(how) if isinstance(row, Mapping) else None)
    return "-" if value is None or value == "" else str(value)


def rows_table(rows: Sequence[Any], columns: Sequence[Column]) -> Table:
    """A table with one row per item; a column is a header and a key or a function of the item."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row, how) for _, how in columns))
    return table


def auto_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """A table of the scalar fields of the first row, for views without a chosen layout."""
    first = rows[0] if rows else {}
    keys = [k for k, v in first.items() if not isinstance(v, dict | list)]
    return rows_table(rows, [(str(k).upper(), str(k)) for k in keys])


def fields_table(item: Mapping[str, Any]) -> Table:
    """One object as a two-column table; nested values as compact JSON."""
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in item.items():
        shown = json.dumps(plain(value)) if isinstance(value, dict | list) else _cell(item, key)
        table.add_row(key, shown)
    return table


@dataclass
class Cli:
    """What a command needs from the shared options."""

    output: Output
    api_url: str = ""
    api_key: str | None = None

    def client(self) -> ApiClient:
        return ApiClient(self.api_url, self.api_key)

    def show(self, value: Any, table: Callable[[Any], Any] | None = None, *, empty: str = "") -> None:
        """Print the value as asked: JSON and YAML as they are, else `table(value)` (text or a Rich table)."""
        if self.output is Output.json:
            sys.stdout.write(json.dumps(plain(value), indent=2) + "\n")
        elif self.output is Output.yaml:
            sys.stdout.write(yaml.safe_dump(plain(value), sort_keys=False, allow_unicode=True))
        elif isinstance(value, list) and not value and empty:
            sys.stdout.write(empty + "\n")
        else:
            console().print(table(value) if table else _default_table(value))


def _default_table(value: Any) -> Any:
    if isinstance(value, Mapping):
        return fields_table(value)
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return auto_table(value)
    return json.dumps(plain(value), indent=2)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print the message on stderr; raise the returned Exit."""
    sys.stderr.write(message.rstrip() + "\n")
    return typer.Exit(code)


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (for people), json (the API's JSON as is) or yaml")
]
JsonOption = Annotated[bool, typer.Option("--json", help="short for --output json")]
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        metavar="URL",
        help="API base URL (default: FRAMEFLEET_API_URL, the profile, or this machine's public_url)",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        metavar="KEY",
        help="API key (default: FRAMEFLEET_API_KEY, the profile, or the demo key of `framefleet up`)",
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        metavar="NAME",
        envvar="FRAMEFLEET_PROFILE",
        help="a profile of ~/.config/framefleet/config.toml (default: its default_profile)",
    ),
]


def resolve_api(api: str | None, key: str | None, profile: str | None) -> tuple[str, str | None]:
    """URL and key: the options, then FRAMEFLEET_API_URL/KEY, then the profile, then this machine's stack."""
    if api and key and not profile:
        return api.rstrip("/"), key.strip()  # nothing left for a profile to say
    chosen, warnings = load_profile(profile, path=config_path(os.environ), env=os.environ)
    for warning in warnings:
        sys.stderr.write(warning + "\n")
    settings = get_settings()
    url = api or os.environ.get("FRAMEFLEET_API_URL") or chosen.api_url or default_api_url(settings)
    secret = key or os.environ.get("FRAMEFLEET_API_KEY") or chosen.api_key or default_api_key(settings)
    return url.rstrip("/"), secret.strip() if secret else None


def _with_options(
    func: Callable[..., int | None], extra: list[inspect.Parameter], run: Callable[..., int | None]
) -> Callable[..., None]:
    """A function Typer reads as `func`'s parameters (less `cli`) plus `extra`, calling `run(**kwargs)`."""
    signature = inspect.signature(func, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != "cli"]
    clash = {p.name for p in params} & {p.name for p in extra}
    assert not clash, f"{func.__name__}: parameters {clash} are the shared options' names"
    params += extra

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        code = run(**kwargs)
        if code:
            raise typer.Exit(code)

    del command.__wrapped__  # Typer reads __signature__, not the wrapped function's own
    command.__signature__ = signature.replace(parameters=params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _output_params(default: Output) -> list[inspect.Parameter]:
    return [_option("output", OutputOption, default), _option("json_", JsonOption, False)]


def remote_wanted(api: str | None, key: str | None, profile: str | None) -> bool:
    """Whether an operator command goes over the API: --api, --key or --profile (or FRAMEFLEET_PROFILE) was
    given, or FRAMEFLEET_API_URL is set; else it acts on this installation's database."""
    return bool(api or key or profile or os.environ.get("FRAMEFLEET_API_URL"))


def call_api(
    func: Callable[..., int | None],
    *,
    api: str | None,
    key: str | None,
    profile: str | None,
    output: Output,
    json_: bool,
    **kwargs: Any,
) -> int | None:
    """Run `func(cli, **kwargs)` against the API: API and connection errors become a line on stderr and exit
    code 1 or 4, a bad profile exit code 2."""
    try:
        url, secret = resolve_api(api, key, profile)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    cli = Cli(Output.json if json_ else output, url, secret)
    try:
        return func(cli, **kwargs)
    except ApiError as exc:
        raise fail(f"API error: {exc}", EXIT_ERROR) from None
    except httpx.TransportError as exc:
        raise fail(
            f"cannot reach the API at {url}: {exc} (is `framefleet up` running?)", EXIT_UNREACHABLE
        ) from None


def call_local(func: Callable[..., int | None], *, output: Output, json_: bool, **kwargs: Any) -> int | None:
    """Run `func(cli, **kwargs)` on this installation: its refusals (not found, conflict, ValueError) become a
    line on stderr and exit code 1."""
    from framefleet.cli.admin import CommandError
    from framefleet.tenancy.service import Conflict, NotFound

    try:
        return func(Cli(Output.json if json_ else output), **kwargs)
    except (CommandError, NotFound, Conflict, ValueError) as exc:
        raise fail(str(exc).strip("'\""), EXIT_ERROR) from None


def _api_params() -> list[inspect.Parameter]:
    return [
        _option("api", ApiOption, None),
        _option("key", KeyOption, None),
        _option("profile", ProfileOption, None),
    ]


def api_command(
    *, default: Output = Output.table
) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """A command over the HTTP API: adds --api, --key, --profile and --output (see `call_api`)."""

    def wrap(func: Callable[..., int | None]) -> Callable[..., None]:
        return _with_options(
            func, [*_api_params(), *_output_params(default)], functools.partial(call_api, func)
        )

    return wrap


def output_command(
    *, default: Output = Output.table
) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """A command on this installation (database, stores): adds --output (see `call_local`)."""

    def wrap(func: Callable[..., int | None]) -> Callable[..., None]:
        return _with_options(func, _output_params(default), functools.partial(call_local, func))

    return wrap


def operator_command(
    *, remote: Callable[..., int | None], default: Output = Output.table
) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """An operator command that also works from afar: on this installation's database by default, over the
    API (as `remote`, which takes the same arguments) when `remote_wanted` says so. Adds --api, --key,
    --profile and --output."""

    def wrap(func: Callable[..., int | None]) -> Callable[..., None]:
        def run(
            *,
            api: str | None,
            key: str | None,
            profile: str | None,
            output: Output,
            json_: bool,
            **kwargs: Any,
        ) -> int | None:
            if remote_wanted(api, key, profile):
                return call_api(
                    remote, api=api, key=key, profile=profile, output=output, json_=json_, **kwargs
                )
            return call_local(func, output=output, json_=json_, **kwargs)

        return _with_options(func, [*_api_params(), *_output_params(default)], run)

    return wrap


def tenant_of(tenant: str | None, *, remote: bool) -> str:
    """The --tenant of a command on a tenant's resources: required on the installation's database; over the
    API the key's own tenant is meant, so a --tenant there is refused rather than silently ignored."""
    if remote:
        if tenant is not None:
            raise typer.BadParameter(
                "over the API a command acts on its key's tenant: leave --tenant out", param_hint="--tenant"
            )
        return ""
    if tenant is None:
        raise typer.BadParameter(
            "which tenant? (required on this installation's database)", param_hint="--tenant"
        )
    return tenant


def stamp(value: Any) -> str | None:
    """A time as `2027-01-31T00:00:00Z`, from a datetime (database) or an ISO string (the API's JSON)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if moment.tzinfo else f"{moment:%Y-%m-%dT%H:%M:%SZ}"
