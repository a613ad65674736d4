"""A Hugging Face hub on localhost, serving the repositories of a fixture cache (tests/hub_cache.py)
over the hub's own HTTP API, so that online code paths (`sagec fetch`, `snapshot_download`,
`hf_hub_download`, sae_lens's range request for Gemma Scope 2 shapes) run unmodified against it.

What it answers, as huggingface.co does: `HEAD`/`GET /{repo}/resolve/{revision}/{path}` (with the
X-Repo-Commit and ETag headers huggingface_hub requires, byte ranges, and `X-Error-Code:
EntryNotFound` / `RepoNotFound` 404s), `GET /api/models/{repo}/revision/{revision}` and
`GET /api/models/{repo}/tree/{revision}` (the listing snapshot_download reads). Every request is
recorded in `requests`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.hub_cache import commit_of, repo_folder

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<what>revision|tree)/(?P<rev>[^/?]+)")


class _Handler(BaseHTTPRequestHandler):
    root: Path
    requests: list[str]

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _snapshot(self, repo: str) -> Path | None:
        snapshot = repo_folder(self.root, repo) / "snapshots" / commit_of(repo)
        return snapshot if snapshot.is_dir() else None

    def _files(self, snapshot: Path) -> list[str]:
        return sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())

    def _serve(self, body: bool) -> None:
        self.requests.append(f"{self.command} {self.path}")
        path = self.path.split("?", 1)[0]
        if m := _API.match(path):
            snapshot = self._snapshot(m["repo"])
            if snapshot is None:
                return self._error(404, "RepoNotFound")
            files = self._files(snapshot)
            if m["what"] == "revision":
                data = {"id": m["repo"], "modelId": m["repo"], "sha": commit_of(m["repo"]), "siblings": [{"rfilename": f} for f in files]}
            else:
                data = [{"type": "file", "path": f, "size": (snapshot / f).stat().st_size, "oid": hashlib.sha1((snapshot / f).read_bytes()).hexdigest()}
                        for f in files]
            return self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)
        m = _RESOLVE.match(path)
        if m is None:
            return self._error(404, "RepoNotFound")
        snapshot = self._snapshot(m["repo"])
        if snapshot is None:
            return self._error(404, "RepoNotFound")
        file = snapshot / m["path"]
        if not file.is_file():
            return self._error(404, "EntryNotFound")
        data = file.read_bytes()
        headers = {"X-Repo-Commit": commit_of(m["repo"]), "ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes"}
        status = 200
        if r := re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range", "")):
            start, end = int(r[1]), int(r[2])
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, body)

    def _error(self, status: int, code: str) -> None:
        self._send(status, json.dumps({"error": code}).encode(), {"X-Error-Code": code, "Content-Type": "application/json"}, self.command != "HEAD")

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


@contextmanager
def serving(root: Path) -> Iterator[tuple[str, list[str]]]:
    """(endpoint URL, the requests it received) of a hub serving the cache at `root`."""
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"root": root, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
