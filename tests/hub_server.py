"""A small in-memory server that speaks enough of the Hugging Face Hub's HTTP API for the real clients
(huggingface_hub, transformers, datasets) to push and load repos end to end, offline.

Written by hand because no PyPI package provides a Hub server that accepts uploads (olah is a read-only mirror; hf-local-hub ships no server in its wheel).
Covers: create_repo, whoami, model/dataset info, preupload, commit (NDJSON), the LFS batch / PUT / verify flow,
tree, paths-info, refs, and resolve (HEAD/GET with X-Repo-Commit, ETag, Content-Length, Range). Standard library
only; no git: a commit is a snapshot {path: bytes} with a made-up sha1.

Use from a test (clients must run in a subprocess: huggingface_hub reads HF_ENDPOINT at import time):

    with HubServer() as hub:
        env = {**os.environ, **hub.client_env()}    # HF_ENDPOINT, HF_TOKEN, HF_HUB_DISABLE_XET=1, ...
        subprocess.run([...], env=env)
        hub.fail_next(2, status=500)                # fault injection: the next 2 requests answer 500
        hub.fail_next(1, hang=30, match="/commit/") # or hang 30 s before answering, only on matching paths

or standalone: `python tests/hub_server.py --port 8765` (prints the endpoint).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".parquet", ".arrow", ".png", ".model", ".zip", ".gz")
LFS_MIN_SIZE = 1 << 20  # larger files go through LFS whatever their name, as on the Hub
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    def entry(self, path: str) -> dict:
        """The tree / paths-info JSON of this file."""
        info = {"type": "file", "path": path, "size": len(self.content), "oid": git_blob_oid(self.content)}
        if self.lfs:
            info["lfs"] = {"oid": hashlib.sha256(self.content).hexdigest(), "size": len(self.content),
                           "pointerSize": 134}
        return info


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    commits: list[tuple[str, dict[str, StoredFile]]] = field(default_factory=list)  # (oid, files), oldest first

    def snapshot(self, revision: str) -> tuple[str, dict[str, StoredFile]] | None:
        if revision in ("main", "HEAD") or revision == "refs/heads/main":
            return self.commits[-1]
        for oid, files in self.commits:
            if oid == revision:
                return oid, files
        return None


@dataclass
class Fault:
    count: int
    status: int = 500
    hang: float = 0.0
    match: str = ""


class HubState:
    """Repos, LFS objects and injected faults, shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.match in path:
                    fault.count -= 1
                    return fault
        return None


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/0.1"
    state: HubState  # set on the subclass made per server

    # ------------------------------------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args) -> None:  # quiet; requests are recorded in state.requests
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def _json(self, status: int, data, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None, head_only: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers, head_only=head_only)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self.state.requests.append((method, path))
        body = self._body() if method in ("POST", "PUT") else b""
        fault = self.state.take_fault(path)
        if fault is not None:
            time.sleep(fault.hang)
            if fault.status:
                try:
                    return self._error(fault.status, f"injected fault ({fault.status})", head_only=method == "HEAD")
                except (BrokenPipeError, ConnectionResetError):
                    return None  # the client gave up waiting (a hang longer than its timeout)
        for pattern, handler_name, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match and method in methods:
                groups = {k: v for k, v in match.groupdict().items() if v is not None}
                try:
                    return getattr(self, handler_name)(method, body, query, **groups)
                except (BrokenPipeError, ConnectionResetError):
                    return None
                except Exception as err:  # a server bug: answer 500 (with the reason) rather than hang up
                    return self._error(500, f"local hub: {type(err).__name__}: {err}", head_only=method == "HEAD")
        return self._error(404, f"no route for {method} {path}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # ----------------------------------------------------------------------------------------------- repos
    def _repo(self, repo_type: str, repo_id: str) -> Repo | None:
        return self.state.repos.get((repo_type, unquote(repo_id)))

    def whoami(self, method, body, query) -> None:
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        self._json(200, {"type": "user", "name": "user", "fullname": "Local User", "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})

    def validate_yaml(self, method, body, query) -> None:
        """The README's YAML front matter must parse to a mapping; model-index results need metrics."""
        import yaml

        content = json.loads(body or b"{}").get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
        errors = []
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            metadata, errors = None, [{"message": f"YAML does not parse: {err}"}]
        if metadata is not None and not isinstance(metadata, dict):
            errors.append({"message": "metadata must be a mapping"})
        for entry in (metadata or {}).get("model-index", []) if isinstance(metadata, dict) else []:
            for result in entry.get("results", []):
                if not result.get("metrics") or "task" not in result or "dataset" not in result:
                    errors.append({"message": "model-index: each result needs task, dataset and metrics"})
        warnings = [] if match else [{"message": "empty or missing yaml metadata in repo card"}]
        self._json(400 if errors else 200, {"errors": errors, "warnings": warnings})

    def create_repo(self, method, body, query) -> None:
        if not self._authorized():
            return self._error(401, "You must be authenticated to create a repo")
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = {"url": f"{self._base()}/{TYPE_PREFIX[repo_type]}{repo_id}", "name": repo_id, "id": repo_id}
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                return self._json(409, {**url, "error": "You already created this repo"},
                                  {"X-Error-Message": "You already created this repo"})
            repo = Repo(repo_type, repo_id, private=bool(payload.get("private")))
            repo.commits.append((hashlib.sha1(f"init {repo_type} {repo_id}".encode()).hexdigest(), {}))
            self.state.repos[(repo_type, repo_id)] = repo
        self._json(200, url)

    def repo_info(self, method, body, query, repo_type, repo_id, revision="main") -> None:
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        snap = repo.snapshot(unquote(revision))
        if snap is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        oid, files = snap
        siblings = []
        for path, stored in sorted(files.items()):
            entry = stored.entry(path)
            sibling = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
            if "lfs" in entry:  # siblings name the hash "sha256" where tree entries say "oid"
                sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["size"], "pointerSize": 134}
            siblings.append(sibling)
        self._json(200, {"_id": oid[:24], "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": oid,
                         "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                         "tags": [], "siblings": siblings, "lastModified": "2026-01-01T00:00:00.000Z",
                         "createdAt": "2026-01-01T00:00:00.000Z", "usedStorage": sum(len(f.content) for f in
                                                                                      files.values())})

    def refs(self, method, body, query, repo_type, repo_id) -> None:
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        self._json(200, {"branches": [{"name": "main", "ref": "refs/heads/main",
                                       "targetCommit": repo.commits[-1][0]}], "tags": [], "converts": []})

    # ------------------------------------------------------------------------------------------------ upload
    def preupload(self, method, body, query, repo_type, repo_id, revision) -> None:
        if not self._authorized():
            return self._error(401, "Unauthorized")
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        files = []
        for item in json.loads(body)["files"]:
            lfs = item["size"] >= LFS_MIN_SIZE or item["path"].lower().endswith(LFS_SUFFIXES)
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._json(200, {"files": files, "commitOid": repo.commits[-1][0]})

    def lfs_batch(self, method, body, query, repo_id, prefix="") -> None:
        if not self._authorized():
            return self._error(401, "Unauthorized")
        objects = []
        for obj in json.loads(body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs_objects:  # already stored: no actions, the client skips it
                entry["actions"] = {
                    "upload": {"href": f"{self._base()}/_lfs/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{self._base()}/_lfs/{obj['oid']}/verify", "header": {}},
                }
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, method, body, query, oid) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "sha256 of the uploaded content does not match the object id")
        with self.state.lock:
            self.state.lfs_objects[oid] = body
        self._send(200)

    def lfs_verify(self, method, body, query, oid) -> None:
        stored = self.state.lfs_objects.get(oid)
        expected = json.loads(body or b"{}").get("size")
        if stored is None or (expected is not None and len(stored) != expected):
            return self._error(404, f"LFS object {oid} not found")
        self._json(200, {"success": True})

    def commit(self, method, body, query, repo_type, repo_id, revision) -> None:
        if not self._authorized():
            return self._error(401, "Unauthorized")
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self.state.lock:
            files = dict(repo.commits[-1][1])
            summary = ""
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    summary = value.get("summary", "")
                elif key == "file":
                    content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                        value["content"].encode()
                    files[value["path"]] = StoredFile(content, lfs=False)
                elif key == "lfsFile":
                    content = self.state.lfs_objects.get(value["oid"])
                    if content is None:
                        return self._error(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    files[value["path"]] = StoredFile(content, lfs=True)
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(prefix)}
            digest = hashlib.sha1(repo.commits[-1][0].encode() + summary.encode())
            for path, stored in sorted(files.items()):
                digest.update(path.encode() + git_blob_oid(stored.content).encode())
            oid = digest.hexdigest()
            repo.commits.append((oid, files))
        url = f"{self._base()}/{TYPE_PREFIX[repo_type]}{repo.repo_id}/commit/{oid}"
        self._json(200, {"commitUrl": url, "commitOid": oid,
                         "pullRequestUrl": None, "success": True})

    # -------------------------------------------------------------------------------------------------- read
    def _entries(self, files: dict[str, StoredFile]) -> dict[str, dict]:
        """Every file and folder of a snapshot as tree entries, by path."""
        entries: dict[str, dict] = {}
        for path, stored in files.items():
            entries[path] = stored.entry(path)
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                entries.setdefault(folder, {"type": "directory", "path": folder, "size": 0,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})
        return entries

    def tree(self, method, body, query, repo_type, repo_id, revision, path="") -> None:
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        snap = repo.snapshot(unquote(revision))
        if snap is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        entries = self._entries(snap[1])
        folder = unquote(path or "").strip("/")
        if folder and entries.get(folder, {}).get("type") != "directory":
            return self._error(404, f"{folder} does not exist on main", "EntryNotFound")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = folder + "/" if folder else ""
        listed = [e for p, e in sorted(entries.items()) if p.startswith(prefix) and
                  (recursive or "/" not in p[len(prefix):])]
        self._json(200, listed)

    def paths_info(self, method, body, query, repo_type, repo_id, revision) -> None:
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        snap = repo.snapshot(unquote(revision))
        if snap is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        entries = self._entries(snap[1])
        self._json(200, [entries[p.strip("/")] for p in paths if p.strip("/") in entries])

    def resolve(self, method, body, query, repo_id, revision, path, prefix="") -> None:
        head = method == "HEAD"
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound", head_only=head)
        snap = repo.snapshot(unquote(revision))
        if snap is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head_only=head)
        oid, files = snap
        stored = files.get(unquote(path))
        if stored is None:
            return self._error(404, "Entry not found", "EntryNotFound", head_only=head)
        entry = stored.entry(unquote(path))
        etag = entry["lfs"]["oid"] if stored.lfs else entry["oid"]
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": oid, "ETag": f'"{etag}"',
                   "Accept-Ranges": "bytes"}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(stored.content))})
        content, status = stored.content, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and not head:
            size = len(content)
            start = int(match.group(1)) if match.group(1) else max(0, size - int(match.group(2) or 0))
            end = int(match.group(2)) if match.group(1) and match.group(2) else size - 1
            end = min(end, size - 1)
            if start >= size:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            content, status = content[start : end + 1], 206
        headers["Content-Length"] = str(len(content))
        self._send(status, content, headers, head_only=head)


