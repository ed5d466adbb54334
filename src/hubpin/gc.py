"""`hubpin gc`: drop from the HF cache what nothing references.

Roots are every `refs/<name>` of every repo, plus (with `keep_locked`, the default) every commit
the given locks pin. Removed: snapshots (and their `trees/<sha>.json`, `.no_exist/<sha>/` and
hubpin commit record) of commits that are no root, blobs that no kept snapshot links to and no
lock pins, and stale partial downloads (`*.hubpin-partial` whose writer is gone) and hubpin temp
files older than an hour. Note: huggingface_hub writes no ref for a download by commit sha, so
such snapshots count as unreferenced; `--dry-run` shows what would go.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import _env
from ._fsutil import TMP_SUFFIX
from ._partials import find_partials, is_stale_partial
from .lockfile import Lockfile
from .objects import RepoKey
from .paths import is_commit_sha
from .store.hfcache import META_DIR, LocalStore

__all__ = ["GcReport", "Removal", "gc"]

TEMP_MAX_AGE = 3600.0


@dataclass(frozen=True)
class Removal:
    kind: str  # snapshot | blob | partial | temp
    path: Path
    bytes: int


@dataclass
class GcReport:
    cache_dir: Path
    dry_run: bool
    removed: list[Removal] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes for r in self.removed)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        counts: dict[str, int] = {}
        for r in self.removed:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        what = ", ".join(f"{n} {k}{'s' * (n != 1)}" for k, n in sorted(counts.items())) or "nothing to remove"
        return f"gc {self.cache_dir}: {what}; {verb} {self.bytes_freed} bytes"

    def to_json(self) -> dict[str, object]:
        return {
            "cache_dir": str(self.cache_dir),
            "dry_run": self.dry_run,
            "bytes_freed": self.bytes_freed,
            "removed": [{"kind": r.kind, "path": str(r.path), "bytes": r.bytes} for r in self.removed],
        }


def _size(path: Path) -> int:
    with contextlib.suppress(OSError):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            return st.st_size
    return 0


def _tree_size(path: Path) -> int:
    """Bytes of regular files under `path` (snapshots of symlink-free caches hold real files)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        total += sum(_size(Path(dirpath) / n) for n in files)
    return total


def gc(
    locks: Iterable[Lockfile | str | os.PathLike[str]] = (),
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    keep_locked: bool = True,
    dry_run: bool = False,
) -> GcReport:
    """Remove unreferenced snapshots, blobs and stale partial downloads; report the bytes freed."""
    from .sync import load_lock

    lockfiles = [load_lock(x) for x in locks]
    root = Path(cache_dir).expanduser() if cache_dir is not None else _env.default_cache_dir()
    store = LocalStore(root)
    report = GcReport(cache_dir=store.root, dry_run=dry_run)
    pinned: dict[RepoKey, dict[str, set[str]]] = {}  # repo -> commit -> etags
    if keep_locked:
        for lf in lockfiles:
            for e in lf.repos:
                pinned.setdefault(e.repo, {}).setdefault(e.commit, set()).update(f.etag for f in e.files)
    for repo in store.list_repos():
        _gc_repo(store, repo, pinned.get(repo, {}), report)
    _gc_temp(store.root / META_DIR, report)
    if not dry_run:
        for r in report.removed:
            _remove(r)
    return report


def _gc_repo(store: LocalStore, repo: RepoKey, pinned: dict[str, set[str]], report: GcReport) -> None:
    repo_dir = store.repo_dir(repo)
    keep_commits = set(pinned) | set(store.list_refs(repo).values())
    keep_blobs: set[str] = set().union(*pinned.values()) if pinned else set()
    snaps = repo_dir / "snapshots"
    if snaps.is_dir() and not snaps.is_symlink():
        for snap in sorted(snaps.iterdir()):
            if snap.name in keep_commits:
                keep_blobs.update(_linked_blobs(snap, repo_dir / "blobs"))
                continue
            report.removed.append(Removal("snapshot", snap, _tree_size(snap) if snap.is_dir() else 0))
            if is_commit_sha(snap.name):
                for extra in (
                    repo_dir / "trees" / f"{snap.name}.json",
                    repo_dir / ".no_exist" / snap.name,
                    store.root / META_DIR / "commits" / repo.folder / f"{snap.name}.json",
                ):
                    if os.path.lexists(extra):
                        report.removed.append(Removal("snapshot", extra, 0))
    blobs = repo_dir / "blobs"
    if not blobs.is_dir() or blobs.is_symlink():
        return
    partials = set(find_partials(blobs))
    now = time.time()
    for p in sorted(blobs.iterdir()):
        if p in partials:
            if is_stale_partial(p, now=now):
                report.removed.append(Removal("partial", p, _size(p)))
        elif p.name.endswith(TMP_SUFFIX):
            _maybe_temp(p, now, report)
        elif p.name not in keep_blobs and (len(p.name) in (40, 64)):
            report.removed.append(Removal("blob", p, _size(p)))
    for d in (repo_dir / "refs", repo_dir / "snapshots", repo_dir / "trees"):
        if d.is_dir():
            for dirpath, _dirs, files in os.walk(d):
                for n in files:
                    if n.endswith(TMP_SUFFIX):
                        _maybe_temp(Path(dirpath) / n, now, report)


def _linked_blobs(snap: Path, blobs: Path) -> set[str]:
    out = set()
    real_blobs = blobs.resolve()
    for dirpath, _dirs, files in os.walk(snap):
        for n in files:
            p = Path(dirpath) / n
            if p.is_symlink():
                target = p.resolve()
                if target.parent == real_blobs:
                    out.add(target.name)
    return out


def _maybe_temp(p: Path, now: float, report: GcReport) -> None:
    with contextlib.suppress(OSError):
        if now - p.lstat().st_mtime > TEMP_MAX_AGE:
            report.removed.append(Removal("temp", p, _size(p)))


def _gc_temp(meta: Path, report: GcReport) -> None:
    if not meta.is_dir():
        return
    now = time.time()
    for dirpath, _dirs, files in os.walk(meta):
        for n in files:
            if n.endswith(TMP_SUFFIX):
                _maybe_temp(Path(dirpath) / n, now, report)


def _remove(r: Removal) -> None:
    p = r.path
    with contextlib.suppress(FileNotFoundError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
