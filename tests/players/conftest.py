"""Fixtures for the browser playback tests: Debian's chromium through Playwright, the npm-locked players,
the packaged ladders, and one loopback HTTP server for all of them.

`make test` installs what these need (tests/players/install.sh). Anything still missing fails the tests with
what is missing: nothing here skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.players.ladders import Ladders, make_ladders, make_source
from tests.players.serve import serve

HERE = Path(__file__).parent
CHROMIUM = Path("/usr/bin/chromium")
NODE_MODULES = HERE / "node_modules"
# The file each page loads from node_modules (the URL /lib/<path>).
PLAYER_FILES = {
    "hls": "hls.js/dist/hls.min.js",
    "dash": "dashjs/dist/modern/umd/dash.all.min.js",
    "shaka": "shaka-player/dist/shaka-player.compiled.js",
}
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
INSTALLS = "`make test` installs it (tests/players/install.sh)"


# Module scope: an open sync Playwright keeps an event loop running on the main thread, which would break
# every later test that calls asyncio.run (tests/api/test_downloads.py borrows this fixture).
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the Python package playwright is missing: {INSTALLS} with the dev extras")
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's chromium ({CHROMIUM}) is missing: {INSTALLS}")
    for path in PLAYER_FILES.values():
        if not (NODE_MODULES / path).is_file():
            pytest.fail(f"the player library {NODE_MODULES / path} is missing: {INSTALLS} with npm ci")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def ladders(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Ladders:
    folder = tmp_path_factory.mktemp("players")
    source = make_source(ffmpeg, folder / "flash-beep.mkv")
    return make_ladders(ffmpeg, source, folder / "job")


@pytest.fixture(scope="session")
def base_url(ladders: Ladders) -> Iterator[str]:
    with serve({"media": ladders.root, "lib": NODE_MODULES, "pages": HERE / "pages"}) as url:
        yield url
