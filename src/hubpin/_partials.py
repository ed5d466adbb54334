"""Resumable partial downloads in an HF cache's `blobs/`, and the disk helpers sync needs.

A partial is `blobs/<etag>.hubpin-partial` (resting: its writer stopped cleanly) or
`blobs/<etag>.<pid>@<host>.<rand>.hubpin-partial` (in flight, or orphaned by a SIGKILL). A new
run takes one over with an atomic rename, so two writers never share a file; an in-flight file
of a live local process is never taken, one of another host only when untouched for 10 minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import sys
import time
import uuid
from pathlib import Path

__all__ = [
    "FOREIGN_STALE_SECONDS",
    "PARTIAL_SUFFIX",
    "claim",
    "disk_free",
    "find_partials",
    "inflight_name",
    "is_stale_partial",
    "partial_bytes",
    "resting_name",
    "syncfs",
]

PARTIAL_SUFFIX = ".hubpin-partial"
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"
_PARTIAL = re.compile(
    r"^(?P<etag>[0-9a-f]{40}|[0-9a-f]{64})(?:\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.[0-9a-f]{8})?"
    + re.escape(PARTIAL_SUFFIX)
    + "$"
)
#: an in-flight file of another host is taken over only when untouched for this long
FOREIGN_STALE_SECONDS = 600.0


# -- partial files -------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_partial(path: Path, *, now: float | None = None) -> bool:
    """True when no live writer owns this partial: a resting one, a dead local pid, or an old foreign one."""
    m = _PARTIAL.match(path.name)
    if m is None:
        return False
    if m.group("pid") is None:
        return True
    if m.group("host") == _HOST:
        return not _pid_alive(int(m.group("pid")))
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return age > FOREIGN_STALE_SECONDS


def find_partials(blobs_dir: Path, etag: str | None = None) -> list[Path]:
    """Every partial download in `blobs_dir` (of one etag, when given)."""
    try:
        names = os.listdir(blobs_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        m = _PARTIAL.match(name)
        if m and (etag is None or m.group("etag") == etag):
            out.append(blobs_dir / name)
    return sorted(out)


def partial_bytes(blobs_dir: Path, etag: str) -> int:
    """Bytes already on disk for `etag` in claimable partials (for progress and space checks)."""
    best = 0
    for p in find_partials(blobs_dir, etag):
        if is_stale_partial(p):
            with contextlib.suppress(OSError):
                st = p.lstat()
                if stat.S_ISREG(st.st_mode):
                    best = max(best, st.st_size)
    return best


def inflight_name(blobs_dir: Path, etag: str) -> Path:
    return blobs_dir / f"{etag}.{os.getpid()}@{_HOST}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"


def resting_name(blobs_dir: Path, etag: str) -> Path:
    return blobs_dir / f"{etag}{PARTIAL_SUFFIX}"


def claim(blobs_dir: Path, etag: str, size: int, mine: Path) -> int:
    """Rename the longest claimable partial of `etag` to `mine`; return its length (0 if none).

    The rename is atomic, so of two processes racing for one partial exactly one gets it.
    """
    candidates = []
    for p in find_partials(blobs_dir, etag):
        if not is_stale_partial(p):
            continue
        with contextlib.suppress(OSError):
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                candidates.append((st.st_size, p))
            else:  # a planted symlink or folder: never write through it
                p.unlink()
    for length, p in sorted(candidates, reverse=True):
        try:
            os.rename(p, mine)
        except FileNotFoundError:
            continue  # another process won it
        if length > size:  # longer than the blob can be: worthless
            os.truncate(mine, 0)
            return 0
        # the losers of the sort are older attempts at the same bytes: drop them
        for _n, other in candidates:
            if other != p:
                with contextlib.suppress(FileNotFoundError):
                    other.unlink()
        return os.stat(mine).st_size
    return 0


# -- disk space ----------------------------------------------------------------------------


def disk_free(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (or its nearest existing parent); None if unknown."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        usage = os.statvfs(p)
    except OSError:
        return None
    if usage.f_blocks == 0:  # FUSE mounts (BlobFuse, #3097) report nothing: the write path decides
        return None
    return usage.f_bavail * usage.f_frsize


def _libc_syncfs():  # noqa: ANN202 - a ctypes function, or None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


_SYNCFS = _libc_syncfs() if sys.platform.startswith("linux") else None


def syncfs(path: Path) -> bool:
    """Flush every dirty page of the filesystem holding `path` (Linux `syncfs`); False if unavailable.

    One call after many small blobs costs one journal commit instead of one fsync per file.
    """
    if _SYNCFS is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        return _SYNCFS(fd) == 0
    finally:
        os.close(fd)

