"""``dgqa publish`` against a stand-in for ``huggingface_hub.HfApi``.

The stand-in (:class:`FakeHub`) implements only the methods publish calls (``create_repo``,
``list_repo_refs``, ``create_branch``, ``list_repo_tree``, ``upload_folder``, ``create_tag``), keeps
the repos in memory and records every call with its arguments, so the tests check the exact requests.
Its ``upload_folder`` does what the real one promises: it picks the files with huggingface_hub's own
``filter_repo_objects`` (the ignore patterns plus the library's defaults), deletes the remote files
matching ``delete_patterns`` except ``.gitattributes``, refuses a stale ``parent_commit`` and sends no
commit when nothing differs. Nothing here touches the network (``HF_HUB_OFFLINE=1``, tests/conftest.py).
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.hf_api import CommitInfo, GitRefInfo, GitRefs, RepoFile
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from dgqa_data import __version__
from dgqa_data.build import build_corpus
from dgqa_data.cli import main
from dgqa_data.publish import PublishError, _human, local_files, publish, redact, resolve_token
from dgqa_data.selection import paper_selection
from dgqa_data.subsets import select_subset
from tests.fixtures.official import make_kadid10k

REPO = "dgqa/kadid10k-sel-livec"
LFS_SUFFIXES = (".parquet", ".png")  # what the Hub's default .gitattributes sends through LFS
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
TOKEN = "hf_fakeTOKEN0123456789abcdef"


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def http_error(cls: type, status: int, message: str) -> Exception:
    return cls(message, response=SimpleNamespace(headers={}, request=None, status_code=status))


class FakeHub:
    """In-memory Hub repos behind the ``HfApi`` methods publish calls; ``calls`` records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.repos: dict[str, dict] = {}
        self.commits: dict[str, dict[str, bytes]] = {}  # oid -> {path: content}
        self.tokens: list[str | None] = []

    def __call__(self, token=None) -> FakeHub:  # stands in for the HfApi class
        self.tokens.append(token)
        return self

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def call(self, name: str) -> tuple[tuple, dict]:
        (found,) = [(args, kw) for n, args, kw in self.calls if n == name]
        return found

    def _record(self, name: str, *args, **kwargs) -> None:
        self.calls.append((name, args, copy.deepcopy(kwargs)))

    def _repo(self, repo_id: str) -> dict:
        if repo_id not in self.repos:
            raise http_error(
                RepositoryNotFoundError, 404, f"404 Client Error: Repository Not Found for {repo_id}"
            )
        return self.repos[repo_id]

    def _commit(self, parent: str | None, files: dict[str, bytes]) -> str:
        oid = hashlib.sha1(repr((parent, sorted(files.items()))).encode()).hexdigest()
        self.commits[oid] = dict(files)
        return oid

    def files_at(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        return self.commits[self.repos[repo_id]["branches"].get(rev, rev)]

    # -- the HfApi methods --------------------------------------------------------------------------
    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False):
        self._record("create_repo", repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok)
        if repo_id not in self.repos:
            head = self._commit(None, {".gitattributes": GITATTRIBUTES})
            self.repos[repo_id] = {
                "type": repo_type,
                "private": bool(private),
                "branches": {"main": head},
                "tags": {},
            }

    def list_repo_refs(self, repo_id, *, repo_type=None):
        self._record("list_repo_refs", repo_id, repo_type=repo_type)
        repo = self._repo(repo_id)
        ref = lambda kind, n, c: GitRefInfo(name=n, ref=f"refs/{kind}/{n}", target_commit=c)  # noqa: E731
        return GitRefs(
            branches=[ref("heads", n, c) for n, c in repo["branches"].items()],
            converts=[],
            tags=[ref("tags", n, c) for n, c in repo["tags"].items()],
        )

    def create_branch(self, repo_id, *, branch, repo_type=None, exist_ok=False):
        self._record("create_branch", repo_id, branch=branch, repo_type=repo_type, exist_ok=exist_ok)
        repo = self._repo(repo_id)
        repo["branches"].setdefault(branch, repo["branches"]["main"])

    def list_repo_tree(self, repo_id, *, repo_type=None, revision=None, recursive=False):
        self._record("list_repo_tree", repo_id, repo_type=repo_type, revision=revision, recursive=recursive)
        self._repo(repo_id)
        for path, data in sorted(self.commits[revision].items()):
            lfs = None
            if path.endswith(LFS_SUFFIXES):
                lfs = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            yield RepoFile(path=path, size=len(data), oid=git_blob(data), lfs=lfs)

    def upload_folder(self, **kw) -> CommitInfo:
        self._record("upload_folder", **kw)
        repo = self._repo(kw["repo_id"])
        head = repo["branches"][kw.get("revision") or "main"]
        if kw.get("parent_commit") not in (None, head):
            raise http_error(HfHubHTTPError, 412, "412 Precondition Failed: parent commit is not the head")
        folder = Path(kw["folder_path"])
        found = {p.relative_to(folder).as_posix(): p for p in sorted(folder.glob("**/*")) if p.is_file()}
        ignore = [*kw.get("ignore_patterns", []), *DEFAULT_IGNORE_PATTERNS]
        files = {
            p: data
            for p, data in self.commits[head].items()
            if p == ".gitattributes"
            or not list(filter_repo_objects([p], allow_patterns=kw.get("delete_patterns")))
        }
        files.update({p: found[p].read_bytes() for p in filter_repo_objects(found, ignore_patterns=ignore)})
        if files != self.commits[head]:  # nothing differs: no commit, the head is returned
            head = repo["branches"][kw.get("revision") or "main"] = self._commit(head, files)
        prefix = "" if kw["repo_type"] == "model" else f"{kw['repo_type']}s/"
        url = f"https://huggingface.co/{prefix}{kw['repo_id']}/commit/{head}"
        return CommitInfo(
            commit_url=url, commit_message=kw["commit_message"], commit_description="", oid=head
        )

    def create_tag(self, repo_id, *, tag, revision=None, tag_message=None, repo_type=None):
        self._record(
            "create_tag", repo_id, tag=tag, revision=revision, tag_message=tag_message, repo_type=repo_type
        )
        repo = self._repo(repo_id)
        if tag in repo["tags"]:
            raise http_error(HfHubHTTPError, 409, "409 Conflict: tag exists")
        repo["tags"][tag] = revision


