"""Run-time API: where the locked snapshot of a repo is, with no network access.

    import hubpin
    from transformers import AutoModel
    model = AutoModel.from_pretrained(hubpin.snapshot("org/name"))

The lock is found the way the CLI finds it (`hubpin.toml` / `pyproject.toml` from the cwd
upwards, `hubpin.lock` beside it), or given as a path or a `Lockfile`. A parsed lock is cached
by (path, mtime, size); a snapshot that passed the full check is trusted while the mtimes of
its folders and of `blobs/` stay the same, so a warm call costs a few `stat`s.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from . import _env
from .errors import LockfileError, NotSyncedError
from .lockfile import LockedRepo, Lockfile, read_lock

__all__ = ["commit", "snapshot"]

_cache: dict[Path, tuple[tuple[int, int, int], Lockfile]] = {}
_cache_lock = threading.Lock()
_dirs: dict[Path, tuple[LockedRepo, list[str]]] = {}
_checked: dict[Path, tuple[LockedRepo, tuple[int, ...]]] = {}
#: folder mtimes are trusted only once this old: a change within the same clock tick is invisible
_QUIET_NS = 2_000_000_000


def _stamps(entry: LockedRepo, snap: Path) -> tuple[int, ...] | None:
    """mtimes of `blobs/` and of every snapshot folder holding a locked file: removing or adding
    an entry (a link, a blob) changes its folder's mtime, so equal stamps mean nothing vanished."""
    dirs = _dirs.get(snap)
    if dirs is None or dirs[0] is not entry:
        parents = sorted({str(snap / f.path).rsplit(os.sep, 1)[0] for f in entry.files})
        dirs = (entry, [str(snap.parent.parent / "blobs"), *parents])
        _dirs[snap] = dirs
    try:
        return tuple(os.stat(d).st_mtime_ns for d in dirs[1])
    except OSError:
        return None


def _lock_path(start: Path | None = None) -> Path:
    from .config import find_project

    return find_project(start).lock_path


def _load(lock: Lockfile | str | os.PathLike[str] | None) -> tuple[Lockfile, str]:
    if isinstance(lock, Lockfile):
        return lock, "the given lock"
    path = Path(lock).absolute() if lock is not None else _lock_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise LockfileError(f"{path}: no lockfile", hint="run `hubpin lock` first") from None
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _cache_lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1], str(path)
    parsed = read_lock(path)
    with _cache_lock:
        _cache[path] = (key, parsed)
    return parsed, str(path)


def _entry(repo_id: str, lock: Lockfile | str | os.PathLike[str] | None, repo_type: str | None) -> LockedRepo:
    lockfile, where = _load(lock)
    entry = lockfile.find(repo_id, repo_type)
    if entry is None:
        kind = f"{repo_type} " if repo_type else ""
        raise LockfileError(
            f"{kind}{repo_id} is not in {where}",
            hint=f"declare and lock it: `hubpin add {repo_id}{' --dataset' if repo_type == 'dataset' else ''}`",
        )
    return entry


def snapshot(
    repo_id: str,
    *,
    lock: Lockfile | str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    repo_type: str | None = None,
) -> Path:
    """The local folder of `repo_id`'s locked commit in the HF cache; no network.

    Checks that every locked file is there (existence only; `hubpin verify` checks hashes) and
    raises `NotSyncedError` (a `FileNotFoundError`) naming the first missing one otherwise.
    """
    entry = _entry(repo_id, lock, repo_type)
    root = Path(cache_dir).expanduser() if cache_dir is not None else _env.default_cache_dir()
    snap = root / entry.repo.folder / "snapshots" / entry.commit
    stamps = _stamps(entry, snap)
    if stamps is not None and _checked.get(snap) == (entry, stamps):
        return snap  # no entry was added or removed since the last full check
    base = str(snap) + os.sep
    missing = [f.path for f in entry.files if not os.path.exists(base + f.path)]
    if missing:
        raise NotSyncedError(
            f"{entry.repo}@{entry.commit}: {len(missing)} of {len(entry.files)} locked files missing from "
            f"{root} (first: {missing[0]})",
            hint="run `hubpin sync` (or `hubpin sync --from BUNDLE` on an air-gapped machine)",
        )
    if stamps is not None and all(time.time_ns() - t > _QUIET_NS for t in stamps):
        _checked[snap] = (entry, stamps)
    return snap


def commit(
    repo_id: str,
    *,
    lock: Lockfile | str | os.PathLike[str] | None = None,
    repo_type: str | None = None,
) -> str:
    """The 40-hex commit the lock pins for `repo_id` (pass it as `revision=` to any HF loader)."""
    return _entry(repo_id, lock, repo_type).commit
