"""The client's config file: named profiles of API URL and key, `~/.config/framefleet/config.toml`.

    default_profile = "prod"

    [profiles.prod]
    api_url = "https://transcode.example.org"
    api_key_env = "PROD_FRAMEFLEET_KEY"     # or api_key_file = "~/.secrets/framefleet", or api_key = "ff_..."

What wins, first to last: --api/--key, FRAMEFLEET_API_URL/FRAMEFLEET_API_KEY, the profile, then the stack on
this machine (settings.public_url and the demo key `framefleet up` keeps). Reading is pure apart from the file
and the environment passed in.
"""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The config file cannot be read, or names a profile or key source that is not there."""


@dataclass(frozen=True)
class Profile:
    name: str | None
    api_url: str | None = None
    api_key: str | None = None


def config_path(env: Mapping[str, str]) -> Path:
    """$XDG_CONFIG_HOME/framefleet/config.toml, else ~/.config/framefleet/config.toml."""
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "framefleet" / "config.toml"


def readable_by_others(path: Path) -> bool:
    """Whether the file's group or other users may read it."""
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def _key_of(name: str, entry: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    if entry.get("api_key"):
        return str(entry["api_key"]).strip()
    if entry.get("api_key_env"):
        value = env.get(str(entry["api_key_env"]))
        if not value:
            raise ConfigError(f"profile {name!r}: environment variable {entry['api_key_env']} is not set")
        return value.strip()
    if entry.get("api_key_file"):
        path = Path(str(entry["api_key_file"])).expanduser()
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"profile {name!r}: cannot read api_key_file {path}: {exc.strerror}") from None
    return None


def load_profile(name: str | None, *, path: Path, env: Mapping[str, str]) -> tuple[Profile, list[str]]:
    """The profile asked for (or the file's default_profile), and warnings to show.

    No file and no name asked for is an empty profile; a name that is not in the file is an error.
    """
    if not path.exists():
        if name:
            raise ConfigError(f"no profile {name!r}: {path} does not exist")
        return Profile(None), []
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    profiles = document.get("profiles") or {}
    chosen = name or document.get("default_profile")
    if not chosen:
        return Profile(None), []
    entry = profiles.get(chosen)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"no profile {chosen!r} in {path} (profiles: {known})")
    warnings = []
    inline_keys = any(isinstance(p, dict) and p.get("api_key") for p in profiles.values())
    if inline_keys and readable_by_others(path):
        warnings.append(f"warning: {path} holds API keys and other users can read it; run: chmod 600 {path}")
    url = entry.get("api_url")
    return Profile(chosen, str(url).rstrip("/") if url else None, _key_of(chosen, entry, env)), warnings
