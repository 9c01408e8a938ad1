"""A tiny in-memory Hugging Face Hub for tests: just enough HTTP API for the real `huggingface_hub` client.

Supported (model repos only, branch `main` or a full commit sha as revision):

- `POST /api/repos/create`                       -> create a repo (409 if it exists)
- `POST /api/validate-yaml`                      -> check the README.md front matter parses as a YAML mapping
- `GET  /api/models?filter=...&cardData=...`    -> list repos whose tags include every `filter` (tags: the card's
                                                   `tags`, `library_name` and `base_model:<id>` per base model)
- `GET  /api/models/{repo}[/revision/{rev}]`     -> repo info (`sha`, `siblings`)
- `GET  /api/models/{repo}/tree/{rev}`           -> flat file listing (used by `snapshot_download`)
- `POST /api/models/{repo}/preupload/{rev}`      -> every file is uploaded inline ("regular" mode)
- `POST /api/models/{repo}/commit/{rev}`         -> NDJSON commit with base64 files / deletions
- `HEAD|GET /{repo}/resolve/{rev}/{filename}`    -> file download with `X-Repo-Commit`, `ETag`, `Content-Length`

Errors carry the `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) that the client
maps to `RepositoryNotFoundError`, `RevisionNotFoundError` and `RemoteEntryNotFoundError`.
The server binds to 127.0.0.1 only and keeps everything in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

EMPTY_TREE_SHA = "0" * 40


def git_blob_sha(data: bytes) -> str:
    """The git object id of a blob, which is what the Hub sends as the ETag of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One model repo: its commits (sha -> {path: bytes}) and the sha `main` points at."""

    repo_id: str
    head: str = EMPTY_TREE_SHA
    commits: dict[str, dict[str, bytes]] = field(default_factory=lambda: {EMPTY_TREE_SHA: {}})

    def files(self, revision: str) -> dict[str, bytes] | None:
        """The files at `revision` (`main` or a full commit sha), or None for an unknown revision."""
        return self.commits.get(self.head if revision == "main" else revision)

    def commit(self, files: dict[str, bytes], message: str) -> str:
        """Record a new commit on `main` and return its sha."""
        digest = hashlib.sha1(f"{self.head}\n{message}\n".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha(files[path]).encode())
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        self.head = sha
        return sha


class HubState:
    """All repos of the fake Hub, a log of `(method, path)` requests and of `(repo_id, paths)` sent per commit."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.commits: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()