@pytest.fixture(scope="module")
def built_subset(tmp_path_factory) -> Path:
    """A small selected subset (parquet + PNG + README + JSON) to publish."""
    tmp = tmp_path_factory.mktemp("publish")
    root = make_kadid10k(tmp / "kadid10k-download", n_refs=1, types=(1, 3, 10), levels=(1, 2))
    build_corpus("kadid10k", root, tmp / "hub" / "dgqa" / "kadid10k", progress=False)
    return select_subset(tmp / "hub" / "dgqa" / "kadid10k", paper_selection("livec")).out


@pytest.fixture
def dataset_dir(built_subset, tmp_path) -> Path:
    """A copy of the subset the test may edit, with an extra file and hidden files that never go up."""
    out = tmp_path / built_subset.name
    shutil.copytree(built_subset, out)
    (out / "notes.txt").write_text("release notes\n")
    (out / ".DS_Store").write_bytes(b"\0finder")
    (out / "data" / ".nfs0001").write_text("stale handle")
    (out / ".cache" / "huggingface").mkdir(parents=True)
    (out / ".cache" / "huggingface" / "x.lock").write_text("")
    return out


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", fake)  # publish builds its HfApi from here
    return fake


def visible(folder: Path) -> dict[str, bytes]:
    """The folder's files that are meant to go up (not hidden), read independently of publish."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def upload_request(folder: Path, parent: str, revision: str = "main") -> dict:
    return {
        "folder_path": str(folder),
        "repo_id": REPO,
        "repo_type": "dataset",
        "revision": revision,
        "ignore_patterns": [".*", "*/.*"],
        "delete_patterns": "*",
        "parent_commit": parent,
        "commit_message": f"dgqa publish {folder.name}",
        "commit_description": f"Uploaded with dgqa {__version__} from the folder {folder.name}.",
    }


def test_first_publish_is_create_repo_upload_folder_create_tag(hub, dataset_dir):
    report = publish(dataset_dir, REPO, private=True, tag="v1.0", token=TOKEN)

    assert hub.tokens == [TOKEN]
    assert hub.names() == ["create_repo", "list_repo_refs", "upload_folder", "create_tag"]
    assert hub.call("create_repo") == ((REPO,), {"repo_type": "dataset", "private": True, "exist_ok": True})
    initial = next(iter(hub.commits))  # the repo's first commit (.gitattributes only)
    assert hub.call("upload_folder") == ((), upload_request(dataset_dir, parent=initial))
    head = hub.repos[REPO]["branches"]["main"]
    assert head != initial and report.commit == report.head == head
    assert report.commit_url == f"https://huggingface.co/datasets/{REPO}/commit/{head}"
    assert hub.call("create_tag") == (
        (REPO,),
        {
            "tag": "v1.0",
            "revision": head,
            "tag_message": f"dgqa {__version__} release v1.0",
            "repo_type": "dataset",
        },
    )
    assert hub.repos[REPO]["tags"] == {"v1.0": head} and hub.repos[REPO]["private"] is True
    # what reached the (stand-in) Hub under huggingface_hub's matching: every visible file, byte-exact
    expected = visible(dataset_dir)
    assert {"README.md", "notes.txt", "selection.json"} <= set(expected)
    assert hub.files_at(REPO) == {**expected, ".gitattributes": GITATTRIBUTES}
    assert set(local_files(dataset_dir)) == set(expected)
    assert report.tag_status == "created"
    assert f"commit {head[:12]}: " in report.summary() and "tag v1.0: created" in report.summary()


def test_identical_publish_sends_no_commit_and_leaves_the_tag(hub, dataset_dir):
    first = publish(dataset_dir, REPO, tag="v1.0", token=TOKEN)
    hub.calls.clear()

    again = publish(dataset_dir, REPO, tag="v1.0", token=TOKEN)

    assert hub.names() == ["create_repo", "list_repo_refs", "upload_folder"]  # no create_tag
    assert hub.call("create_repo")[1]["private"] is None  # an existing repo's visibility is left alone
    assert hub.call("upload_folder")[1]["parent_commit"] == first.head
    assert again.commit is None and again.head == first.head
    assert again.tag_status == "exists (already on this head)"
    assert "nothing changed: no commit sent" in again.summary()


def test_update_deletes_removed_files_and_tags_the_new_head(hub, dataset_dir):
    first = publish(dataset_dir, REPO, tag="v1.0", token=TOKEN)
    (dataset_dir / "selection.json").write_text('{"edited": true}\n')
    (dataset_dir / "notes.txt").unlink()
    hub.calls.clear()

    report = publish(dataset_dir, REPO, tag="v1.1", token=TOKEN, commit_message="v1.1: fix selection")

    request = upload_request(dataset_dir, parent=first.head)
    request["commit_message"] = "v1.1: fix selection"
    assert hub.call("upload_folder") == ((), request)
    files = hub.files_at(REPO)
    assert "notes.txt" not in files and files["selection.json"] == b'{"edited": true}\n'
    assert report.commit == hub.repos[REPO]["branches"]["main"] != first.head
    assert hub.repos[REPO]["tags"] == {"v1.0": first.head, "v1.1": report.commit}


def test_a_tag_is_never_moved(hub, dataset_dir):
    first = publish(dataset_dir, REPO, tag="v1.0", token=TOKEN)
    (dataset_dir / "notes.txt").write_text("more notes\n")
    second = publish(dataset_dir, REPO, token=TOKEN)
    hub.calls.clear()

    # the tag is on an older commit: refused before anything is sent
    with pytest.raises(PublishError, match=f"tag v1.0 already points at {first.head[:12]}, not at the head"):
        publish(dataset_dir, REPO, tag="v1.0", token=TOKEN)
    assert hub.names() == ["create_repo", "list_repo_refs"]
    assert hub.repos[REPO]["tags"] == {"v1.0": first.head}

    # the tag is on the head but this publish makes a new commit: the tag stays, the error says so
    publish(dataset_dir, REPO, tag="v2.0", token=TOKEN)
    (dataset_dir / "notes.txt").write_text("even more notes\n")
    with pytest.raises(PublishError, match="tags are not moved.*the upload was committed as") as err:
        publish(dataset_dir, REPO, tag="v2.0", token=TOKEN)
    new_head = hub.repos[REPO]["branches"]["main"]
    assert new_head[:12] in str(err.value)
    assert hub.repos[REPO]["tags"] == {"v1.0": first.head, "v2.0": second.head}
    assert "create_tag" not in hub.names()[-3:]


def test_publish_to_a_new_branch(hub, dataset_dir):
    main_head = publish(dataset_dir, REPO, token=TOKEN).head
    hub.calls.clear()

    report = publish(dataset_dir, REPO, revision="dev", token=TOKEN)

    assert hub.names() == [
        "create_repo",
        "list_repo_refs",
        "create_branch",
        "list_repo_refs",
        "upload_folder",
    ]
    assert hub.call("create_branch") == ((REPO,), {"branch": "dev", "repo_type": "dataset", "exist_ok": True})
    assert hub.call("upload_folder") == ((), upload_request(dataset_dir, parent=main_head, revision="dev"))
    assert report.revision == "dev" and report.commit is None  # same files as main: no commit
    assert hub.repos[REPO]["branches"] == {"main": main_head, "dev": main_head}


def test_dry_run_offline_lists_the_files_and_sizes_and_sends_nothing(hub, dataset_dir, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert huggingface_hub.is_offline_mode()

    rc = main(["publish", str(dataset_dir), "--repo-id", REPO, "--dry-run", "--tag", "v1.0"])

    out = capsys.readouterr().out
    assert rc == 0
    assert hub.calls == []  # not one request, no token needed
    lines = out.splitlines()
    assert lines[0] == f"[dry run] {REPO} (dataset) @ main"
    files = visible(dataset_dir)
    listed = [line for line in lines if line.startswith("  upload ")]
    assert listed == [f"  upload    {_human(len(files[p])):>10}  {p}" for p in sorted(files)]
    assert not any(".DS_Store" in line or ".nfs" in line or ".cache" in line for line in lines)
    total = _human(sum(len(b) for b in files.values()))
    assert f"  {len(files)} local file(s), {total}; upload_folder would send only what differs" in out
    assert "tag v1.0: would create (existing tags not checked)" in out
    assert "note: offline (HF_HUB_OFFLINE): the Hub was not contacted" in out


def test_dry_run_online_marks_new_changed_unchanged_deleted(hub, dataset_dir, monkeypatch):
    first = publish(dataset_dir, REPO, tag="v1.0", token=TOKEN)
    (dataset_dir / "selection.json").write_text('{"edited": true}\n')
    (dataset_dir / "notes.txt").unlink()
    (dataset_dir / "extra.md").write_text("new\n")
    parquet = sorted(dataset_dir.glob("data/*.parquet"))[0]
    hub.calls.clear()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    report = publish(dataset_dir, REPO, dry_run=True, token=TOKEN, tag="v1.1")

    assert hub.names() == ["list_repo_refs", "list_repo_tree"]  # reads only
    assert hub.call("list_repo_tree") == (
        (REPO,),
        {"repo_type": "dataset", "revision": first.head, "recursive": True},
    )
    status = {f.path: f.status for f in report.files}
    assert status["selection.json"] == "changed" and status["extra.md"] == "new"
    assert status["notes.txt"] == "deleted" and status["README.md"] == "unchanged"
    assert status[parquet.relative_to(dataset_dir).as_posix()] == "unchanged"  # compared by LFS sha256
    assert ".gitattributes" not in status
    assert report.remote_checked and report.tag_status == "would create"
    assert "1 new, 1 changed" in report.summary() and "1 deleted" in report.summary()

    # an existing tag elsewhere is refused by the dry run too; a repo that does not exist is all new
    with pytest.raises(PublishError, match="tag v1.0 already points at"):
        publish(dataset_dir, REPO, dry_run=True, token=TOKEN, tag="v1.0")
    other = publish(dataset_dir, "dgqa/other", dry_run=True, token=TOKEN)
    assert not other.repo_exists and {f.status for f in other.files} == {"new"}
    assert "the repo does not exist yet; publish would create it" in other.summary()
    assert "create_repo" not in hub.names() and "upload_folder" not in hub.names()


def test_hub_errors_never_show_the_token(hub, dataset_dir, monkeypatch, capsys):
    def echo(**kw):  # a server that echoes the request headers into its error
        raise http_error(HfHubHTTPError, 403, f"403 Forbidden: headers {{'authorization': 'Bearer {TOKEN}'}}")

    monkeypatch.setattr(hub, "upload_folder", echo)
    with pytest.raises(PublishError) as err:
        publish(dataset_dir, REPO, token=TOKEN)
    assert "the Hub refused the request" in str(err.value) and "Bearer ***" in str(err.value)
    assert TOKEN not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__

    monkeypatch.setenv("MY_HUB_TOKEN", TOKEN)
    rc = main(["publish", str(dataset_dir), "--repo-id", REPO, "--token-env", "MY_HUB_TOKEN"])
    captured = capsys.readouterr()
    assert rc == 2 and "Bearer ***" in captured.err
    assert TOKEN not in captured.out + captured.err
    assert hub.tokens[-1] == TOKEN  # the variable's token is the one sent


def test_model_folder_goes_through_the_same_path(hub, tmp_path):
    folder = tmp_path / "model"
    (folder / "checkpoints" / "step_1").mkdir(parents=True)
    (folder / "logs").mkdir()
    for name in ("model.safetensors", "config.json", "README.md", "results.json", "checkpoints/step_1/x.bin"):
        (folder / name).write_text(name)
    (folder / "logs" / "run.txt").write_text("log")

    report = publish(
        folder, "me/model", repo_type="model", ignore_patterns=["checkpoints/*", "logs/*"], token=TOKEN
    )

    assert hub.call("create_repo")[1]["repo_type"] == "model"
    request = hub.call("upload_folder")[1]
    assert request["repo_type"] == "model" and request["delete_patterns"] == "*"
    assert request["ignore_patterns"] == [".*", "*/.*", "checkpoints/*", "logs/*"]
    assert set(hub.files_at("me/model")) == {
        ".gitattributes",
        "model.safetensors",
        "config.json",
        "README.md",
        "results.json",
    }
    assert report.commit_url == f"https://huggingface.co/me/model/commit/{report.commit}"


def test_publish_checks_token_repo_id_and_folder_before_any_request(hub, dataset_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)

    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish(dataset_dir, REPO)
    with pytest.raises(PublishError, match="ORG/NAME"):
        publish(dataset_dir, "x", token=TOKEN)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "README.md").write_text("---\nlicense: mit\n---\n# no configs\n")
    with pytest.raises(PublishError, match="has no `configs`"):
        publish(tmp_path / "plain", REPO, token=TOKEN)
    with pytest.raises(PublishError, match="not a dataset folder: no README.md"):
        publish(tmp_path, REPO, token=TOKEN)
    assert hub.calls == [] and hub.tokens == []


def test_token_env_names_a_variable(monkeypatch):
    monkeypatch.setenv("MY_HUB_TOKEN", "hf_secret123")
    assert resolve_token("MY_HUB_TOKEN") == "hf_secret123"
    monkeypatch.delenv("MY_HUB_TOKEN")
    with pytest.raises(PublishError, match="MY_HUB_TOKEN"):
        resolve_token("MY_HUB_TOKEN")
    assert redact("bad token hf_secret123 here", "hf_secret123") == "bad token *** here"


# -- issue 19: nothing outside the folder goes up; a bad repo id is refused before anything -------
def test_symlinks_out_of_the_folder_are_refused_by_name(hub, dataset_dir, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub\n")
    (dataset_dir / "notes.txt").unlink()
    (dataset_dir / "notes.txt").symlink_to(secret)
    (dataset_dir / "card-copy.md").symlink_to(dataset_dir / "README.md")  # inside the folder: fine
    for dry_run in (True, False):
        with pytest.raises(PublishError) as err:
            publish(dataset_dir, REPO, dry_run=dry_run, token=TOKEN)
        assert str(err.value) == (
            f"{dataset_dir} holds symlinks that resolve outside it, which would upload files from elsewhere: "
            f"notes.txt -> {secret}; replace them with the files themselves or remove them"
        )
    assert hub.calls == []
    assert main(["publish", str(dataset_dir), "--repo-id", REPO, "--dry-run"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (dataset_dir / "notes.txt").unlink()
    assert "card-copy.md" in {f.path for f in publish(dataset_dir, REPO, dry_run=True, token=TOKEN).files}


@pytest.mark.parametrize("repo_id", ["a/b/c", "../../etc", "org/na me!", "x", "org/a--b"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_bad_repo_id_is_one_line_before_anything(hub, dataset_dir, capsys, repo_id, dry_run):
    argv = ["publish", str(dataset_dir), "--repo-id", repo_id, *(["--dry-run"] if dry_run else [])]
    argv += ["--token-env", "UNSET_TOKEN_VARIABLE"]  # the id is checked even before the token
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "python -m dgqa_data publish: error: --repo-id must be ORG/NAME (letters, digits, '-', '_', '.'; "
        f"no '..' or '--'), got {repo_id!r}\n"
    )
    assert hub.calls == [] and hub.tokens == []
