"""One-pass hashing: sha256 and the git blob sha1 together, plus the Hub's LFS pointer id.

hashlib releases the GIL on large updates, so `hash_files` scales over threads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CHUNK",
    "Digest",
    "Hasher",
    "git_blob_id",
    "hash_file",
    "hash_files",
    "lfs_pointer",
    "lfs_pointer_blob_id",
]

CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    git_sha1: str  # git blob id of the content itself


class Hasher:
    """Feed bytes once; get sha256 and (when the size is known up front) the git blob sha1."""

    def __init__(self, size: int | None = None) -> None:
        self.size = 0
        self._expected = size
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(f"blob {size}\0".encode()) if size is not None else None

    def update(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        self._sha256.update(data)
        if self._sha1 is not None:
            self._sha1.update(data)

    def copy(self) -> Hasher:
        other = Hasher.__new__(Hasher)
        other.size = self.size
        other._expected = self._expected
        other._sha256 = self._sha256.copy()
        other._sha1 = self._sha1.copy() if self._sha1 is not None else None
        return other

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def git_sha1(self) -> str:
        if self._sha1 is None or self.size != self._expected:
            # the git header carries the length, so a wrong size up front means recomputation is impossible
            raise ValueError("git blob id needs the exact size up front")
        return self._sha1.hexdigest()

    def digest(self) -> Digest:
        return Digest(self.size, self.sha256, self.git_sha1)


def _read_chunks(path: Path, start: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as f:
        if start:
            f.seek(start)
        while chunk := f.read(CHUNK):
            yield chunk


def hash_file(path: str | os.PathLike[str]) -> Digest:
    """Hash a file in one read; raises OSError if it changes size while being read."""
    p = Path(path)
    size = p.stat().st_size
    h = Hasher(size)
    for chunk in _read_chunks(p):
        h.update(chunk)
    if h.size != size:
        raise OSError(f"{p}: file changed while hashing (expected {size} bytes, read {h.size})")
    return h.digest()


def hash_files(paths: Iterable[str | os.PathLike[str]], jobs: int | None = None) -> list[Digest]:
    """Hash many files on all cores (order preserved)."""
    paths = list(paths)
    workers = max(1, min(jobs or (os.cpu_count() or 1), len(paths) or 1))
    if workers == 1:
        return [hash_file(p) for p in paths]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(hash_file, paths))


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_pointer_blob_id(sha256: str, size: int) -> str:
    """The Hub tree `oid` of an LFS file: the git blob id of its pointer file."""
    return git_blob_id(lfs_pointer(sha256, size))
