"""`hubpin publish`: add a local folder as a new commit of a repo in a store."""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BadInput, UnsafePathError
from .hashing import CHUNK, hash_files
from .objects import Commit, FileEntry, RepoKey, commit_id
from .paths import safe_relpath, validate_revision
from .store import Store

if TYPE_CHECKING:
    from .policy import Policy

__all__ = ["LFS_THRESHOLD", "PublishResult", "collect_files", "is_lfs", "publish"]

#: the Hub stores files above 10 MiB in LFS whatever .gitattributes says
LFS_THRESHOLD = 10 * 1024 * 1024

#: the LFS patterns of the Hub's default .gitattributes for new repos
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
    "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip

_SKIP_DIRS = {".git", ".cache"}  # git internals and huggingface_hub's local_dir metadata


@dataclass(frozen=True)
class PublishResult:
    repo: RepoKey
    revision: str
    commit: Commit
    created: bool  # False when the folder matched the current commit of `revision`
    new_blobs: int


def _gitattributes_lfs_patterns(root: Path) -> list[str]:
    path = root / ".gitattributes"
    try:
        lines = path.read_text("utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    patterns = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def is_lfs(path: str, size: int, patterns: list[str] | tuple[str, ...]) -> bool:
    """LFS like the Hub: a matching .gitattributes / default pattern, or larger than 10 MiB."""
    if size > LFS_THRESHOLD:
        return True
    name = path.rsplit("/", 1)[-1]
    for pat in patterns:
        if "/" in pat:
            if fnmatch.fnmatchcase(path, pat.replace("**/", "*").lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pat):
            return True
    return False


def collect_files(root: Path) -> list[tuple[str, Path]]:
    """Every regular file below `root` as (repo path, filesystem path), sorted.

    Symlinks are followed only when they resolve inside `root` to a regular file; a symlink
    leaving the folder, a special file, or a hostile name aborts the whole publish.
    """
    root = root.absolute()
    real_root = root.resolve()
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            full = here / d
            if d in _SKIP_DIRS and here == root:
                dirnames.remove(d)
            elif full.is_symlink():
                raise UnsafePathError(f"{full}: symlinked folders are not published (expected a regular folder)")
        for name in filenames:
            full = here / name
            rel = full.relative_to(root).as_posix()
            safe_relpath(rel)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                target = full.resolve()
                try:
                    target.relative_to(real_root)
                except ValueError:
                    raise UnsafePathError(
                        f"{full}: symlink leaves the folder (expected a target inside {root}, got {target})"
                    ) from None
                st = os.stat(full)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePathError(f"{full}: not a regular file (expected a file, got a special file)")
            out.append((rel, full))
    return sorted(out)


def publish(
    folder: str | os.PathLike[str],
    repo: RepoKey,
    store: Store,
    *,
    revision: str = "main",
    message: str | None = None,
    jobs: int | None = None,
    policy: Policy | None = None,
) -> PublishResult:
    """Add `folder` as a new commit of `repo` and move `refs/<revision>` to it.

    The commit id is deterministic (same content and parent → same id). Publishing content
    identical to the current commit of `revision` creates nothing. With `policy`, the folder is
    checked first (pickle by content, remote code) and a refusal raises PolicyError.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BadInput(f"{root}: not a folder (expected a folder to publish)")
    validate_revision(revision)
    found = collect_files(root)
    if not found:
        raise BadInput(f"{root}: no files to publish")
    if policy is not None:
        # supply-chain policy (hubpin.policy): refuse pickle / remote code before any blob is written
        from .policy import enforce_files

        enforce_files(repo, found, policy, licenses=False)
    patterns = list(DEFAULT_LFS_PATTERNS) + _gitattributes_lfs_patterns(root)
    digests = hash_files([p for _rel, p in found], jobs)
    entries = []
    for (rel, _p), d in zip(found, digests, strict=True):
        etag = d.sha256 if is_lfs(rel, d.size, patterns) else d.git_sha1
        entries.append(FileEntry(rel, d.size, etag, d.sha256))

    parent = store.get_ref(repo, revision)
    if parent is not None:
        previous = store.get_commit(repo, parent)
        if previous is not None and _same_content(previous.files, entries) and _blobs_present(store, repo, previous):
            return PublishResult(repo, revision, previous, created=False, new_blobs=0)

    new_blobs = 0
    for (_rel, path), entry in zip(found, entries, strict=True):
        if store.has_blob(repo, entry.etag):
            continue
        # re-hashed while copying: a file that changed since the first pass is refused
        with store.blob_writer(repo, entry.etag, entry.size, entry.sha256) as w, open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                w.write(chunk)
        new_blobs += 1

    sha = commit_id(entries, parent)
    commit = Commit(
        sha=sha,
        files=tuple(entries),
        parent=parent,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        message=message or f"publish {root.name}",
    )
    store.put_commit(repo, commit)
    store.set_ref(repo, revision, sha)
    return PublishResult(repo, revision, commit, created=True, new_blobs=new_blobs)


def _same_content(a: tuple[FileEntry, ...], b: list[FileEntry]) -> bool:
    return [(f.path, f.size, f.etag) for f in a] == [(f.path, f.size, f.etag) for f in sorted(b)]


def _blobs_present(store: Store, repo: RepoKey, commit: Commit) -> bool:
    return all(store.has_blob(repo, f.etag) for f in commit.files)
