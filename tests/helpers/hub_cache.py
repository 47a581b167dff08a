"""Model directories laid out as huggingface_hub's cache, and a stand-in Hub that refuses, for offline hub-id tests.

The layout is the cache's own (huggingface_hub/file_download.py and _snapshot_download.py read it so):
`CACHE/models--ORG--NAME/blobs/HASH` holds each file once, `snapshots/SHA/FILE` is a relative symlink to its
blob, and `refs/REF` holds the commit SHA (no newline: huggingface_hub reads it unstripped). Under
HF_HUB_OFFLINE=1 `snapshot_download` follows `refs/REF` to `snapshots/SHA/` and answers from there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def repo_folder(cache: Path, repo_id: str) -> Path:
    """The cache folder of a model repository: models--ORG--NAME (huggingface_hub's repo_folder_name)."""
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def add_to_cache(cache: Path, repo_id: str, model_dir: Path, *, refs: tuple[str, ...] = ("main",),
                 sha: str | None = None, skip: tuple[str, ...] = ()) -> str:
    """Lay `model_dir`'s files (less those named in `skip`) out as commit `sha` of `repo_id`, the commit `refs`
    point to; returns the sha (by default a hash of the repository id and the files' contents)."""
    files = sorted(f for f in Path(model_dir).iterdir() if f.is_file() and f.name not in skip)
    digest = hashlib.sha1(repo_id.encode())
    for file in files:
        digest.update(file.name.encode() + file.read_bytes())
    sha = sha or digest.hexdigest()
    folder = repo_folder(cache, repo_id)
    snapshot = folder / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir(exist_ok=True)
    for file in files:
        blob = folder / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(file, blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    (folder / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (folder / "refs" / ref).write_text(sha)
    return sha


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

    def __enter__(self) -> "RefusingHub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
