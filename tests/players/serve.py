"""A small threaded HTTP server on loopback that serves the pages, the player libraries and the media."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# What each streaming file is, for players that check (http.server's table knows none of these).
MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".ts": "video/mp2t",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".html": "text/html",
}


class Handler(SimpleHTTPRequestHandler):
    """Serves `mounts` (URL prefix → folder); anything outside a mount, or escaping its folder, is a 404."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MEDIA_TYPES}

    def __init__(self, *args: Any, mounts: dict[str, Path], **kwargs: Any) -> None:
        self.mounts = mounts
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        url = unquote(urlsplit(path).path)
        for prefix, folder in self.mounts.items():
            if url.startswith(f"/{prefix}/"):
                target = (folder / url[len(prefix) + 2 :]).resolve()
                if target.is_relative_to(folder.resolve()):
                    return str(target)
        return "/nonexistent"

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # every page load fetches what the test just made
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: failures show in the players' events
        pass


@contextmanager
def serve(mounts: dict[str, Path]) -> Iterator[str]:
    """Serve `mounts` on 127.0.0.1 at a free port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, mounts=mounts))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="players-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
