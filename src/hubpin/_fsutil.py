"""Crash- and race-safe file operations.

Correctness never depends on file locks (flock is a no-op on some NFS/Lustre mounts): every
writer uses its own uniquely named temp file in the target directory, fsyncs it, and publishes
it with one atomic `os.replace`. Readers therefore see either nothing or the whole file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TMP_SUFFIX",
    "atomic_symlink",
    "atomic_write_bytes",
    "fsync_dir",
    "is_inside",
    "open_new",
    "publish",
    "temp_name",
]

TMP_SUFFIX = ".hubpin-tmp"


def temp_name(final: Path) -> Path:
    """A unique temp path beside `final` (same filesystem, so `os.replace` is atomic)."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_new(path: Path) -> BinaryIO:
    """Create a new file for writing; never follows or truncates an existing file or symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    return os.fdopen(fd, "wb")


def publish(tmp: Path, final: Path, *, fsync: bool = True) -> None:
    """Atomically move a finished temp file to its final name."""
    if fsync:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, final)
    if fsync:
        fsync_dir(final.parent)


def atomic_write_bytes(final: Path, data: bytes, *, fsync: bool = True) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        with open_new(tmp) as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
        if fsync:
            fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_symlink(target: str, link: Path) -> None:
    """Point `link` at `target` (relative), replacing whatever was there, atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if link.is_symlink() and os.readlink(link) == target:
            return
    tmp = temp_name(link)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if e.errno == errno.EISDIR:
            raise
        raise


def is_inside(path: Path, root: Path) -> bool:
    """True if `path`, fully resolved (symlinks followed), lies inside `root`."""
    try:
        path.resolve(strict=False).relative_to(root.resolve(strict=False))
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def removing(path: Path) -> Iterator[Path]:
    """Yield `path`; remove it on the way out whatever happened (temp-file hygiene)."""
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
