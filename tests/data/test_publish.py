"""``dgqa publish`` against a local stand-in for the Hub endpoint.

This is the only part of dgqa whose tests cannot talk to the real Hub here. The stand-in is an
``http.server`` on 127.0.0.1 (random port) that implements just the endpoints huggingface_hub calls
for ``create_repo``, ``list_repo_refs``, ``create_branch``, ``list_repo_tree``, ``create_commit``
(validate-yaml, preupload, the LFS batch / PUT / verify protocol, the NDJSON commit) and
``create_tag``, keeps the repos in memory and records every request. The publishing runs in a
subprocess whose ``HF_ENDPOINT`` points at the stand-in (huggingface_hub reads it at import), with
``HF_HUB_OFFLINE`` unset, a fake ``HF_TOKEN``, and Xet turned off (``HF_HUB_DISABLE_XET=1``): the
stand-in speaks the LFS protocol only, so parquet/PNG files go up as LFS and small text files inline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from dgqa_data.build import build_corpus
from dgqa_data.publish import PublishError, compare, file_oids, local_files, publish
from dgqa_data.selection import paper_selection
from dgqa_data.subsets import select_subset
from tests.fixtures.official import make_kadid10k

REPO_ROOT = Path(__file__).resolve().parents[2]
LFS_SUFFIXES = (".parquet", ".png")  # what the Hub's default .gitattributes sends through LFS
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class NotHandled(Exception):
    """A request the stand-in does not implement."""


class StandInHub:
    """In-memory dataset repos behind the Hub's HTTP API, recording every request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.repos: dict[str, dict] = {}
        self.commits: dict[str, dict[str, dict]] = {}  # sha -> {path: entry}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.unhandled: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- repo state -----------------------------------------------------------------------------
    def _commit(self, repo: dict, parent: str | None, files: dict[str, dict], summary: str) -> str:
        sha = hashlib.sha1(
            json.dumps([parent, summary, sorted((p, e["oid"]) for p, e in files.items())]).encode()
        )
        oid = sha.hexdigest()
        self.commits[oid] = files
        repo["log"].append(oid)
        return oid

    def _resolve(self, repo: dict, rev: str) -> str | None:
        if rev in repo["branches"]:
            return repo["branches"][rev]
        return rev if rev in self.commits else None

    def files_at(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        """Contents of every file of a repo at a revision (LFS resolved)."""
        repo = self.repos[repo_id]
        files = self.commits[self._resolve(repo, rev)]
        return {p: e["content"] if e["lfs"] is None else self.lfs[e["lfs"]] for p, e in files.items()}

    # -- HTTP ------------------------------------------------------------------------------------
    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _dispatch(self, method: str) -> None:
                url = urlsplit(self.path)
                body = self._body() if method in ("POST", "PUT") else b""
                record = {
                    "method": method,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "auth": self.headers.get("Authorization"),
                }
                ctype = self.headers.get("Content-Type", "")
                if "ndjson" in ctype:
                    record["ndjson"] = [json.loads(line) for line in body.splitlines() if line.strip()]
                elif "json" in ctype and body:
                    record["json"] = json.loads(body)
                else:
                    record["bytes"] = len(body)
                with hub.lock:
                    hub.requests.append(record)
                    try:
                        status, payload, headers = hub.route(method, url.path, record, body)
                    except NotHandled:
                        status, payload, headers = 404, {"error": "not handled"}, {}
                        hub.unhandled.append(f"{method} {url.path}")
                    except Exception as err:  # a bug in the stand-in: fail the test loudly
                        status, payload, headers = 500, {"error": repr(err)}, {}
                        hub.unhandled.append(f"{method} {url.path}: {err!r}")
                self._send(status, payload, headers)

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def do_PUT(self):
                self._dispatch("PUT")

        return Handler

    def route(self, method: str, path: str, rec: dict, body: bytes):
        """(status, json payload, headers) for one request; :class:`NotHandled` if not implemented."""
        not_found = (404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        if path.startswith("/__mark__/"):
            rec["mark"] = path.rsplit("/", 1)[1]
            return 200, {}, {}
        if method == "POST" and path == "/api/repos/create":
            p = rec["json"]
            repo_id = f"{p['organization']}/{p['name']}"
            url = f"{self.url}/datasets/{repo_id}"
            if repo_id in self.repos:
                return 409, {"error": "You already created this dataset repo", "url": url}, {}
            repo = {
                "type": p["type"],
                "private": p.get("visibility") == "private",
                "branches": {},
                "tags": {},
            }
            repo["log"] = []
            attrs = {
                "content": GITATTRIBUTES,
                "lfs": None,
                "oid": git_blob(GITATTRIBUTES),
                "size": len(GITATTRIBUTES),
            }
            init = {".gitattributes": attrs}
            repo["branches"]["main"] = self._commit(repo, None, init, "initial commit")
            self.repos[repo_id] = repo
            return 200, {"url": url, "name": repo_id, "id": secrets.token_hex(12)}, {}
        if method == "POST" and path == "/api/validate-yaml":
            meta = yaml.safe_load(rec["json"]["content"].split("---")[1])
            ok = isinstance(meta, dict) and "configs" in meta
            return (
                (200 if ok else 400),
                {"errors": [] if ok else [{"message": "no configs"}], "warnings": []},
                {},
            )
        if method == "PUT" and path.startswith("/__lfs/"):
            oid = path.split("/")[2]
            if hashlib.sha256(body).hexdigest() != oid:
                return 400, {"error": "sha256 mismatch"}, {}
            self.lfs[oid] = body
            return 200, {}, {}
        if method == "POST" and path.startswith("/__lfs/") and path.endswith("/verify"):
            return (200 if rec["json"]["oid"] in self.lfs else 404), {}, {}
        if (
            method == "POST"
            and path.startswith("/datasets/")
            and path.endswith(".git/info/lfs/objects/batch")
        ):
            repo_id = path[len("/datasets/") : -len(".git/info/lfs/objects/batch")]
            if repo_id not in self.repos:
                return not_found
            objects = []
            for obj in rec["json"]["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in self.lfs:
                    href = f"{self.url}/__lfs/{obj['oid']}"
                    entry["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
                objects.append(entry)
            return 200, {"transfer": "basic", "objects": objects}, {}

        parts = path.split("/")  # "", "api", "datasets", org, name, endpoint, rest...
        if parts[:3] != ["", "api", "datasets"] or len(parts) < 6:
            raise NotHandled(path)
        repo_id, endpoint, rest = f"{parts[3]}/{parts[4]}", parts[5], [unquote(p) for p in parts[6:]]
        repo = self.repos.get(repo_id)
        if repo is None:
            return not_found
        if method == "GET" and endpoint == "refs":
            ref = lambda kind, n, c: {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c}  # noqa: E731
            return (
                200,
                {
                    "branches": [ref("heads", n, c) for n, c in repo["branches"].items()],
                    "tags": [ref("tags", n, c) for n, c in repo["tags"].items()],
                    "converts": [],
                },
                {},
            )
        if method == "POST" and endpoint == "branch":
            if rest[0] in repo["branches"]:
                return 409, {"error": "branch exists"}, {}
            start = (rec.get("json") or {}).get("startingPoint") or "main"
            repo["branches"][rest[0]] = self._resolve(repo, start)
            return 200, {}, {}
        if method == "GET" and endpoint == "tree":
            sha = self._resolve(repo, rest[0])
            if sha is None:
                return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
            out, folders = [], set()
            for p, e in sorted(self.commits[sha].items()):
                for i in range(1, len(p.split("/"))):
                    folders.add("/".join(p.split("/")[:i]))
                item = {"type": "file", "path": p, "oid": e["oid"], "size": e["size"]}
                if e["lfs"]:
                    pointer = lfs_pointer(e["lfs"], e["size"])
                    item["lfs"] = {"oid": e["lfs"], "size": e["size"], "pointerSize": len(pointer)}
                out.append(item)
            out += [{"type": "directory", "path": f, "oid": git_blob(f.encode())} for f in sorted(folders)]
            return 200, out, {}
        if method == "POST" and endpoint == "preupload":
            current = self.commits[self._resolve(repo, rest[0])]
            files = []
            for f in rec["json"]["files"]:
                lfs = f["path"].endswith(LFS_SUFFIXES)
                old = current.get(f["path"])
                oid = None if old is None else (old["lfs"] if lfs else old["oid"])
                mode = "lfs" if lfs else "regular"
                files.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            return 200, {"files": files}, {}
        if method == "POST" and endpoint == "commit":
            branch = rest[0]
            lines = rec["ndjson"]
            header = lines[0]["value"]
            head = repo["branches"][branch]
            if header.get("parentCommit") not in (None, head):
                return 412, {"error": "parent commit is not the head"}, {}
            files = dict(self.commits[head])
            for line in lines[1:]:
                v = line["value"]
                if line["key"] == "file":
                    data = base64.b64decode(v["content"])
                    files[v["path"]] = {
                        "content": data,
                        "lfs": None,
                        "oid": git_blob(data),
                        "size": len(data),
                    }
                elif line["key"] == "lfsFile":
                    if v["oid"] not in self.lfs:
                        return 400, {"error": f"LFS object {v['oid']} was not uploaded"}, {}
                    pointer = lfs_pointer(v["oid"], v["size"])
                    files[v["path"]] = {
                        "content": None,
                        "lfs": v["oid"],
                        "oid": git_blob(pointer),
                        "size": v["size"],
                    }
                elif line["key"] == "deletedFile":
                    del files[v["path"]]
                else:
                    raise NotHandled(line["key"])
            oid = self._commit(repo, head, files, header["summary"])
            repo["branches"][branch] = oid
            url = f"{self.url}/datasets/{repo_id}/commit/{oid}"
            return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}, {}
        if method == "POST" and endpoint == "tag":
            tag = rec["json"]["tag"]
            if tag in repo["tags"]:
                return 409, {"error": "tag exists"}, {}
            repo["tags"][tag] = self._resolve(repo, rest[0])
            return 200, {}, {}
        raise NotHandled(path)

    def steps(self) -> dict[str, list[dict]]:
        """Recorded requests grouped by the step marker that preceded them."""
        out: dict[str, list[dict]] = {}
        current = None
        for rec in self.requests:
            if "mark" in rec:
                current = rec["mark"]
                out[current] = []
            elif current is not None:
                out[current].append(rec)
        return out


@pytest.fixture
def hub():
    stand_in = StandInHub()
    stand_in.thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """A small selected subset (parquet + PNG + README + JSON) to publish."""
    tmp = tmp_path_factory.mktemp("publish")
    root = make_kadid10k(tmp / "kadid10k-download", n_refs=1, types=(1, 3, 10), levels=(1, 2))
    build_corpus("kadid10k", root, tmp / "hub" / "dgqa" / "kadid10k", progress=False)
    out = select_subset(tmp / "hub" / "dgqa" / "kadid10k", paper_selection("livec")).out
    (out / "notes.txt").write_text("release notes\n")
    return out


DRIVER = """
import json, sys, traceback, urllib.request
from pathlib import Path
from dgqa_train.cli import main
endpoint = sys.argv[1]
for step in json.loads(sys.argv[2]):
    urllib.request.urlopen(endpoint + "/__mark__/" + step["name"]).read()
    for path, text in step.get("write", {}).items():
        Path(path).write_text(text)
    for path in step.get("remove", []):
        Path(path).unlink()
    print("=== step", step["name"], flush=True)
    try:
        rc = main(step["argv"])
    except SystemExit as err:
        rc = err.code
    except Exception:
        traceback.print_exc()
        rc = "exception"
    print("=== rc", step["name"], rc, flush=True)
    sys.stderr.flush()
"""


def run_steps(hub: StandInHub, steps: list[dict], token: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HTTP_PROXY", "HTTPS_PROXY"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN=token,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.pop("http_proxy", None)
    env.pop("https_proxy", None)
    return subprocess.run(
        [sys.executable, "-c", DRIVER, hub.url, json.dumps(steps)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def step_output(stdout: str, name: str) -> tuple[str, str]:
    """(printed text, return code) of one driver step."""
    body = stdout.split(f"=== step {name}\n", 1)[1]
    text, tail = body.split(f"=== rc {name} ", 1)
    return text, tail.split("\n", 1)[0]


def posts(reqs: list[dict]) -> list[dict]:
    return [r for r in reqs if r["method"] != "GET"]


def test_publish_round_trip_against_stand_in(hub, dataset_dir, tmp_path):
    folder = dataset_dir
    token = "hf_fakeTOKEN" + secrets.token_hex(12)
    repo_id = "dgqa/kadid10k-sel-livec"
    base = ["publish", str(folder), "--repo-id", repo_id]
    steps = [
        {"name": "dry-new", "argv": [*base, "--dry-run", "--tag", "v1.0"]},
        {"name": "first", "argv": [*base, "--private", "--tag", "v1.0"]},
        {"name": "again", "argv": [*base, "--private", "--tag", "v1.0"]},
        {
            "name": "dry-change",
            "argv": [*base, "--dry-run"],
            "write": {str(folder / "subset.json"): '{"edited": true}\n'},
            "remove": [str(folder / "notes.txt")],
        },
        {"name": "update", "argv": [*base, "--tag", "v1.1"]},
        {"name": "conflict", "argv": [*base, "--tag", "v1.0"]},
        {"name": "branch", "argv": [*base, "--revision", "dev"]},
    ]
    local_before = {p: f.read_bytes() for p, f in local_files(folder).items()}
    proc = run_steps(hub, steps, token, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert token not in out  # the token never appears in output or logs
    assert not hub.unhandled, hub.unhandled
    reqs = hub.steps()
    api_reqs = [r for rs in reqs.values() for r in rs if r["path"].startswith(("/api/", "/datasets/"))]
    assert all(r["auth"] == f"Bearer {token}" for r in api_reqs)

    # dry run before the repo exists: reads only, everything "new"
    text, rc = step_output(proc.stdout, "dry-new")
    assert rc == "0" and "does not exist yet" in text and "tag v1.0: would create" in text
    assert not posts(reqs["dry-new"])

    # first publish: dataset repo created private, one commit with exactly the folder's files, tag
    text, rc = step_output(proc.stdout, "first")
    assert rc == "0", text
    create = [r for r in reqs["first"] if r["path"] == "/api/repos/create"]
    assert create[0]["json"] == {
        "name": "kadid10k-sel-livec",
        "organization": "dgqa",
        "type": "dataset",
        "visibility": "private",
    }
    assert hub.repos[repo_id]["private"] is True
    commits = [r for r in reqs["first"] if r["path"].endswith("/commit/main")]
    assert len(commits) == 1
    ops = commits[0]["ndjson"][1:]
    assert {op["value"]["path"] for op in ops} == set(local_before)
    lfs_paths = {op["value"]["path"] for op in ops if op["key"] == "lfsFile"}
    assert lfs_paths == {p for p in local_before if p.endswith((".parquet", ".png"))} and lfs_paths
    assert [r for r in reqs["first"] if r["method"] == "PUT"]  # LFS content went up
    first_head = hub.repos[repo_id]["log"][1]  # initial commit, then this one
    assert commits[0]["ndjson"][0]["value"]["parentCommit"] == hub.repos[repo_id]["log"][0]
    files = hub.files_at(repo_id, first_head)
    assert files == {**local_before, ".gitattributes": GITATTRIBUTES}  # byte-exact
    tag_reqs = [r for r in reqs["first"] if "/tag/" in r["path"]]
    assert len(tag_reqs) == 1 and tag_reqs[0]["json"]["tag"] == "v1.0"
    assert hub.repos[repo_id]["tags"]["v1.0"] == first_head

    # identical publish: no commit, no upload, tag left alone
    text, rc = step_output(proc.stdout, "again")
    assert rc == "0" and "nothing changed: no commit sent" in text and "already on this head" in text
    assert [r["path"] for r in posts(reqs["again"])] == ["/api/repos/create"]  # no commit, no tag

    # dry run after an edit and a removal: lists changed / deleted / unchanged, sends nothing
    text, rc = step_output(proc.stdout, "dry-change")
    assert rc == "0"
    assert "changed" in text and "subset.json" in text and "deleted" in text and "notes.txt" in text
    assert "unchanged" in text and "1 changed" in text and "1 deleted" in text
    assert not posts(reqs["dry-change"])

    # update: only the changed file + the deletion, planned against the previous head
    text, rc = step_output(proc.stdout, "update")
    assert rc == "0", text
    (commit,) = [r for r in reqs["update"] if r["path"].endswith("/commit/main")]
    assert commit["ndjson"][0]["value"]["parentCommit"] == first_head
    assert [(op["key"], op["value"]["path"]) for op in commit["ndjson"][1:]] == [
        ("file", "subset.json"),
        ("deletedFile", "notes.txt"),
    ]
    assert not [r for r in reqs["update"] if r["method"] == "PUT"]
    assert "notes.txt" not in hub.files_at(repo_id)
    assert len(hub.repos[repo_id]["log"]) == 3  # initial, first, update: nothing else committed
    assert hub.repos[repo_id]["tags"]["v1.1"] == hub.repos[repo_id]["log"][2]

    # a tag that already points elsewhere is an error, not moved
    text, rc = step_output(proc.stdout, "conflict")
    assert rc == "2" and "tag v1.0 already points at" in proc.stderr
    assert hub.repos[repo_id]["tags"]["v1.0"] == first_head

    # a new branch is created from main; nothing differs, so no commit
    text, rc = step_output(proc.stdout, "branch")
    assert rc == "0" and "nothing changed" in text
    assert hub.repos[repo_id]["branches"]["dev"] == hub.repos[repo_id]["branches"]["main"]
    assert not [r for r in reqs["branch"] if "/commit/" in r["path"]]


def test_file_oids_match_huggingface_hub(tmp_path):
    from huggingface_hub.utils.sha import git_hash

    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(3000))
    blob, sha256 = file_oids(f, chunk=1000)
    assert blob == git_hash(f.read_bytes())
    assert sha256 == hashlib.sha256(f.read_bytes()).hexdigest()


def test_compare_regular_lfs_and_stale(tmp_path):
    from huggingface_hub.hf_api import RepoFile

    (tmp_path / "a.txt").write_text("same")
    (tmp_path / "b.parquet").write_bytes(b"new content")
    (tmp_path / "c.txt").write_text("fresh")
    local = {p.name: p for p in sorted(tmp_path.iterdir())}
    remote = {
        "a.txt": RepoFile(path="a.txt", size=4, oid=git_blob(b"same")),
        "b.parquet": RepoFile(
            path="b.parquet",
            size=3,
            oid="x",
            lfs={"oid": hashlib.sha256(b"old").hexdigest(), "size": 3, "pointerSize": 1},
        ),
        "gone.txt": RepoFile(path="gone.txt", size=1, oid="y"),
        ".gitattributes": RepoFile(path=".gitattributes", size=1, oid="z"),
    }
    plan = {f.path: f.status for f in compare(local, remote)}
    assert plan == {"a.txt": "unchanged", "b.parquet": "changed", "c.txt": "new", "gone.txt": "deleted"}


def test_publish_without_token_fails_before_any_request(dataset_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)

    class NoNetwork:
        def __getattr__(self, name):
            raise AssertionError(f"HfApi.{name} called")

    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish(dataset_dir, "dgqa/x", api=NoNetwork())
    with pytest.raises(PublishError, match="ORG/NAME"):
        publish(dataset_dir, "x", token="t", api=NoNetwork())


def test_token_env_names_a_variable(monkeypatch):
    from dgqa_data.publish import redact, resolve_token

    monkeypatch.setenv("MY_HUB_TOKEN", "hf_secret123")
    assert resolve_token("MY_HUB_TOKEN") == "hf_secret123"
    monkeypatch.delenv("MY_HUB_TOKEN")
    with pytest.raises(PublishError, match="MY_HUB_TOKEN"):
        resolve_token("MY_HUB_TOKEN")
    assert redact("bad token hf_secret123 here", "hf_secret123") == "bad token *** here"