_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
_TYPE = r"(?P<repo_type>models|datasets|spaces)"
_TYPE_ONE = {"models": "model", "datasets": "dataset", "spaces": "space"}
ROUTES = [
    (re.compile(r"/api/whoami-v2"), "whoami", ("GET",)),
    (re.compile(r"/api/repos/create"), "create_repo", ("POST",)),
    (re.compile(r"/api/validate-yaml"), "validate_yaml", ("POST",)),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/preupload/(?P<revision>[^/]+)"), "preupload", ("POST",)),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/commit/(?P<revision>[^/]+)"), "commit", ("POST",)),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/paths-info/(?P<revision>[^/]+)"), "paths_info", ("POST",)),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?"), "tree", ("GET",)),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/refs"), "refs", ("GET",)),
    (re.compile(rf"/api/{_TYPE}/{_REPO}(?:/revision/(?P<revision>[^/]+))?"), "repo_info", ("GET",)),
    (re.compile(r"/(?P<prefix>datasets/|spaces/)?(?P<repo_id>[^/]+/[^/]+)\.git/info/lfs/objects/batch"),
     "lfs_batch", ("POST",)),
    (re.compile(r"/_lfs/(?P<oid>[0-9a-f]{64})"), "lfs_put", ("PUT",)),
    (re.compile(r"/_lfs/(?P<oid>[0-9a-f]{64})/verify"), "lfs_verify", ("POST",)),
    (re.compile(r"/(?P<prefix>datasets/|spaces/)?(?P<repo_id>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)"),
     "resolve", ("GET", "HEAD")),
]


