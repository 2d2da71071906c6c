"""``dgqa publish``: upload a dataset (or model) folder to the Hugging Face Hub, idempotently.

The folder is uploaded unchanged, in the pattern of lerobot's ``push_to_hub``: ``create_repo``
(``exist_ok``), one ``upload_folder``, then a version tag. ``upload_folder`` does the diffing: it
skips files the Hub already has, deletes remote files the folder no longer has (``delete_patterns``;
a stale shard would be picked up by the ``data/<split>-*`` globs), sends no commit when nothing
differs, and names the head it was planned against (``parent_commit``), so a concurrent push makes it
fail instead of mixing two states. Tags are never moved.

The token comes from huggingface_hub's usual places (``HF_TOKEN``, the saved login) or from an
environment variable named with ``token_env``; it is never printed, logged or put in an error.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgqa_data import __version__
from dgqa_data.errors import DgqaError
from dgqa_data.hub_folder import read_card_metadata

#: Never uploaded: hidden files and folders (``.cache``, editor files, ...), at any depth.
HIDDEN = (".*", "*/.*")
DELETE_ALL = "*"  # every remote file the folder does not have again (.gitattributes is always kept)
KEEP_REMOTE = (".gitattributes",)


class PublishError(DgqaError):
    """Publishing cannot go ahead (no token, not a dataset folder, a tag conflict, a Hub error)."""


@dataclass
class FilePlan:
    """One file of a publish: its path in the repo, size, and status.

    ``status`` is ``upload`` (handed to ``upload_folder``; the Hub was not compared) or, in a dry run
    that could read the remote tree, ``new`` | ``changed`` | ``unchanged`` | ``deleted``.
    """

    path: str
    size: int
    status: str


@dataclass
class PublishReport:
    """What :func:`publish` did (or, with ``dry_run``, would do).

    Attributes:
        repo_id: the repo.
        repo_type: ``dataset`` or ``model``.
        revision: the branch.
        files: the local files ``upload_folder`` is given (plus remote deletions in an online dry run).
        dry_run: whether nothing was sent.
        commit: oid of the commit made (None when nothing changed or dry run).
        commit_url: URL of the branch head after publishing.
        head: the branch head after publishing (before, in a dry run).
        tag: the requested tag.
        tag_status: ``created``, ``exists (already on this head)``, ``would create``.
        remote_checked: whether the dry run compared with the Hub.
    """

    repo_id: str
    repo_type: str
    revision: str
    files: list[FilePlan]
    dry_run: bool
    commit: str | None = None
    commit_url: str | None = None
    head: str | None = None
    tag: str | None = None
    tag_status: str | None = None
    repo_exists: bool = True
    remote_checked: bool = False
    notes: list[str] = field(default_factory=list)

    def by_status(self, status: str) -> list[FilePlan]:
        return [f for f in self.files if f.status == status]

    def summary(self) -> str:
        """Human-readable lines: the files (dry run), the totals, the commit and the tag."""
        verb = "would " if self.dry_run else ""
        lines = [f"{'[dry run] ' if self.dry_run else ''}{self.repo_id} ({self.repo_type}) @ {self.revision}"]
        if not self.repo_exists:
            lines.append(f"  the repo does not exist yet; publish {verb}create it")
        if self.dry_run:
            lines += [f"  {f.status:<9} {_human(f.size):>10}  {f.path}" for f in self.files]
        local = [f for f in self.files if f.status != "deleted"]
        total = f"{len(local)} local file(s), {_human(sum(f.size for f in local))}"
        if self.remote_checked:
            counts = ", ".join(
                f"{len(self.by_status(s))} {s}" for s in ("new", "changed", "unchanged", "deleted")
            )
            up = sum(f.size for f in self.files if f.status in ("new", "changed"))
            lines.append(f"  {total}: {counts}; would upload {_human(up)}")
        else:
            how = "would send" if self.dry_run else "sent"
            lines.append(f"  {total}; upload_folder {how} only what differs from the Hub")
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
def local_files(folder: str | Path, ignore_patterns: Sequence[str] = HIDDEN) -> dict[str, Path]:
    """The files ``upload_folder(folder, ignore_patterns=...)`` sends, by path in the repo, sorted:
    the same listing and the same filter (``filter_repo_objects`` + its default ignores)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    folder = Path(folder).expanduser()
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.glob("**/*")) if p.is_file()}
    keep = filter_repo_objects(files, ignore_patterns=[*ignore_patterns, *DEFAULT_IGNORE_PATTERNS])
    return {path: files[path] for path in keep}


