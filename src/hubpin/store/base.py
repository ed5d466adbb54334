"""The store interface: refs, commits (trees) and blobs of many repos.

Two implementations share it: `LocalStore` (an HF cache directory) and `S3Store` (the same keys
in a bucket). Every blob write goes through `BlobWriter`, which checks size and content hashes
before anything is published under its final name.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from ..errors import HashMismatchError
from ..hashing import Hasher
from ..objects import Commit, RepoKey
from ..paths import is_commit_sha, validate_revision

__all__ = ["BlobWriter", "Store"]

_SHORT_SHA = re.compile(r"^[0-9a-f]{5,40}$")


class BlobWriter(ABC):
    """Write a blob's bytes; on a clean exit verify them and publish, else leave nothing behind.

    `size`/`sha256` are what the bytes must match; `etag` (a git blob sha1, or the sha256 for
    LFS) is checked too. A mismatch raises `HashMismatchError` and nothing is published.
    """

    def __init__(self, what: str, etag: str, size: int, sha256: str | None) -> None:
        self.what = what
        self.etag = etag
        self.size = size
        self.sha256 = sha256
        # LFS blobs are named by their sha256: skip the git sha1, a second full hash of the bytes
        self.hasher = Hasher(size if len(etag) == 40 else None)

    def write(self, data: bytes | memoryview) -> None:
        if self.hasher.size + len(data) > self.size:
            raise HashMismatchError(
                f"{self.what}: size", expected=f"{self.size} bytes", actual=f"more than {self.size} bytes"
            )
        self.hasher.update(data)
        self._write(data)

    def verify(self) -> None:
        h = self.hasher
        if h.size != self.size:
            raise HashMismatchError(f"{self.what}: size", expected=f"{self.size} bytes", actual=f"{h.size} bytes")
        if self.sha256 is not None and h.sha256 != self.sha256:
            raise HashMismatchError(f"{self.what}: sha256", expected=self.sha256, actual=h.sha256)
        actual_etag = h.sha256 if len(self.etag) == 64 else h.git_sha1
        if actual_etag != self.etag:
            raise HashMismatchError(f"{self.what}: etag", expected=self.etag, actual=actual_etag)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self.verify()
        except BaseException:
            self._abort()
            raise
        self._commit()

    @abstractmethod
    def _write(self, data: bytes | memoryview) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...


class Store(ABC):
    """Refs, commits and blobs of many repos."""

    #: a human-readable location, for messages
    location: str

    # -- repos and refs -------------------------------------------------------------------
    @abstractmethod
    def list_repos(self) -> list[RepoKey]: ...

    @abstractmethod
    def list_refs(self, repo: RepoKey) -> dict[str, str]:
        """All refs: name (`main`, `v1.0`, `refs/pr/1`) → 40-hex commit."""

    @abstractmethod
    def get_ref(self, repo: RepoKey, name: str) -> str | None: ...

    @abstractmethod
    def set_ref(self, repo: RepoKey, name: str, sha: str) -> None: ...

    # -- commits --------------------------------------------------------------------------
    @abstractmethod
    def list_commits(self, repo: RepoKey) -> list[str]: ...

    @abstractmethod
    def get_commit(self, repo: RepoKey, sha: str) -> Commit | None: ...

    @abstractmethod
    def put_commit(self, repo: RepoKey, commit: Commit) -> None:
        """Record a commit whose blobs are all present already."""

    # -- blobs ----------------------------------------------------------------------------
    @abstractmethod
    def has_blob(self, repo: RepoKey, etag: str) -> bool: ...

    @abstractmethod
    def blob_size(self, repo: RepoKey, etag: str) -> int | None: ...

    @abstractmethod
    def read_blob(self, repo: RepoKey, etag: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes [start, end) of a blob in bounded chunks."""

    @abstractmethod
    def blob_writer(self, repo: RepoKey, etag: str, size: int, sha256: str | None) -> BlobWriter: ...

    def local_blob_path(self, repo: RepoKey, etag: str) -> Path | None:
        """A filesystem path to the blob, when the store has one (for zero-copy serving)."""
        return None

    def file_path(self, repo: RepoKey, commit: Commit, path: str) -> Path | None:
        """A filesystem path holding `path` of `commit`, when the store has one."""
        entry = commit.file(path)
        return self.local_blob_path(repo, entry.etag) if entry else None

    # -- hubpin's own metadata (tokens, ...) ----------------------------------------------
    @abstractmethod
    def read_meta(self, name: str) -> bytes | None: ...

    @abstractmethod
    def write_meta(self, name: str, data: bytes) -> None: ...

    @contextlib.contextmanager
    def meta_lock(self, name: str) -> Iterator[None]:
        """Hold across a read-modify-write of metadata `name`, so concurrent writers lose nothing.

        This default locks nothing across processes (an object store has no lock; see docs/s3.md)."""
        yield

    # -- derived --------------------------------------------------------------------------
    def resolve(self, repo: RepoKey, revision: str) -> str | None:
        """Revision (ref name, full or 5+ hex short sha) → 40-hex commit, or None."""
        validate_revision(revision)
        sha = self.get_ref(repo, revision)
        if sha is not None:
            return sha
        if is_commit_sha(revision):
            return revision if self.get_commit(repo, revision) is not None else None
        if _SHORT_SHA.fullmatch(revision):
            matches = [c for c in self.list_commits(repo) if c.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        return None

    def has_repo(self, repo: RepoKey) -> bool:
        return bool(self.list_refs(repo)) or bool(self.list_commits(repo))
