"""``dgqa publish``: upload a dataset folder to the Hugging Face Hub, idempotently.

The folder (written by ``build``, ``subset`` or ``hydrate``) is uploaded unchanged, in the pattern
of lerobot's ``push_to_hub``: ``create_repo`` (dataset, ``exist_ok``), one commit, then a version
tag. Before committing, every local file is compared with the remote tree at the branch head:
regular files by their git blob id (sha1 of ``"blob <size>\\0" + bytes``), LFS files by the sha256
of their content. Only new and changed files go into the commit, remote files the folder no longer
has (a stale shard would be picked up by the ``data/<split>-*`` globs) are deleted, and when
nothing differs no commit is sent at all. The commit names the head it was planned against
(``parent_commit``), so a concurrent push makes it fail instead of mixing two states.

The token comes from huggingface_hub's usual places (``HF_TOKEN``, the saved login) or from an
environment variable named with ``token_env``; it is never printed, logged or put in an error.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgqa_data import __version__
from dgqa_data.errors import DgqaError
from dgqa_data.hub_folder import read_card_metadata

REPO_TYPE = "dataset"
KEEP_REMOTE = (".gitattributes",)  # created by the Hub; never deleted
STATUSES = ("new", "changed", "unchanged", "deleted")


class PublishError(DgqaError):
    """Publishing cannot go ahead (no token, not a dataset folder, a tag conflict, a Hub error)."""


@dataclass
class FilePlan:
    """One file of a publish: its path in the repo, local size (remote size if deleted), status."""

    path: str
    size: int
    status: str  # new | changed | unchanged | deleted


@dataclass
class PublishReport:
    """What :func:`publish` did (or, with ``dry_run``, would do).

    Attributes:
        repo_id: the dataset repo.
        revision: the branch.
        files: every local file and every remote file to delete, with its status.
        dry_run: whether nothing was sent.
        commit: oid of the commit made (None when nothing changed or dry run).
        commit_url: its URL.
        head: the branch head after publishing.
        tag: the requested tag.
        tag_status: ``created``, ``exists`` (already on this head), ``would create`` (dry run).
    """

    repo_id: str
    revision: str
    files: list[FilePlan]
    dry_run: bool
    commit: str | None = None
    commit_url: str | None = None
    head: str | None = None
    tag: str | None = None
    tag_status: str | None = None
    repo_exists: bool = True
    notes: list[str] = field(default_factory=list)

    def by_status(self, status: str) -> list[FilePlan]:
        return [f for f in self.files if f.status == status]

    @property
    def has_changes(self) -> bool:
        return any(f.status != "unchanged" for f in self.files)

    def summary(self) -> str:
        """Human-readable lines: one per file, then the totals, the commit and the tag."""
        verb = "would " if self.dry_run else ""
        lines = [f"{'[dry run] ' if self.dry_run else ''}{self.repo_id} (dataset) @ {self.revision}"]
        if not self.repo_exists:
            lines.append(f"  the repo does not exist yet; publish {verb}create it")
        lines += [f"  {f.status:<9} {_human(f.size):>10}  {f.path}" for f in self.files]
        counts = ", ".join(f"{len(self.by_status(s))} {s}" for s in STATUSES)
        up = sum(f.size for f in self.files if f.status in ("new", "changed"))
        lines.append(f"  {counts}; {verb}upload {_human(up)}")
        if not self.dry_run:
            if self.commit:
                lines.append(f"  commit {self.commit[:12]}: {self.commit_url}")
            else:
                lines.append("  nothing changed: no commit sent")
        if self.tag:
            lines.append(f"  tag {self.tag}: {self.tag_status}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


# -- local side -------------------------------------------------------------------------------
def local_files(folder: str | Path) -> dict[str, Path]:
    """Files of a dataset folder by path in the repo (POSIX), hidden files and folders excluded."""
    folder = Path(folder)
    if not (folder / "README.md").is_file():
        raise PublishError(f"{folder} is not a dataset folder: no README.md")
    if not read_card_metadata(folder).get("configs"):
        raise PublishError(f"{folder}/README.md has no `configs` in its YAML header")
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            files[rel.as_posix()] = path
    return files


def file_oids(path: Path, chunk: int = 2**20) -> tuple[str, str]:
    """``(git blob sha1, sha256)`` of a file in one streaming pass."""
    sha1 = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    sha256 = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(chunk):
            sha1.update(data)
            sha256.update(data)
    return sha1.hexdigest(), sha256.hexdigest()


def compare(local: dict[str, Path], remote: dict[str, Any]) -> list[FilePlan]:
    """Status of every local file against the remote tree (``{path: RepoFile}``), plus deletions."""
    plan = []
    for path, file in local.items():
        size = file.stat().st_size
        entry = remote.get(path)
        if entry is None:
            plan.append(FilePlan(path, size, "new"))
            continue
        blob, sha256 = file_oids(file)
        same = entry.lfs.sha256 == sha256 if entry.lfs else entry.blob_id == blob
        plan.append(FilePlan(path, size, "unchanged" if same else "changed"))
    for path, entry in sorted(remote.items()):
        if path not in local and path not in KEEP_REMOTE:
            plan.append(FilePlan(path, entry.size, "deleted"))
    return plan


# -- token ------------------------------------------------------------------------------------
def resolve_token(token_env: str | None = None) -> str | None:
    """The Hub token: from the environment variable ``token_env`` if given, else huggingface_hub's
    usual places (``HF_TOKEN``, the saved login). Never printed."""
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise PublishError(f"environment variable {token_env} (--token-env) is not set or empty")
        return token
    from huggingface_hub import get_token

    return get_token()


def redact(text: str, token: str | None) -> str:
    """``text`` with the token (if any) replaced by ``***``."""
    return text.replace(token, "***") if token else text


@contextmanager
def hub_errors(token: str | None):
    """The one way every Hub call of dgqa reports failures: a :class:`PublishError` whose message has
    the token redacted and no chained exception (a traceback would print the server's echo)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = token or resolve_token()
    try:
        yield
    except OfflineModeIsEnabled:
        raise PublishError("HF_HUB_OFFLINE is set: unset it to talk to the Hub") from None
    except HfHubHTTPError as err:
        raise PublishError(f"the Hub refused the request: {redact(str(err), token)}") from None


# -- remote side ------------------------------------------------------------------------------
def _head_and_tags(api: Any, repo_id: str, revision: str) -> tuple[str | None, dict[str, str]]:
    refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    head = next((b.target_commit for b in refs.branches if b.name == revision), None)
    return head, {t.name: t.target_commit for t in refs.tags}


def _remote_tree(api: Any, repo_id: str, commit: str) -> dict[str, Any]:
    from huggingface_hub.hf_api import RepoFile

    tree = api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=commit, recursive=True)
    return {e.path: e for e in tree if isinstance(e, RepoFile)}


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    tag: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> PublishReport:
    """Upload a dataset folder to ``repo_id`` (a dataset repo), sending only what changed.

    Args:
        folder: a Hub-layout dataset folder (``README.md`` with ``configs`` + ``data/``).
        repo_id: ``org/name``, e.g. ``dgqa/kadid10k-sel-livec``.
        private: create the repo private (ignored when it already exists).
        revision: branch to commit to (created from ``main`` if missing); default ``main``.
        tag: tag the resulting head (e.g. ``v1.0``); a tag already on that head is left as is,
            one on another commit is an error (tags are not moved).
        dry_run: only compare with the remote and report; nothing is created or sent.
        token: Hub token (default: ``HF_TOKEN`` or the saved login).
        commit_message: summary of the commit (default names the counts and the dgqa version).
        api: an ``HfApi`` (default: one built with ``token``; the endpoint follows ``HF_ENDPOINT``).

    Returns:
        A :class:`PublishReport`.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if "/" not in repo_id:
        raise PublishError(f"--repo-id must be ORG/NAME, got {repo_id!r}")
    local = local_files(folder)
    revision = revision or "main"
    token = token if token is not None else resolve_token()
    if token is None and not dry_run:
        raise PublishError(
            "no Hugging Face token: set HF_TOKEN, run `hf auth login`, or name a variable with --token-env"
        )
    api = api if api is not None else HfApi(token=token)
    report = PublishReport(repo_id, revision, [], dry_run, tag=tag)
    with hub_errors(token):
        if not dry_run:
            api.create_repo(repo_id, repo_type=REPO_TYPE, private=True if private else None, exist_ok=True)
        try:
            head, tags = _head_and_tags(api, repo_id, revision)
        except RepositoryNotFoundError:
            if not dry_run:
                raise
            head, tags, report.repo_exists = None, {}, False
        if head is None and report.repo_exists:
            if dry_run:
                report.notes.append(f"branch {revision} does not exist; it would be created from main")
                head, _ = _head_and_tags(api, repo_id, "main")
            else:
                api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True)
                head, tags = _head_and_tags(api, repo_id, revision)
        try:
            remote = _remote_tree(api, repo_id, head) if head else {}
        except (RepositoryNotFoundError, RevisionNotFoundError):
            remote = {}
        report.files = compare(local, remote)
        report.head = head

        if not dry_run and report.has_changes:
            ops: list[Any] = [
                CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(local[f.path]))
                for f in report.files
                if f.status in ("new", "changed")
            ]
            ops += [CommitOperationDelete(path_in_repo=f.path) for f in report.by_status("deleted")]
            counts = {s: len(report.by_status(s)) for s in ("new", "changed", "deleted")}
            info = api.create_commit(
                repo_id,
                ops,
                commit_message=commit_message
                or f"dgqa publish: {counts['new']} new, {counts['changed']} changed, {counts['deleted']} deleted",
                commit_description=f"Uploaded with dgqa {__version__} from the folder {Path(folder).name}.",
                repo_type=REPO_TYPE,
                revision=revision,
                parent_commit=head,
            )
            report.commit, report.commit_url, report.head = info.oid, str(info.commit_url), info.oid

        if tag:
            new_head = None if (dry_run and report.has_changes) else report.head
            report.tag_status = _tag(api, repo_id, tag, new_head, tags, dry_run)
    return report


def _tag(api: Any, repo_id: str, tag: str, head: str | None, tags: dict[str, str], dry_run: bool) -> str:
    if tag in tags:
        if head is not None and tags[tag] == head:
            return "exists (already on this head)"
        where = f"the published head {head[:12]}" if head else "the new commit this publish makes"
        raise PublishError(
            f"tag {tag} already points at {tags[tag][:12]}, not at {where}; tags are not moved: "
            "choose a new version"
        )
    if dry_run:
        return "would create"
    api.create_tag(
        repo_id, tag=tag, revision=head, tag_message=f"dgqa {__version__} release {tag}", repo_type=REPO_TYPE
    )
    return "created"
