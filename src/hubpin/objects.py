"""The data model shared by store, lock, server and bundles: repos, files, commits."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .hashing import lfs_pointer_blob_id
from .paths import RepoType, repo_folder_name, safe_relpath, validate_repo_id, validate_repo_type

__all__ = ["Commit", "FileEntry", "RepoKey", "commit_id"]

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, order=True)
class RepoKey:
    """A repo on the Hub: its type and id. Validated on creation."""

    type: RepoType
    id: str

    def __post_init__(self) -> None:
        validate_repo_type(self.type)
        validate_repo_id(self.id)

    @property
    def folder(self) -> str:
        """`models--org--name`: the folder name in an HF cache (and the key prefix in S3)."""
        return repo_folder_name(self.type, self.id)

    @property
    def url_prefix(self) -> str:
        """`org/name` or `datasets/org/name`: the path prefix of `/resolve/` URLs."""
        return self.id if self.type == "model" else f"{self.type}s/{self.id}"

    @property
    def api_prefix(self) -> str:
        return f"api/{self.type}s/{self.id}"

    def __str__(self) -> str:
        return self.id if self.type == "model" else f"{self.type}s/{self.id}"


@dataclass(frozen=True, order=True)
class FileEntry:
    """One file of a commit. `etag` is the Hub ETag and the cache blob name:
    the git blob sha1 for regular files, the sha256 for LFS files."""

    path: str
    size: int
    etag: str
    sha256: str | None = None  # None only when serving a plain HF cache that never recorded it

    def __post_init__(self) -> None:
        safe_relpath(self.path)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ValueError(f"{self.path}: size must be a non-negative integer, got {self.size!r}")
        if not (_HEX40.fullmatch(self.etag) or _HEX64.fullmatch(self.etag)):
            raise ValueError(f"{self.path}: etag must be 40 or 64 lowercase hex, got {self.etag!r}")
        if self.sha256 is not None and not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"{self.path}: sha256 must be 64 lowercase hex, got {self.sha256!r}")
        if len(self.etag) == 64 and self.sha256 is not None and self.etag != self.sha256:
            raise ValueError(f"{self.path}: an LFS etag must equal the sha256")

    @property
    def lfs(self) -> bool:
        return len(self.etag) == 64

    @property
    def git_oid(self) -> str:
        """The tree `oid`: the git blob id of the content, or of the LFS pointer."""
        return lfs_pointer_blob_id(self.etag, self.size) if self.lfs else self.etag


@dataclass(frozen=True)
class Commit:
    """A commit of a repo: its id, its complete file list sorted by path, and provenance."""

    sha: str
    files: tuple[FileEntry, ...]
    parent: str | None = None
    created: str = ""
    message: str = ""
    complete: bool = True  # False when read from a partial HF-cache snapshot
    _by_path: dict[str, FileEntry] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _HEX40.fullmatch(self.sha):
            raise ValueError(f"commit id must be 40 lowercase hex, got {self.sha!r}")
        files = tuple(sorted(self.files, key=lambda f: f.path))
        object.__setattr__(self, "files", files)
        index = {f.path: f for f in files}
        if len(index) != len(files):
            raise ValueError(f"commit {self.sha} lists a path twice")
        object.__setattr__(self, "_by_path", index)

    def file(self, path: str) -> FileEntry | None:
        return self._by_path.get(path)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def directories(self) -> list[str]:
        """Every folder implied by the file paths, sorted."""
        dirs: set[str] = set()
        for f in self.files:
            parts = f.path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return sorted(dirs)


def commit_id(files: tuple[FileEntry, ...] | list[FileEntry], parent: str | None) -> str:
    """Deterministic commit id: the same content and parent always give the same 40-hex id."""
    h = hashlib.sha1(b"hubpin-commit 1\n")
    h.update(f"parent {parent or '-'}\n".encode())
    for f in sorted(files, key=lambda f: f.path):
        h.update(f"{f.path}\0{f.size}\0{f.etag}\0{f.sha256 or '-'}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()