_API = re.compile(
    r"^/api/models/(?P<repo>.+?)(?:/(?P<op>revision|tree|preupload|commit)/(?P<rev>[^/]+)(?P<rest>/.*)?)?$"
)
_RESOLVE = re.compile(r"^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def card_metadata(readme: bytes) -> dict:
    """The YAML front matter of a README.md (an empty mapping when there is none)."""
    match = re.match(r"^---\n(.*?)\n---\n", readme.decode("utf-8", "replace"), re.DOTALL)
    metadata = yaml.safe_load(match[1]) if match else {}
    return metadata if isinstance(metadata, dict) else {}


class HubHandler(BaseHTTPRequestHandler):
    """Routes requests to the in-memory `HubState` of the server."""

    server: "HubServer"

    def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
        pass

    # ----------------------------------------------------------------- helpers
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        extra = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}
        self._json(status, {"error": message}, extra)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.server.state.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _files(self, repo: Repo, revision: str) -> dict[str, bytes] | None:
        files = repo.files(revision)
        if files is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return files

    def _route(self) -> None:
        path = urlsplit(self.path).path
        with self.server.state.lock:
            self.server.state.requests.append((self.command, path))
            if self.command == "POST" and path == "/api/repos/create":
                return self._create_repo()
            if self.command == "POST" and path == "/api/validate-yaml":
                return self._validate_yaml()
            if self.command == "GET" and path == "/api/models":
                return self._list_models(parse_qs(urlsplit(self.path).query))
            if match := _API.match(path):
                repo_id, op, rev = match["repo"], match["op"], unquote(match["rev"] or "main")
                handler = {("GET", None): self._repo_info, ("GET", "revision"): self._repo_info,
                           ("GET", "tree"): self._tree, ("POST", "preupload"): self._preupload,
                           ("POST", "commit"): self._commit}.get((self.command, op))
                if handler is not None and not match["rest"]:
                    return handler(repo_id, rev)
            if self.command in ("GET", "HEAD") and (match := _RESOLVE.match(path)):
                return self._resolve(match["repo"], unquote(match["rev"]), unquote(match["file"]))
            self._error(404, f"{self.command} {path} is not implemented by the test Hub")

    do_GET = do_HEAD = do_POST = _route

    # --------------------------------------------------------------- endpoints
    def _create_repo(self) -> None:
        payload = json.loads(self._body())
        if payload.get("type", "model") != "model":
            return self._error(400, "the test Hub only hosts model repos")
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"{self.server.url}/{repo_id}"
        if repo_id in self.server.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        self.server.state.repos[repo_id] = Repo(repo_id)
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        content = json.loads(self._body())["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match[1]) if match else {}
            if not isinstance(metadata, dict):
                raise ValueError("the metadata must be a YAML mapping")
        except (yaml.YAMLError, ValueError) as err:
            return self._json(400, {"errors": [{"message": str(err)}]})
        self._json(200, {"errors": [], "warnings": []})

    def _list_models(self, query: dict[str, list[str]]) -> None:
        wanted = set(query.get("filter", []))
        with_card = query.get("cardData", ["false"])[0].lower() == "true" or "full" in query
        listing = []
        for repo_id, repo in sorted(self.server.state.repos.items()):
            card = card_metadata(repo.files("main").get("README.md", b""))
            bases = card.get("base_model") or []
            tags = [*(card.get("tags") or []), *([card["library_name"]] if card.get("library_name") else []),
                    *(f"base_model:{base}" for base in ([bases] if isinstance(bases, str) else bases))]
            if wanted <= set(tags):
                listing.append({"id": repo_id, "modelId": repo_id, "sha": repo.head, "tags": tags, "downloads": 0,
                                "likes": 0, "private": False, **({"cardData": card} if with_card else {})})
        self._json(200, listing)

    def _repo_info(self, repo_id: str, rev: str) -> None:
        if (repo := self._repo(repo_id)) is None or (files := self._files(repo, rev)) is None:
            return
        sha = repo.head if rev == "main" else rev
        self._json(200, {"id": repo_id, "sha": sha, "private": False,
                         "siblings": [{"rfilename": name} for name in sorted(files)]})

    def _tree(self, repo_id: str, rev: str) -> None:
        if (repo := self._repo(repo_id)) is None or (files := self._files(repo, rev)) is None:
            return
        self._json(200, [{"type": "file", "path": name, "size": len(data), "oid": git_blob_sha(data)}
                         for name, data in sorted(files.items())])

    def _preupload(self, repo_id: str, rev: str) -> None:
        if (repo := self._repo(repo_id)) is None or (files := self._files(repo, rev)) is None:
            return
        entries = json.loads(self._body())["files"]
        self._json(200, {"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": git_blob_sha(files[f["path"]]) if f["path"] in files else None}
            for f in entries
        ]})

    def _commit(self, repo_id: str, rev: str) -> None:
        if (repo := self._repo(repo_id)) is None:
            return
        if rev != "main":
            return self._error(404, f"the test Hub only commits to main, not {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        files = dict(repo.files("main"))
        summary, sent = "", []
        for item in lines:
            key, value = item["key"], item["value"]
            sent += [value["path"]] if key != "header" else []
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file":
                content = value["content"]
                is_b64 = value.get("encoding") == "base64"
                files[value["path"]] = base64.b64decode(content) if is_b64 else content.encode()
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:
                return self._error(400, f"the test Hub does not support {key!r} commit operations")
        sha = repo.commit(files, summary)
        self.server.state.commits.append((repo_id, sorted(sent)))
        commit_url = f"{self.server.url}/{repo_id}/commit/{sha}"
        self._json(200, {"success": True, "commitOid": sha, "commitUrl": commit_url})

    def _resolve(self, repo_id: str, rev: str, filename: str) -> None:
        if (repo := self._repo(repo_id)) is None or (files := self._files(repo, rev)) is None:
            return
        sha = repo.head if rev == "main" else rev
        if filename not in files:
            return self._error(404, f"Entry not found: {filename}", "EntryNotFound", {"X-Repo-Commit": sha})
        data = files[filename]
        self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha(data)}"'},
                   content_type="application/octet-stream")


class HubServer(ThreadingHTTPServer):
    """The fake Hub, served from a daemon thread on 127.0.0.1 and a free port. Use as a context manager."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.state = HubState()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), name="test-hub", daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
