"""`hubpin sync`: materialize exactly the locked files into the HF cache, verified.

For every locked repo: `blobs/<etag>` (downloaded only when missing; hashed while written and
published only when size, sha256 and etag match), relative `snapshots/<commit>/<path>` links,
`trees/<commit>.json` for complete entries, and `refs/<declared revision>` = the locked commit.

The lock is the authority for the project's declared revision: a `refs/main` that points
elsewhere (the user loaded a newer `main` online, or a tag moved) is moved to the locked commit
and reported, because that ref is what an unmodified `from_pretrained("org/name")` loads
offline. The pinned commit is always what gets fetched; when the endpoint's revision now points
elsewhere, that is reported as drift (`hubpin outdated` shows it, `hubpin lock --upgrade` takes it).

A sync with everything present makes no network request: blobs are checked by existence and
size, links and refs locally. `hubpin verify` is the full hash check.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import _env
from ._download import BlobResult, BlobTask, Cancelled, Downloader, InsufficientSpaceError
from ._fsutil import fsync_dir
from ._partials import _SYNCFS, disk_free, find_partials, partial_bytes, syncfs
from ._rawhttp import RawPool
from .errors import HubpinError, LockfileError, UnsafePathError
from .lockfile import LockedRepo, Lockfile, read_lock
from .objects import FileEntry, RepoKey
from .paths import is_commit_sha, safe_relpath, validate_revision
from .store.hfcache import LocalStore, snapshot_link_target

__all__ = [
    "InsufficientSpaceError",
    "RefChange",
    "RemoteDrift",
    "SyncReport",
    "load_lock",
    "plan_sync",
    "sync",
]

#: room kept free beyond the bytes to download (page cache, metadata, other writers)
SPACE_MARGIN = 16 * 1024 * 1024


@dataclass(frozen=True)
class RefChange:
    """A `refs/<name>` sync moved to the locked commit (`old` None: it did not exist)."""

    repo: RepoKey
    name: str
    old: str | None
    new: str


@dataclass(frozen=True)
class RemoteDrift:
    """The endpoint's `revision` now resolves to `remote`, not the `locked` commit."""

    repo: RepoKey
    revision: str
    locked: str
    remote: str


@dataclass
class RepoPlan:
    """What one locked repo still needs in the cache (computed without any network)."""

    entry: LockedRepo
    missing: dict[str, FileEntry] = field(default_factory=dict)  # etag -> one file with those bytes
    relink: list[FileEntry] = field(default_factory=list)
    tree_missing: bool = False
    ref_old: str | None = None
    ref_ok: bool = True

    @property
    def done(self) -> bool:
        return not self.missing and not self.relink and not self.tree_missing and self.ref_ok


@dataclass
class SyncReport:
    """What `sync` did. `summary()` is the one line the CLI prints."""

    cache_dir: Path
    repos: int = 0
    files: int = 0
    present_files: int = 0
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    reused_bytes: int = 0
    requests: int = 0
    linked: int = 0
    seconds: float = 0.0
    refs_moved: list[RefChange] = field(default_factory=list)
    drift: list[RemoteDrift] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.downloaded_bytes / self.seconds if self.seconds > 0 else 0.0
        parts = [f"synced {self.repos} repo{'s' * (self.repos != 1)}, {self.files} files into {self.cache_dir}:"]
        if self.downloaded_files:
            parts.append(
                f"{self.downloaded_files} downloaded ({_human(self.downloaded_bytes)} in {self.seconds:.1f} s, "
                f"{_human(rate)}/s{', ' + _human(self.reused_bytes) + ' resumed' if self.reused_bytes else ''}),"
            )
        parts.append(f"{self.present_files} already present, all verified")
        moved = [r for r in self.refs_moved if r.old is not None]
        if moved:
            parts.append(f"; {len(moved)} ref(s) moved back to the locked commit")
        return " ".join(parts)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- lock loading --------------------------------------------------------------------------


