"""Model directories laid out as huggingface_hub's cache, and a stand-in Hub that refuses, for offline hub-id tests.

The layout is written by the library's `add_to_cache` (mergescope/models/hub.py, which `mergescope models` uses
too). Under HF_HUB_OFFLINE=1 `snapshot_download` follows `refs/REF` to `snapshots/SHA/` and answers from there.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mergescope.models.hub import add_to_cache, repo_folder

__all__ = ["RefusingHub", "add_to_cache", "hub_environment", "repo_folder"]


def hub_environment(cache: Path) -> dict[str, str]:
    """The environment that points huggingface_hub (in a new process) at `cache`, offline, with no token."""
    home = Path(cache).parent / "hf-home"
    return {"HF_HUB_CACHE": str(cache), "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": ""}


class RefusingHub:
    """A stand-in Hub on 127.0.0.1 (for HF_ENDPOINT) answering every request as the Hub refuses one: HTTP
    `status` with its `X-Error-Code` header (e.g. 403 "GatedRepo"), from which huggingface_hub raises its errors."""

    def __init__(self, status: int, error_code: str):
        reply = (status, error_code)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.send_response(reply[0])
                self.send_header("X-Error-Code", reply[1])
                self.send_header("X-Error-Message", f"stand-in hub: {reply[1]}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RefusingHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
