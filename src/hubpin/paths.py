"""The one gate for hostile names: repo-relative file paths, repo ids, revisions.

Every name that comes from outside (a repo listing, a lockfile, a bundle manifest, a URL, a
folder being published) passes through here before it touches the filesystem. The rules are
those of huggingface_hub's `_validate_relative_filename` (PR #4540) and `validate_repo_id`,
applied under both POSIX and Windows readings of a name.
"""

from __future__ import annotations

import re
from typing import Literal

from .errors import UnsafePathError

__all__ = [
    "REPO_TYPES",
    "RepoType",
    "is_commit_sha",
    "repo_folder_name",
    "safe_relpath",
    "validate_repo_id",
    "validate_repo_type",
    "validate_revision",
]

RepoType = Literal["model", "dataset"]
REPO_TYPES: tuple[str, ...] = ("model", "dataset")

MAX_PATH_CHARS = 1024
MAX_COMPONENT_BYTES = 255
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REPO_PART = re.compile(r"^[A-Za-z0-9_][\w.-]{0,95}$")
_REVISION_PART = re.compile(r"^[\w][\w.+-]{0,254}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


def safe_relpath(name: object, *, what: str = "file name") -> str:
    """Return `name` if it is a safe, normalized, repo-relative POSIX path; raise otherwise.

    Rejected: empty, absolute (`/x`), root-relative or UNC (`\\\\host\\x`, `\\x`), drive (`C:\\x`,
    `D:rel`), any backslash, `.`/`..`/empty components, control characters, over-long names.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"unsafe {what} {name!r}: expected a non-empty relative path")
    if len(name) > MAX_PATH_CHARS:
        raise UnsafePathError(
            f"unsafe {what} {name[:60]!r}...: expected at most {MAX_PATH_CHARS} characters, got {len(name)}"
        )
    if _CONTROL.search(name):
        raise UnsafePathError(f"unsafe {what} {name!r}: control or NUL character")
    if "\\" in name:
        raise UnsafePathError(f"unsafe {what} {name!r}: backslash (Windows separator) not allowed")
    if name.startswith("/"):
        raise UnsafePathError(f"unsafe {what} {name!r}: absolute path")
    for part in name.split("/"):
        if _DRIVE.match(part):  # each part, as os.path.join on Windows would read it (C:x, D:rel)
            raise UnsafePathError(f"unsafe {what} {name!r}: drive-letter path")
        if part in ("", ".", ".."):
            raise UnsafePathError(f"unsafe {what} {name!r}: empty, '.' or '..' component")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(f"unsafe {what} {name!r}: component longer than {MAX_COMPONENT_BYTES} bytes")
    return name


def validate_repo_type(repo_type: object) -> RepoType:
    if repo_type not in REPO_TYPES:
        raise UnsafePathError(f"unknown repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
    return repo_type  # type: ignore[return-value]


def validate_repo_id(repo_id: object) -> str:
    """Accept `name` or `namespace/name` as the Hub does (`[\\w.-]`, ≤96 chars a part, no `--`/`..`)."""
    if not isinstance(repo_id, str) or not repo_id:
        raise UnsafePathError(f"invalid repo id {repo_id!r}: expected 'namespace/name'")
    parts = repo_id.split("/")
    if len(parts) > 2 or any(not _REPO_PART.fullmatch(p) for p in parts):
        raise UnsafePathError(f"invalid repo id {repo_id!r}: expected 'namespace/name' of [A-Za-z0-9_.-]")
    if "--" in repo_id or ".." in repo_id or repo_id.endswith(".git") or repo_id.endswith("."):
        raise UnsafePathError(f"invalid repo id {repo_id!r}: '--', '..' and a trailing '.git' or '.' are not allowed")
    return repo_id


def validate_revision(revision: object) -> str:
    """Accept branch, tag, `refs/pr/N`, `refs/convert/x` and hex shas: safe as `refs/<revision>`."""
    if not isinstance(revision, str) or not revision:
        raise UnsafePathError(f"invalid revision {revision!r}: expected a branch, tag or commit sha")
    if len(revision) > 255:
        raise UnsafePathError(f"invalid revision {revision[:40]!r}...: longer than 255 characters")
    for part in revision.split("/"):
        if not _REVISION_PART.fullmatch(part) or part.endswith(".lock") or ".." in part:
            raise UnsafePathError(f"invalid revision {revision!r}: expected [A-Za-z0-9_.+-] parts separated by '/'")
    return revision


def is_commit_sha(revision: str) -> bool:
    """True for a full 40-lowercase-hex commit id (the only form clients treat as immutable)."""
    return bool(_SHA.fullmatch(revision))


def repo_folder_name(repo_type: str, repo_id: str) -> str:
    """`models--org--name`, the HF cache folder of a repo."""
    validate_repo_type(repo_type)
    validate_repo_id(repo_id)
    return f"{repo_type}s--" + repo_id.replace("/", "--")
