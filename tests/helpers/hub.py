"""A local stand-in for the Hugging Face Hub's HTTP API (the only stand-in in the tests: there is no Hub
here). It answers just what a push uses (repo creation, YAML validation, pre-upload, commit) and, for
`serving_endpoint`, what a download uses (repo info, file tree, file metadata and contents), and records
every request, so tests can check what `huggingface_hub`'s real client sent. Also the push tests' token
and `online()`, which lifts the tests' offline mode while a push or download talks to it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import huggingface_hub
import pytest

#: A token-shaped secret the push tests send and then look for everywhere it must not be.
TOKEN = "hf_TESTSECRETtoken0123456789abcdef"


@contextlib.contextmanager
def online() -> Iterator[None]:
    """Lift the tests' offline mode during a push (the local endpoint is the only server it can reach)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield


@dataclass
class Recorder:
    """What the local endpoint received."""

    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    created: list[dict] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorder.requests.append(("POST", self.path, dict(self.headers), body))
            url = urlsplit(self.path)
            host = f"http://{self.headers['Host']}"
            if url.path == "/api/repos/create":
                recorder.created.append(json.loads(body))
                data = recorder.created[-1]
                repo = f"{data['organization']}/{data['name']}"
                return self._reply(200, {"url": f"{host}/{repo}", "name": repo})
            if url.path == "/api/validate-yaml":
                return self._reply(200, {"errors": [], "warnings": []})
            match = re.fullmatch(r"/api/models/([^/]+)/([^/]+)/(preupload|commit)/(.+)", url.path)
            if match and match[3] == "preupload":
                files = json.loads(body)["files"]
                return self._reply(
                    200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                )
            if match:
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                files = {
                    item["value"]["path"]: base64.b64decode(item["value"]["content"])
                    for item in lines
                    if item["key"] == "file"
                }
                header = next(item["value"] for item in lines if item["key"] == "header")
                create_pr = parse_qs(url.query).get("create_pr") == ["1"]
                repo, oid = f"{match[1]}/{match[2]}", hashlib.sha1(body).hexdigest()
                recorder.commits.append(
                    {"repo": repo, "revision": unquote(match[4]), "header": header, "files": files, "pr": create_pr}
                )
                reply = {"commitUrl": f"{host}/{repo}/commit/{oid}", "commitOid": oid}
                if create_pr:
                    reply["pullRequestUrl"] = f"{host}/{repo}/discussions/1"
                return self._reply(200, reply)
            recorder.unexpected.append(f"POST {self.path}")
            return self._reply(404, {"error": "not served here"})

        def do_GET(self) -> None:
            recorder.requests.append(("GET", self.path, dict(self.headers), b""))
            recorder.unexpected.append(f"GET {self.path}")
            self._reply(404, {"error": "not served here"})

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 from a thread while the context is open; yields the server's URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def recording_endpoint() -> Iterator[tuple[str, Recorder]]:
    """A recording endpoint on 127.0.0.1: (its URL, what it received)."""
    recorder = Recorder()
    with _serving(_handler(recorder)) as url:
        yield url, recorder


@contextmanager
def echoing_endpoint(fragment: str = "", status: int = 401) -> Iterator[tuple[str, Recorder]]:
    """A hostile or careless endpoint on 127.0.0.1: every request whose path holds `fragment` gets `status` with
    the request's own `Authorization` header echoed in the JSON error body and in `X-Error-Message` (the two
    places `huggingface_hub` copies into its exception); other requests are served as by `recording_endpoint`."""
    recorder = Recorder()
    base = _handler(recorder)

    class Handler(base):  # type: ignore[misc, valid-type]
        def _echo(self) -> bool:
            if fragment not in self.path:
                return False
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorder.requests.append((self.command, self.path, dict(self.headers), b""))
            echoed = f"bad credentials in header Authorization: {self.headers.get('Authorization')}"
            body = json.dumps({"error": echoed}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Message", echoed)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return True

        def do_POST(self) -> None:
            if not self._echo():
                super().do_POST()

        def do_GET(self) -> None:
            if not self._echo():
                super().do_GET()

        def do_HEAD(self) -> None:
            if not self._echo():
                super().do_GET()

    with _serving(Handler) as url:
        yield url, recorder


@contextmanager
def serving_endpoint(repo_id: str, files: dict[str, bytes]) -> Iterator[tuple[str, Recorder]]:
    """An endpoint on 127.0.0.1 that serves `files` as the main branch of `repo_id` to `huggingface_hub`'s
    downloads (`hf_hub_download`, `snapshot_download`): (its URL, what it received)."""
    recorder = Recorder()
    commit = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
    tree = [
        {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": name}
        for name, data in files.items()
    ]

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, payload: object) -> None:
            self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def do_GET(self) -> None:
            recorder.requests.append((self.command, self.path, dict(self.headers), b""))
            path = unquote(urlsplit(self.path).path)
            if path in (f"/api/models/{repo_id}/revision/main", f"/api/models/{repo_id}/revision/{commit}"):
                return self._json({"id": repo_id, "sha": commit, "siblings": [{"rfilename": n} for n in files]})
            if path in (f"/api/models/{repo_id}/tree/main", f"/api/models/{repo_id}/tree/{commit}"):
                return self._json(tree)
            match = re.fullmatch(rf"/{re.escape(repo_id)}/resolve/(?:main|{commit})/(.+)", path)
            if match and match[1] in files:
                data = files[match[1]]
                etag = hashlib.sha1(data).hexdigest()
                return self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{etag}"'})
            recorder.unexpected.append(f"{self.command} {self.path}")
            return self._send(404, b"{}", {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"})

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as url:
        yield url, recorder


def cache_layout(files: dict[str, bytes], cache: Path, repo: str) -> str:
    """Lay the recorded files out as huggingface_hub's cache does (snapshot files link into blobs/)."""
    repo_folder = cache / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    for name, content in files.items():
        blob = repo_folder / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo_folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return commit