def check_repo_id(repo_id: str, flag: str = "--repo-id") -> str:
    """``repo_id`` if it is a valid Hub ``ORG/NAME`` id, else one line saying why not."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise PublishError(
            f"{flag} must be ORG/NAME (letters, digits, '-', '_', '.'; no '..' or '--'), got {repo_id!r}"
        )
    return repo_id


def check_symlinks(folder: Path, files: dict[str, Path]) -> None:
    """Refuse files that are (or sit under) a symlink resolving outside ``folder``: nothing outside
    what the user named is uploaded."""
    base = folder.resolve()
    outside = [
        f"{path} -> {f.resolve()}" for path, f in files.items() if not f.resolve().is_relative_to(base)
    ]
    if outside:
        raise PublishError(
            f"{folder} holds symlinks that resolve outside it, which would upload files from elsewhere: "
            f"{'; '.join(outside[:5])}{' ...' if len(outside) > 5 else ''}; replace them with the files "
            "themselves or remove them"
        )


def _check_folder(folder: Path, repo_type: str) -> None:
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder")
    if repo_type == "dataset":
        if not (folder / "README.md").is_file():
            raise PublishError(f"{folder} is not a dataset folder: no README.md")
        if not read_card_metadata(folder).get("configs"):
            raise PublishError(f"{folder}/README.md has no `configs` in its YAML header")


def _same(path: Path, remote: Any) -> bool:
    """Whether a local file has the content of a remote ``RepoFile`` (LFS: sha256; else git blob id)."""
    from huggingface_hub.utils.sha import git_hash, sha_fileobj

    if remote.lfs is not None:
        with open(path, "rb") as f:
            return sha_fileobj(f).hex() == remote.lfs.sha256
    return git_hash(path.read_bytes()) == remote.blob_id


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
def _refs(api: Any, repo_id: str, repo_type: str, revision: str) -> tuple[str | None, dict[str, str]]:
    """(head of ``revision`` or None, ``{tag: commit}``)."""
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    head = next((b.target_commit for b in refs.branches if b.name == revision), None)
    return head, {t.name: t.target_commit for t in refs.tags}


def _tag_on(tag: str, tags: dict[str, str], head: str | None, after: str = "") -> bool:
    """True if ``tag`` already points at ``head`` (nothing to do), False if it does not exist;
    a :class:`PublishError` if it points elsewhere: tags are never moved."""
    if tag not in tags:
        return False
    if head is not None and tags[tag] == head:
        return True
    where = f"the head {head[:12]}" if head else "the commit this publish would make"
    raise PublishError(
        f"tag {tag} already points at {tags[tag][:12]}, not at {where}; tags are not moved: "
        f"choose a new version{after}"
    )


def _dry_run_remote(api: Any, report: PublishReport, local: dict[str, Path], token: str | None) -> None:
    """Mark the dry run's files new/changed/unchanged/deleted and check the tag, if the Hub answers."""
    from huggingface_hub import is_offline_mode
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    if is_offline_mode():
        report.notes.append("offline (HF_HUB_OFFLINE): the Hub was not contacted; listing the local files")
        return
    try:
        with hub_errors(token):
            try:
                head, tags = _refs(api, report.repo_id, report.repo_type, report.revision)
            except RepositoryNotFoundError:
                report.repo_exists = False
                head, tags, remote = None, {}, {}
            else:
                if head is None:
                    report.notes.append(
                        f"branch {report.revision} does not exist; it would be created from main"
                    )
                    head, _ = _refs(api, report.repo_id, report.repo_type, "main")
                tree = api.list_repo_tree(
                    report.repo_id, repo_type=report.repo_type, revision=head, recursive=True
                )
                remote = {e.path: e for e in tree if isinstance(e, RepoFile)}
    except PublishError as err:
        report.notes.append(f"could not compare with the Hub ({err}); listing the local files")
        return
    report.head, report.remote_checked = head, True
    for f in report.files:
        entry = remote.get(f.path)
        f.status = "new" if entry is None else "unchanged" if _same(local[f.path], entry) else "changed"
    gone = sorted(p for p in remote if p not in local and p not in KEEP_REMOTE)
    report.files += [FilePlan(p, remote[p].size, "deleted") for p in gone]
    if report.tag:
        changes = any(f.status != "unchanged" for f in report.files)
        exists = _tag_on(report.tag, tags, None if changes else head)
        report.tag_status = "exists (already on this head)" if exists else "would create"


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "dataset",
    private: bool = False,
    revision: str | None = None,
    tag: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    ignore_patterns: Sequence[str] = (),
    api: Any = None,
) -> PublishReport:
    """Upload a folder to the Hub repo ``repo_id`` with ``upload_folder``, which sends only what changed.

    Args:
        folder: a Hub-layout dataset folder (``README.md`` with ``configs`` + ``data/``), or a model folder.
        repo_id: ``org/name``, e.g. ``dgqa/kadid10k-sel-livec``.
        repo_type: ``dataset`` or ``model``.
        private: create the repo private (ignored when it already exists).
        revision: branch to commit to (created from ``main`` if missing); default ``main``.
        tag: tag the resulting head (e.g. ``v1.0``); a tag already on that head is left as is,
            one on another commit is an error (tags are not moved).
        dry_run: list the files that would go up (compared with the Hub when it can be reached); nothing
            is created or sent, and no token is needed.
        token: Hub token (default: ``HF_TOKEN`` or the saved login).
        commit_message: summary of the commit (default names the folder and the dgqa version).
        ignore_patterns: files not to upload, besides hidden ones (``upload_folder`` globs).
        api: an ``HfApi`` (default: one built with ``token``; the endpoint follows ``HF_ENDPOINT``).

    Returns:
        A :class:`PublishReport`.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    folder = Path(folder).expanduser()
    _check_folder(folder, repo_type)
    ignore = [*HIDDEN, *ignore_patterns]
    local = local_files(folder, ignore)
    check_symlinks(folder, local)
    revision = revision or "main"
    token = token if token is not None else resolve_token()
    if token is None and not dry_run:
        raise PublishError(
            "no Hugging Face token: set HF_TOKEN, run `hf auth login`, or name a variable with --token-env"
        )
    api = api if api is not None else HfApi(token=token)
    files = [FilePlan(path, f.stat().st_size, "upload") for path, f in local.items()]
    report = PublishReport(repo_id, repo_type, revision, files, dry_run, tag=tag)
    if dry_run:
        report.tag_status = "would create (existing tags not checked)" if tag else None
        _dry_run_remote(api, report, local, token)
        return report

    with hub_errors(token):
        api.create_repo(repo_id, repo_type=repo_type, private=True if private else None, exist_ok=True)
        head, tags = _refs(api, repo_id, repo_type, revision)
        if head is None:
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
            head, tags = _refs(api, repo_id, repo_type, revision)
        if tag:
            _tag_on(tag, tags, head)  # refused before anything is sent if it points elsewhere
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type=repo_type,
            revision=revision,
            ignore_patterns=list(ignore),  # a fresh list: upload_folder extends it in place
            delete_patterns=DELETE_ALL,
            parent_commit=head,
            commit_message=commit_message or f"dgqa publish {folder.name}",
            commit_description=f"Uploaded with dgqa {__version__} from the folder {folder.name}.",
        )
        report.commit = info.oid if info.oid != head else None
        report.head, report.commit_url = info.oid, str(info.commit_url)
        if tag:
            if _tag_on(tag, tags, report.head, after=f" (the upload was committed as {report.head[:12]})"):
                report.tag_status = "exists (already on this head)"
            else:
                api.create_tag(
                    repo_id,
                    tag=tag,
                    revision=report.head,
                    tag_message=f"dgqa {__version__} release {tag}",
                    repo_type=repo_type,
                )
                report.tag_status = "created"
    return report


# -- the command line -------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``publish``."""
    p.add_argument("path", help="dataset folder (README.md + data/)")
    p.add_argument(
        "--repo-id", required=True, help="ORG/NAME of the dataset repo, e.g. dgqa/kadid10k-sel-livec"
    )
    p.add_argument("--private", action="store_true", help="create the repo private (ignored if it exists)")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    p.add_argument("--tag", default=None, help="tag the published head, e.g. v1.0")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the files that would go up, with sizes; sends nothing, works offline without a token "
        "(marks them new/changed/unchanged when the Hub can be reached)",
    )
    p.add_argument(
        "--token-env",
        default=None,
        metavar="NAME",
        help="environment variable holding the token (default: HF_TOKEN or the saved login)",
    )
    p.add_argument("--message", default=None, help="commit message")


def run(args: argparse.Namespace) -> None:
    check_repo_id(args.repo_id)
    token = resolve_token(args.token_env)
    try:
        report = publish(
            args.path,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            tag=args.tag,
            dry_run=args.dry_run,
            token=token,
            commit_message=args.message,
        )
    except PublishError as err:
        raise PublishError(redact(str(err), token)) from None
    print(redact(report.summary(), token))
