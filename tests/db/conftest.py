"""Database tests run against the session's real database (SQLite or PostgreSQL)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _settings(test_env: dict[str, str]) -> None:
    return None