def load_lock(lock: Lockfile | str | os.PathLike[str] | None, *, start: Path | None = None) -> Lockfile:
    """A Lockfile as given, read from a path, or (None) the project's `hubpin.lock` found from the cwd."""
    if isinstance(lock, Lockfile):
        return lock
    if lock is None:
        from .config import find_project

        path = find_project(start).lock_path
        return read_lock(path)
    return read_lock(lock)


def _check_entry(entry: LockedRepo) -> None:
    """Re-check every name through the one gate before any filesystem call (defence in depth)."""
    try:
        validate_revision(entry.revision)
        if not is_commit_sha(entry.commit):
            raise LockfileError(f"{entry.repo}: commit expected 40 lowercase hex, got {entry.commit!r}")
        for f in entry.files:
            safe_relpath(f.path)
            if f.sha256 is None:
                raise LockfileError(f"{entry.repo}: {f.path}: sha256 expected, got none")
    except UnsafePathError as e:
        raise LockfileError(f"lock entry {entry.repo}: {e.message}") from e


# -- planning (local only) -----------------------------------------------------------------


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_ref(path: Path) -> str | None:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return "(not a file)"
        return path.read_bytes().decode("ascii", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return None


def plan_sync(lock: Lockfile, store: LocalStore) -> list[RepoPlan]:
    """Compare the lock with the cache by existence and size only; no hashing, no network."""
    plans = []
    for entry in lock.repos:
        _check_entry(entry)
        plan = RepoPlan(entry)
        repo_dir = store.repo_dir(entry.repo)
        blobs = repo_dir / "blobs"
        snap = repo_dir / "snapshots" / entry.commit
        for f in entry.files:
            st = _lstat(blobs / f.etag)
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
                plan.missing.setdefault(f.etag, f)
            try:
                ok = os.readlink(snap / f.path) == snapshot_link_target(f.path, f.etag)
            except OSError:
                ok = False
            if not ok:
                plan.relink.append(f)
        if entry.complete:
            plan.tree_missing = _lstat(repo_dir / "trees" / f"{entry.commit}.json") is None
        if entry.revision != entry.commit:
            current = _read_ref(repo_dir / "refs" / entry.revision)
            plan.ref_old = current
            plan.ref_ok = current == entry.commit
        plans.append(plan)
    return plans


# -- progress ------------------------------------------------------------------------------


class _Progress:
    """Rich progress (bytes, rate, ETA) on stderr when it is a terminal; otherwise silent."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("sync"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                console=Console(file=sys.stderr), transient=True,
            )
            self._task = self._bar.add_task("sync", total=total)
            self._bar.start()

    def advance(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- sync ----------------------------------------------------------------------------------


def sync(
    lock: Lockfile | str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    jobs: int = 8,
    token: str | None = None,
    progress: bool | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    fsync: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    start: str | os.PathLike[str] | None = None,
) -> SyncReport:
    """Materialize exactly the locked files into the HF cache (`HF_HUB_CACHE` by default).

    Only missing blobs are fetched, in parallel over keep-alive connections, from
    `{endpoint}/{repo}/resolve/{commit}/{path}`; each is hashed while written and published
    only after its size, sha256 and etag match. Interrupted downloads resume on the next run.
    Snapshot links, the tree cache and `refs/<revision>` are written only once every blob of
    the repo is in place. With everything present, no network request is made. The endpoint
    is `endpoint`, else `HF_ENDPOINT`, else the `[settings] endpoint` of the project found from
    `start` (default: the lock's folder, else the cwd), else https://huggingface.co.

    Raises `DriftError` when the endpoint serves another commit, `HashMismatchError` on bad
    bytes, `RemoteError` when the endpoint fails, `InsufficientSpaceError` when the disk is
    too small; the cache keeps everything it had (plus any blob that was fully verified).
    """
    t0 = time.monotonic()
    lockfile = load_lock(lock)
    root = Path(cache_dir).expanduser() if cache_dir is not None else _env.default_cache_dir()
    store = LocalStore(root, fsync=fsync)
    plans = plan_sync(lockfile, store)
    report = SyncReport(cache_dir=store.root, repos=len(plans))
    report.files = sum(len(p.entry.files) for p in plans)
    missing_files = sum(1 for p in plans for f in p.entry.files if f.etag in p.missing)
    report.present_files = report.files - missing_files
    if all(p.done for p in plans):
        report.seconds = time.monotonic() - t0
        return report

    partials = {p.entry.repo: _partial_etags(store.repo_dir(p.entry.repo) / "blobs") for p in plans if p.missing}
    tasks = [
        BlobTask(p.entry.repo, p.entry.commit, f, store.repo_dir(p.entry.repo) / "blobs",
                 store.root / ".locks" / p.entry.repo.folder, f.etag in partials[p.entry.repo])
        for p in plans
        for f in p.missing.values()
    ]
    if tasks:
        for p in plans:
            if p.missing:
                _refuse_symlinked_dirs(store, p.entry.repo)
        _preflight_space(store.root, tasks)
        if start is None and isinstance(lock, str | os.PathLike):
            start = Path(lock).parent
        # durability before any link or ref names a new blob: one syncfs for the whole run where
        # Linux has it (a crash before it leaves at worst a short blob nothing links to, which the
        # next sync's size check re-fetches), else an fdatasync per blob before its rename
        batched = fsync and _SYNCFS is not None
        results = _download_all(tasks, plans, report, endpoint=endpoint,
                                start=Path(start) if start is not None else None, token=token, jobs=jobs,
                                progress=progress, retries=retries, backoff=backoff, fsync=fsync and not batched,
                                on_bytes=on_bytes)
        report.downloaded_files = sum(
            1 for p in plans for f in p.entry.files if f.etag in p.missing and not results[(p.entry.repo, f.etag)].skipped
        )
        report.downloaded_bytes = sum(r.downloaded for r in results.values())
        report.reused_bytes = sum(r.reused for r in results.values())
        report.requests += sum(r.requests for r in results.values())
        if batched and not syncfs(store.root):
            os.sync()
        elif fsync and not batched:
            for p in plans:
                if p.missing:
                    fsync_dir(store.repo_dir(p.entry.repo) / "blobs")

    # supply-chain policy (hubpin.policy): re-check the bytes (pickle by content, the strict scan
    # when allowed) before any snapshot link or ref points at them; refused → PolicyError
    from .policy import enforce_locked_bytes

    if start is None and isinstance(lock, str | os.PathLike):
        start = Path(lock).parent
    enforce_locked_bytes([p.entry for p in plans if not p.done],
                         lambda e, f: store.repo_dir(e.repo) / "blobs" / f.etag, start=start)
    for p in plans:
        _finish_repo(store, p, report)
    report.seconds = time.monotonic() - t0
    return report


def _partial_etags(blobs: Path) -> set[str]:
    """Etags with a partial download in `blobs` (one listdir per repo, not one per file)."""
    return {p.name.split(".", 1)[0] for p in find_partials(blobs)}


def _refuse_symlinked_dirs(store: LocalStore, repo: RepoKey) -> None:
    """Never write through a planted symlink (security.md case 15): the repo folder and blobs/."""
    for d in (store.repo_dir(repo), store.repo_dir(repo) / "blobs", store.root / ".locks" / repo.folder):
        if d.is_symlink():
            raise UnsafePathError(f"{d}: is a symlink inside the cache; refusing to write through it",
                                  hint="remove the link (or the whole repo folder) and rerun `hubpin sync`")


def _preflight_space(root: Path, tasks: list[BlobTask]) -> None:
    """Advisory check (the write path is authoritative): refuse early when the disk is clearly too small."""
    needed = sum(t.entry.size - (partial_bytes(t.blobs_dir, t.entry.etag) if t.partial else 0) for t in tasks)
    free = disk_free(root)
    if free is not None and needed + SPACE_MARGIN > free:
        raise InsufficientSpaceError(
            f"no space for sync into {root}: needed {needed} bytes (+{SPACE_MARGIN} margin), free {free} bytes",
            hint="free some space (e.g. `hubpin gc`) or use --cache-dir on a bigger disk; nothing was written",
        )


def _download_all(
    tasks: list[BlobTask],
    plans: list[RepoPlan],
    report: SyncReport,
    *,
    endpoint: str | None,
    start: Path | None,
    token: str | None,
    jobs: int,
    progress: bool | None,
    retries: int,
    backoff: float,
    fsync: bool,
    on_bytes: Callable[[int], None] | None,
) -> dict[tuple[RepoKey, str], BlobResult]:
    from .hub import USER_AGENT, HubClient

    total = sum(t.entry.size for t in tasks)
    show = sys.stderr.isatty() if progress is None else progress
    bar = _Progress(total, show)

    def count(n: int) -> None:
        bar.advance(n)
        if on_bytes is not None:
            on_bytes(n)

    client = HubClient(_resolve_endpoint(endpoint, start), token, max_retries=1)
    raw = RawPool(client.endpoint, token if token is not None else _env.hf_token(), USER_AGENT)
    downloader = Downloader(client.http, client.file_url, retries=retries, backoff=backoff,
                            on_bytes=count, fsync=fsync, raw=raw if raw.enabled else None)
    results: dict[tuple[RepoKey, str], BlobResult] = {}
    try:
        # big files first, so the tail of the run is not one lone large download
        ordered = sorted(tasks, key=lambda t: -t.entry.size)
        workers = max(1, min(jobs, len(ordered)))
        with ThreadPoolExecutor(workers, thread_name_prefix="hubpin-sync") as pool:
            futures = {pool.submit(downloader.fetch, t): t for t in ordered}
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                first = next((f for f in done if f.exception() is not None), None)
                if first is not None:
                    downloader.stop.set()  # the others stop and keep their bytes for the next run
                    wait(futures)
                    errors = [f.exception() for f in futures if f.exception() is not None]
                    real = [e for e in errors if not isinstance(e, Cancelled)]
                    raise (real or errors)[0]  # type: ignore[misc]
            except KeyboardInterrupt:
                downloader.stop.set()
                raise
            for f, t in futures.items():
                results[(t.repo, t.entry.etag)] = f.result()
        _probe_drift(client, plans, report)
    finally:
        bar.close()
        client.close()
    return results


def _resolve_endpoint(endpoint: str | None, start: Path | None) -> str:
    """`endpoint`, then `HF_ENDPOINT`, then the project's `[settings] endpoint`, then the Hub."""
    from .config import find_project, resolve_endpoint
    from .errors import ConfigError

    project = None
    if endpoint is None:
        try:
            project = find_project(start)
        except ConfigError:
            project = None
    return resolve_endpoint(endpoint, project)


def _probe_drift(client: object, plans: list[RepoPlan], report: SyncReport) -> None:
    """Online anyway: ask where each declared branch/tag points now (advisory; failures ignored)."""
    for p in plans:
        e = p.entry
        if not p.missing or is_commit_sha(e.revision):
            continue
        report.requests += 1
        try:
            remote = client.resolve(e.repo, e.revision)  # type: ignore[attr-defined]
        except HubpinError:
            continue
        if remote != e.commit:
            report.drift.append(RemoteDrift(e.repo, e.revision, e.commit, remote))


def _finish_repo(store: LocalStore, plan: RepoPlan, report: SyncReport) -> None:
    """Links, tree cache, then the ref: a ref never points at a snapshot that is not complete."""
    e = plan.entry
    commit = e.as_commit()
    if plan.relink:
        store.link_snapshot(e.repo, commit, plan.relink)
        report.linked += len(plan.relink)
    if plan.tree_missing:
        store.write_tree_cache(e.repo, commit)
    if not plan.ref_ok:
        old = plan.ref_old
        store.set_ref(e.repo, e.revision, e.commit)
        report.refs_moved.append(RefChange(e.repo, e.revision, old, e.commit))
