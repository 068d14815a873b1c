"""Mounts the console on the API app: pages, static assets, the player libraries, error pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from framefleet.config import Settings
from framefleet.console import routes, sso
from framefleet.console.session import SessionCodec
from framefleet.keys import Principal

HERE = Path(__file__).parent
# Installed by `make` from vendor/package-lock.json (vendor/install.sh); never fetched by the browser from
# anywhere but here. Only the two players' built files are served (/console/vendor/<name>.js), never the
# rest of node_modules (sources, package manifests, other packages' files).
VENDOR = HERE / "vendor" / "node_modules"
PLAYER_FILES = {
    "hls": "hls.js/dist/hls.min.js",
    "dash": "dashjs/dist/modern/umd/dash.all.min.js",
}


def players_present() -> dict[str, bool]:
    """Which player libraries are installed (a page without one says so instead of failing)."""
    return {name: (VENDOR / path).is_file() for name, path in PLAYER_FILES.items()}


def install(app: FastAPI, *, settings: Settings, tokens: Callable[[str], Principal] | None) -> None:
    """`tokens` is the API's bearer-token lookup: single sign-on in the console checks tokens with it."""
    app.state.console_sessions = SessionCodec(settings.secret_key)
    app.state.console_sso = sso.setup(settings, tokens=tokens)
    app.state.console_players = players_present()
    app.include_router(routes.router)
    app.mount(routes.PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for name, path in PLAYER_FILES.items():
        if (VENDOR / path).is_file():
            app.add_api_route(
                f"{routes.PREFIX}/vendor/{name}.js", _player_file(VENDOR / path), include_in_schema=False
            )

    @app.exception_handler(routes.SignInRequired)
    async def to_sign_in(request: Request, _exc: Exception) -> Response:
        return routes.sign_in_redirect(request)

    @app.exception_handler(routes.PageForbidden)
    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, routes.PageForbidden)
        return routes.forbidden_page(request, exc.permission)


def _player_file(path: Path) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return FileResponse(path, media_type="text/javascript")

    return serve