def _with_repo_type(name: str):
    """Route handlers take repo_type as "model"/"dataset"; the API paths say "models"/"datasets"."""
    method = getattr(HubHandler, name)

    def wrapper(self, http_method, body, query, repo_type, **kwargs):
        return method(self, http_method, body, query, _TYPE_ONE[repo_type], **kwargs)

    return wrapper


for _name in ("preupload", "commit", "paths_info", "tree", "refs", "repo_info"):
    setattr(HubHandler, _name, _with_repo_type(_name))


class HubServer:
    """The server on 127.0.0.1 (a free port), in a background thread; a context manager."""

    def __init__(self, port: int = 0) -> None:
        self.state = HubState()
        handler = type("BoundHubHandler", (HubHandler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def client_env(self, token: str = "hf_local_test_token") -> dict[str, str]:
        """Environment for a client subprocess (set before it imports huggingface_hub)."""
        return {"HF_ENDPOINT": self.endpoint, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "30"}

    def fail_next(self, count: int, status: int = 500, hang: float = 0.0, match: str = "") -> None:
        """Fault injection: the next `count` requests whose path contains `match` wait `hang` seconds, then answer
        `status` (an error), or, with status=0, are served normally after the wait."""
        with self.state.lock:
            self.state.faults.append(Fault(count, status, hang, match))

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        """The files at the head of a repo's main branch."""
        return {p: f.content for p, f in self.state.repos[(repo_type, repo_id)].commits[-1][1].items()}

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    port = parser.parse_args().port
    server = HubServer(port).start()
    print(f"local hub at {server.endpoint}; clients: HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()
