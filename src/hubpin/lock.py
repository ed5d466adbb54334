"""`hubpin lock`: resolve every declared repo to a commit and the size + hashes of its files.

For each repo in the project:

1. keep the existing pin when the repo is not being upgraded and its declared revision did not
   change; otherwise resolve the revision to a 40-hex commit;
2. list the commit's tree and apply include/exclude (re-listed at the pinned commit only when
   globs are declared, since the lock does not record them);
3. record path, size, etag (the Hub ETag) and sha256 of EVERY file: LFS files take the tree's
   `lfs.oid`; regular files are downloaded from `/resolve/<commit>/<path>` and hashed, and their
   git blob id must equal the tree `oid` (else `HashMismatchError`, nothing written). A sha256
   already in the lock for the same blob id is reused instead of downloading again;
4. run the lock hooks (`default_hooks()`: the policy check, then `LOCK_HOOKS`): they may refuse
   the repo (nothing is written) or add entries (e.g. a repo whose remote code an `auto_map`
   points to).

Repos no longer declared drop out. The result is a `Lockfile`, which serializes deterministically.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from .config import Project, RepoDecl, matches_patterns
from .errors import ConfigError
from .hub import HubClient, RemoteFile
from .lockfile import LockedRepo, Lockfile
from .objects import FileEntry, RepoKey

__all__ = [
    "LOCK_HOOKS",
    "LockContext",
    "LockHook",
    "default_hooks",
    "Outdated",
    "describe_changes",
    "lock_project",
    "lock_repo",
    "outdated",
    "stale_reasons",
    "unlock",
]


@dataclass
class LockContext:
    """What a lock hook sees for one declared repo, after its files are listed and hashed.

    A hook may raise (e.g. `PolicyError`) to stop the lock before anything is written, and may
    return extra `LockedRepo` entries, typically built with `lock_extra`.
    """

    project: Project
    client: HubClient
    decl: RepoDecl
    entry: LockedRepo  # the entry about to be written for `decl`
    previous: Lockfile  # the lock as it was on disk
    fresh: bool  # always True today: hooks run for new or changed entries and on an upgrade
    upgrading: bool  # True if this repo is being upgraded
    remote_files: list[RemoteFile] | None = None  # the full tree, when it was listed in this run
    #: regular files of `entry` downloaded and verified (size, git blob id) in this run:
    #: repo path -> local copy, valid during the hook call. Files whose sha256 was reused from
    #: the previous lock, and LFS files, are not here: fetch those with `client` if needed.
    downloaded: Mapping[str, Path] = field(default_factory=dict)
    _jobs: int = field(default=8, repr=False)

    def lock_extra(
        self,
        repo: RepoKey,
        revision: str,
        *,
        include: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
    ) -> LockedRepo:
        """Lock another repo on behalf of this one (`required_by` = this repo's id), keeping its
        previous pin unless this repo is being upgraded."""
        decl = RepoDecl(repo, revision, include, exclude)
        old = self.previous.get(repo)
        entry = None if self.upgrading else _reuse(self.client, decl, old, self._jobs)[0]
        if entry is None:
            entry = lock_repo(self.client, decl, known=old, jobs=self._jobs)[0]
        required = set(entry.required_by) | {str(self.decl.repo)}
        return LockedRepo(entry.repo, entry.revision, entry.commit, entry.files, entry.complete, tuple(sorted(required)))


LockHook = Callable[[LockContext], Iterable[LockedRepo] | None]

#: extra hooks run by `lock_project` for every declared repo (append yours at import time)
LOCK_HOOKS: list[LockHook] = []


def default_hooks() -> list[LockHook]:
    """What `lock_project` runs when no `hooks` are given: the project's supply-chain policy
    (`hubpin.policy.lock_hook`: pickle, remote code, licenses, cross-repo code entries), then
    `LOCK_HOOKS`."""
    from .policy import lock_hook  # imported late: policy is a heavier module than lock

    return [lock_hook, *(h for h in LOCK_HOOKS if h is not lock_hook)]


class Outdated(NamedTuple):
    """A declared repo whose revision now points somewhere other than the lock says."""

    repo: RepoKey
    revision: str
    locked: str | None  # None when the repo is not in the lock yet
    remote: str


def _hash_files(
    client: HubClient,
    repo: RepoKey,
    commit: str,
    files: list[RemoteFile],
    known: LockedRepo | None,
    jobs: int,
    keep: dict[str, Path] | None,
    keep_dir: Path | None,
) -> list[FileEntry]:
    by_etag = {(f.etag, f.size): f.sha256 for f in (known.files if known else ()) if f.sha256}
    todo = [f for f in files if f.lfs_sha256 is None and (f.oid, f.size) not in by_etag]
    digests: dict[str, str] = {}

    def one(i: int, f: RemoteFile) -> str:
        if keep is None or keep_dir is None:
            return client.hash_file(repo, commit, f).sha256
        local = keep_dir / str(i)  # numbered: the repo's path is never a local file name
        with open(local, "wb") as sink:
            sha256 = client.hash_file(repo, commit, f, sink=sink).sha256
        keep[f.path] = local
        return sha256

    if todo:
        workers = max(1, min(jobs, len(todo)))
        with ThreadPoolExecutor(workers) as pool:
            for f, sha256 in zip(todo, pool.map(one, range(len(todo)), todo), strict=True):
                digests[f.path] = sha256
    entries = []
    for f in files:
        sha256 = f.lfs_sha256 or by_etag.get((f.oid, f.size)) or digests[f.path]
        entries.append(FileEntry(f.path, f.size, f.etag, sha256))
    return entries


def _files_at(
    client: HubClient,
    decl: RepoDecl,
    commit: str,
    known: LockedRepo | None,
    jobs: int,
    keep: dict[str, Path] | None = None,
    keep_dir: Path | None = None,
) -> tuple[LockedRepo, list[RemoteFile]]:
    tree = client.list_files(decl.repo, commit)
    wanted = [f for f in tree if matches_patterns(f.path, decl.include, decl.exclude)]
    entries = _hash_files(client, decl.repo, commit, wanted, known, jobs, keep, keep_dir)
    entry = LockedRepo(decl.repo, decl.revision, commit, tuple(entries), complete=len(wanted) == len(tree))
    return entry, tree


def lock_repo(
    client: HubClient,
    decl: RepoDecl,
    *,
    known: LockedRepo | None = None,
    jobs: int = 8,
    keep: dict[str, Path] | None = None,
    keep_dir: Path | None = None,
) -> tuple[LockedRepo, list[RemoteFile]]:
    """Resolve `decl.revision` now and lock the commit's (filtered) files; also return the tree.

    With `keep`/`keep_dir`, each regular file downloaded (and verified) is kept in `keep_dir`
    and recorded in `keep` (repo path -> local file)."""
    commit = client.resolve(decl.repo, decl.revision)
    return _files_at(client, decl, commit, known, jobs, keep, keep_dir)


def _reuse(
    client: HubClient,
    decl: RepoDecl,
    old: LockedRepo | None,
    jobs: int,
    keep: dict[str, Path] | None = None,
    keep_dir: Path | None = None,
) -> tuple[LockedRepo | None, list[RemoteFile] | None]:
    """The existing pin, still valid for `decl`, or (None, None) when it must be resolved again."""
    if old is None or old.revision != decl.revision:
        return None, None
    if not decl.filtered and old.complete:
        return old, None  # the whole tree of the pinned commit: nothing can have changed
    # globs are not recorded in the lock, so re-list the pinned commit (hashes are reused)
    entry, tree = _files_at(client, decl, old.commit, old, jobs, keep, keep_dir)
    entry = LockedRepo(entry.repo, entry.revision, entry.commit, entry.files, entry.complete, old.required_by)
    return entry, tree


def _upgrading(decl: RepoDecl, upgrade: bool | set[str] | frozenset[str]) -> bool:
    if isinstance(upgrade, bool):
        return upgrade
    return decl.repo.id in upgrade or str(decl.repo) in upgrade


def lock_project(
    project: Project,
    client: HubClient,
    *,
    upgrade: bool | set[str] | frozenset[str] = False,
    hooks: Iterable[LockHook] | None = None,
    previous: Lockfile | None = None,
    jobs: int = 8,
    progress: Callable[[str], None] | None = None,
) -> Lockfile:
    """Lock every declared repo (see the module doc). Writes nothing: pass the result to
    `hubpin.lockfile.write_lock`. `progress`, if given, gets one line per repo being locked.

    `upgrade`: True re-resolves every repo; a set of repo ids (or `datasets/org/name`)
    re-resolves only those. `previous` defaults to the project's `hubpin.lock`.
    """
    if not isinstance(upgrade, bool):
        known = {d.repo.id for d in project.repos} | {str(d.repo) for d in project.repos}
        missing = sorted(set(upgrade) - known)
        if missing:
            raise ConfigError(f"--upgrade {missing[0]}: not declared in {project.config_path}",
                              hint="declare it with `hubpin add`")
    previous = project.read_lock() if previous is None else previous
    hooks = default_hooks() if hooks is None else list(hooks)
    entries: dict[RepoKey, LockedRepo] = {}
    extras: dict[RepoKey, LockedRepo] = {}
    with tempfile.TemporaryDirectory(prefix="hubpin-lock-") as tmp:
        for n, decl in enumerate(project.repos):
            old = previous.get(decl.repo)
            upgrading = _upgrading(decl, upgrade)
            # regular files fetched to hash them are kept for the hooks (no second download)
            keep: dict[str, Path] | None = {} if hooks else None
            keep_dir = Path(tmp) / str(n)
            keep_dir.mkdir()
            if progress is not None and (upgrading or old is None or old.revision != decl.revision or decl.filtered):
                progress(f"locking {decl.repo}@{decl.revision} ...")
            entry, tree = (None, None) if upgrading else _reuse(client, decl, old, jobs, keep, keep_dir)
            if entry is None:
                entry, tree = lock_repo(client, decl, known=old, jobs=jobs, keep=keep, keep_dir=keep_dir)
            # hooks run for new or changed entries and on an explicit upgrade; a re-listed pin
            # that came out the same is as good as kept
            fresh = upgrading or entry != old
            entries[decl.repo] = entry
            if fresh:
                ctx = LockContext(project, client, decl, entry, previous, fresh, upgrading, tree,
                                  MappingProxyType(dict(keep or {})), jobs)
                added = [extra for hook in hooks for extra in hook(ctx) or ()]
            else:
                # a kept pin keeps what the hooks added for it last time, and needs no network
                added = [e for e in previous.repos if str(decl.repo) in e.required_by]
            for extra in added:
                prior = extras.get(extra.repo)
                if prior is not None and prior.commit == extra.commit:
                    extra = replace(extra, required_by=tuple(set(prior.required_by) | set(extra.required_by)))
                extras[extra.repo] = extra
            shutil.rmtree(keep_dir, ignore_errors=True)  # bound the disk used to one repo at a time
    declared = {str(d.repo) for d in project.repos}
    for repo, extra in extras.items():
        # only repos still declared can require it; a declared repo's own entry wins
        required = tuple(sorted(r for r in extra.required_by if r in declared))
        entries.setdefault(repo, replace(extra, required_by=required))
    return Lockfile(tuple(entries.values()))


def unlock(lock: Lockfile, repo: RepoKey) -> Lockfile:
    """`lock` without `repo`, and without the entries only `repo` required (its remote code)."""
    out = []
    for entry in lock.repos:
        if entry.repo == repo:
            continue
        if entry.required_by:
            required = tuple(r for r in entry.required_by if r != str(repo))
            if not required:
                continue
            entry = replace(entry, required_by=required)
        out.append(entry)
    return Lockfile(tuple(out))


def stale_reasons(project: Project, client: HubClient, *, hooks: Iterable[LockHook] | None = None) -> list[str]:
    """Why `hubpin.lock` does not match the config (empty when it does). Writes nothing.

    Declared-but-unlocked, locked-but-undeclared and changed revisions are found offline;
    changed include/exclude globs need one tree listing of the pinned commit."""
    previous = project.read_lock()
    reasons = []
    declared = {d.repo for d in project.repos}
    for decl in project.repos:
        old = previous.get(decl.repo)
        if old is None:
            reasons.append(f"{decl.repo} is declared but not locked")
        elif old.revision != decl.revision:
            reasons.append(f"{decl.repo}: revision {decl.revision!r} declared, {old.revision!r} locked")
    for entry in previous.repos:
        if entry.repo not in declared and not entry.required_by:
            reasons.append(f"{entry.repo} is locked but no longer declared")
    if reasons:
        return reasons
    fresh = lock_project(project, client, hooks=hooks, previous=previous)
    return describe_changes(previous, fresh)


def outdated(project: Project, client: HubClient) -> list[Outdated]:
    """Declared repos whose declared revision now resolves to a commit other than the locked one."""
    lock = project.read_lock()
    result = []
    for decl in project.repos:
        entry = lock.get(decl.repo)
        locked = entry.commit if entry is not None else None
        remote = client.resolve(decl.repo, decl.revision)
        if remote != locked:
            result.append(Outdated(decl.repo, decl.revision, locked, remote))
    return result


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def describe_changes(old: Lockfile, new: Lockfile) -> list[str]:
    """One human line per repo that differs between two locks (empty when they are equal)."""
    lines = []
    keys = sorted({r.repo for r in old.repos} | {r.repo for r in new.repos})
    for key in keys:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if b is None:
            lines.append(f"removed {key}")
        elif a is None:
            lines.append(f"locked {key}@{b.revision} = {b.commit} ({len(b.files)} files, {_size(b.total_size)})")
        elif (a.revision, a.commit) != (b.revision, b.commit):
            lines.append(f"upgraded {key}: {a.revision}@{a.commit[:12]} -> {b.revision}@{b.commit[:12]} "
                         f"({len(b.files)} files, {_size(b.total_size)})")
        else:
            lines.append(f"updated {key}@{b.revision} = {b.commit[:12]}: files {len(a.files)} -> {len(b.files)}")
    return lines
