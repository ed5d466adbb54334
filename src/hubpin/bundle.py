"""Air-gap bundles: carry pinned repos across an air gap, proven intact.

    export_bundle(OUT, store, entries, sign_key=KEY)   one file: manifest, blobs, signature
    export_dir(OUT, store, entries)                    OUT/<org>/<name>/… real files
    import_bundle(BUNDLE, store, trust=PUB)            verify everything, then install
    sync_from_bundle(lock, BUNDLE)                     install exactly the locked files
    bundle_info(BUNDLE)                                manifest + signer, no blob read

Import streams the bundle into a staging folder on the target's filesystem, hashing every
byte; only when every blob, the end of the archive and (with `trust`) the signature checked
out are blobs moved into place, then snapshots, `trees/`, and refs. On any failure the staging
folder is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._bundle_format import BlobRef, Manifest
from ._bundle_read import BlobDigest, BundleReader
from ._bundle_write import select_entries, write_bundle, write_dir
from .errors import BundleError, HubpinError, NotSyncedError
from .hashing import CHUNK
from .lockfile import LockedRepo, Lockfile
from .objects import Commit, RepoKey
from .paths import is_commit_sha
from .signing import KeyPair, Signature, fingerprint, generate_keypair, load_public_key
from .store import LocalStore, Store, open_store
from .store.hfcache import snapshot_link_target

__all__ = [
    "BundleInfo",
    "ImportReport",
    "KeyPair",
    "bundle_info",
    "export_bundle",
    "export_dir",
    "generate_keypair",
    "import_bundle",
    "select_entries",
    "sync_from_bundle",
]


# -- export -------------------------------------------------------------------------------
def export_bundle(out: str | os.PathLike[str], store: Store, entries: list[LockedRepo], *,
                  sign_key: str | os.PathLike[str] | None = None) -> Manifest:
    """Write one bundle file `out` holding `entries` (see `select_entries`), read and re-verified
    from `store`. Signed with the ed25519 private key `sign_key` when given. Nothing is left at
    `out` on failure (a corrupt cached blob raises `HashMismatchError`)."""
    require_present(store, entries)
    fsync = getattr(store, "fsync", True)
    with _export_errors(out):
        return write_bundle(store, entries, Path(out), sign_key=Path(sign_key) if sign_key else None, fsync=fsync)


def export_dir(out: str | os.PathLike[str], store: Store, entries: list[LockedRepo]) -> dict[str, Any]:
    """Write `out/<org>/<name>/<path>` byte-identical real files (+ `hubpin-manifest.json`), loadable
    with `from_pretrained(out/<org>/<name>)`. Verified while copying; nothing left on failure."""
    require_present(store, entries)
    with _export_errors(out):
        return write_dir(store, entries, Path(out), fsync=getattr(store, "fsync", True))


@contextlib.contextmanager
def _export_errors(out: str | os.PathLike[str]) -> Iterator[None]:
    """OS errors while exporting as one-line HubpinErrors (the temp output is already removed)."""
    try:
        yield
    except HubpinError:
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HubpinError(f"no space left on device writing {out}: {e.strerror}",
                              hint="free some space or export elsewhere; nothing was left at the output") from e
        raise HubpinError(f"exporting to {out}: {e.strerror or e} ({e.filename or out})") from e


# -- info ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleInfo:
    """What `bundle_info` read: the manifest, the signer (verified) and the file size."""

    path: Path
    manifest: Manifest
    signer: str | None
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.path),
            "bytes": self.size,
            "signed": self.signer is not None,
            "signer": self.signer,
            "blobs": len(self.manifest.blobs),
            "blob_bytes": self.manifest.total_size,
            "repos": [{"type": r.repo.type, "id": r.repo.id, "revision": r.revision, "commit": r.commit,
                       "complete": r.complete, "files": len(r.files), "bytes": r.total_size}
                      for r in self.manifest.repos],
        }


def bundle_info(path: str | os.PathLike[str]) -> BundleInfo:
    """Read only the manifest and the trailing signature (verified against the manifest)."""
    with BundleReader(path) as r:
        return BundleInfo(Path(path), r.manifest, r.tail_signature.fingerprint if r.tail_signature else None,
                          os.path.getsize(path))


# -- import -------------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What an import did. `refs_kept` lists refs left pointing elsewhere (use force to move them)."""

    target: str
    signer: str | None
    trusted: bool
    repos: list[tuple[str, str, str, int]] = field(default_factory=list)  # (repo, revision, commit, files)
    blobs: int = 0
    bytes: int = 0
    refs_set: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, ref, commit)
    refs_kept: list[tuple[str, str, str, str]] = field(default_factory=list)  # (repo, ref, existing, bundle)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "signer": self.signer, "trusted": self.trusted, "blobs": self.blobs,
            "bytes": self.bytes,
            "repos": [{"repo": r, "revision": v, "commit": c, "files": n} for r, v, c, n in self.repos],
            "refs_set": [{"repo": r, "ref": n, "commit": c} for r, n, c in self.refs_set],
            "refs_kept": [{"repo": r, "ref": n, "existing": e, "bundle": b} for r, n, e, b in self.refs_kept],
        }


class _StagingFile:
    """A new file in the staging folder (O_EXCL|O_NOFOLLOW); raw writes, no userspace buffer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags, 0o644)

    def write(self, data: memoryview) -> None:
        while data:
            n = os.write(self._fd, data)
            data = data[n:]

    def close(self, fsync: bool) -> None:
        if self._fd < 0:
            return
        try:
            if fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1


def _covering(manifest: Manifest, lock: Lockfile, bundle: Path) -> list[LockedRepo]:
    """The lock's entries, after checking the bundle holds every locked file identically."""
    problems = []
    for want in lock.repos:
        have = next((r for r in manifest.repos if r.repo == want.repo), None)
        if have is None:
            problems.append(f"{want.repo} missing")
        elif have.commit != want.commit:
            problems.append(f"{want.repo} commit expected {want.commit}, got {have.commit}")
        else:
            for f in want.files:
                g = next((x for x in have.files if x.path == f.path), None)
                if g is None:
                    problems.append(f"{want.repo}: {f.path} missing")
                elif (g.size, g.etag, g.sha256) != (f.size, f.etag, f.sha256):
                    problems.append(f"{want.repo}: {f.path} expected size {f.size} sha256 {f.sha256}, "
                                    f"got size {g.size} sha256 {g.sha256}")
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BundleError(f"bundle {bundle} does not cover the lock: {'; '.join(problems[:3])}{more}",
                          hint="export a new bundle from a machine synced to this lock")
    return list(lock.repos)


def _no_space(target: str, needed: int, root: Path) -> HubpinError:
    free = shutil.disk_usage(root).free if root.exists() else 0
    return HubpinError(f"no space left on device importing into {target}: needed {needed} bytes, free {free}",
                       hint="free some space, or import into another --cache-dir; nothing was changed")


def _existing_parent(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def import_bundle(bundle: str | os.PathLike[str], store: Store | str | os.PathLike[str] | None = None, *,
                  trust: str | os.PathLike[str] | None = None, force: bool = False,
                  lock: Lockfile | None = None, policy: Any = None) -> ImportReport:
    """Verify `bundle` completely, then install it into `store` (a Store, a cache folder, or None
    for the default HF cache). With `trust` (a public key file) an unsigned bundle or one signed by
    another key is refused before anything is written. Existing refs pointing elsewhere are kept
    unless `force`. With `lock`, only the locked files are installed (the bundle must cover them).
    With `policy` (a `hubpin.policy.Policy`, or a `Project` for per-repo policies) the staged bytes
    are checked (pickle by content) before anything is installed."""
    bundle = Path(bundle)
    target = store if isinstance(store, Store) else open_store(store)
    trusted_fpr = fingerprint(load_public_key(trust)) if trust is not None else None
    with BundleReader(bundle) as reader:
        sig = reader.tail_signature
        if reader.seekable:  # refuse before anything is written; a pipe is checked at its end
            _check_trust(sig, trusted_fpr, bundle)
        manifest = reader.manifest
        entries = _covering(manifest, lock, bundle) if lock is not None else list(manifest.repos)
        report = ImportReport(target.location, sig.fingerprint if sig else None, trusted_fpr is not None)
        try:
            _install(reader, entries, target, force, report, lambda s: _check_trust(s, trusted_fpr, bundle),
                     policy=policy)
        except HubpinError:
            raise
        except OSError as e:
            raise HubpinError(f"importing {bundle} into {target.location}: {e.strerror or e} "
                              f"({e.filename or 'target'})") from e
    return report


def _check_trust(sig: Signature | None, trusted_fpr: str | None, bundle: Path) -> None:
    if trusted_fpr is None:
        return
    if sig is None:
        raise BundleError(f"bundle {bundle}: unsigned (expected a signature by {trusted_fpr})",
                          hint="ask the sender to export with --sign, or import without --trust")
    if sig.fingerprint != trusted_fpr:
        raise BundleError(f"bundle {bundle}: signed by {sig.fingerprint} (expected {trusted_fpr})",
                          hint="the bundle was signed with a key you do not trust")


def sync_from_bundle(lock: Lockfile, bundle_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                     trust: Path | None = None) -> ImportReport:
    """`hubpin sync --from BUNDLE`: install exactly the locked files from a bundle into the HF cache.

    The bundle must hold every locked repo at its locked commit with every locked file identical
    (size, etag, sha256), else `BundleError` before anything is written. `refs/<revision>` is set to
    the locked commit (the lock is the user's intent). The project's policy (found from the cwd;
    else the default) is enforced on the staged bytes."""
    from .policy import default_policy_spec

    return import_bundle(bundle_path, cache_dir, trust=trust, force=True, lock=lock, policy=default_policy_spec())


def _plan_refs(target: Store, entries: list[LockedRepo], force: bool,
               report: ImportReport) -> list[tuple[RepoKey, str, str]]:
    todo = []
    for r in entries:
        if is_commit_sha(r.revision):
            continue  # clients resolve a full sha straight to snapshots/<sha>
        existing = target.get_ref(r.repo, r.revision)
        if existing is not None and existing != r.commit and not force:
            report.refs_kept.append((str(r.repo), r.revision, existing, r.commit))
            continue
        todo.append((r.repo, r.revision, r.commit))
    return todo


def _install(reader: BundleReader, entries: list[LockedRepo], target: Store, force: bool,
             report: ImportReport, check_signature: Callable[[Signature | None], None], policy: Any = None) -> None:
    dests = _destinations(entries, reader.path)
    first: dict[str, tuple[RepoKey, str]] = {}
    for repo, etag, sha, _size in dests:
        first.setdefault(sha, (repo, etag))  # where each content is staged; other uses link to it
    need_sha1 = {str(f.sha256) for r in entries for f in r.files if not f.lfs}
    needed_bytes = sum(b.size for b in reader.manifest.blobs if b.sha256 in first)
    fsync = getattr(target, "fsync", True)
    created: list[Path] = []
    if isinstance(target, LocalStore):
        for d in (target.root, target.root / ".hubpin"):
            if not d.exists():
                d.mkdir(parents=True)  # hidden folder on the target fs: renames out of it are atomic
                created.append(d)
        staging = target.root / ".hubpin" / f"staging-{uuid.uuid4().hex}"
        staging.mkdir()
        space_root = target.root
    else:
        staging = Path(tempfile.mkdtemp(prefix="hubpin-staging-"))
        space_root = staging
    try:
        free = shutil.disk_usage(_existing_parent(space_root)).free
        # advisory: some filesystems report 0 free; and a bundle smaller than what its manifest
        # claims is truncated or hostile, which the stream reports precisely
        if 0 < free < needed_bytes and (reader.size is None or needed_bytes <= reader.size):
            raise _no_space(target.location, needed_bytes, space_root)
        digests, sig = _stream_to_staging(reader, lambda sha: _staged(staging, *first[sha]) if sha in first
                                          else None, False, target.location, needed_bytes, space_root, need_sha1)
        check_signature(sig)
        report.signer = sig.fingerprint if sig else None
        _check_etags(entries, digests, reader.path)
        if policy is not None:
            # supply-chain policy (hubpin.policy): check the staged bytes before anything is installed
            from .policy import enforce_locked_bytes

            enforce_locked_bytes(entries, lambda r, f: _staged(staging, *first[str(f.sha256)]), policy)
        if fsync:  # durable before anything is published; deferred so writeback runs in big batches
            for repo, etag in first.values():
                _fsync_path(_staged(staging, repo, etag))
        refs = _plan_refs(target, entries, force, report)
        _link_shared(staging, dests, first)
        if isinstance(target, LocalStore):
            # new snapshot folders are built in staging too, then each moves in with one rename
            snapshots = _prebuild_snapshots(target, staging, entries)
            _commit_local(target, staging, entries, dests, snapshots, report)
        else:
            _commit_store(target, staging, dests, entries, report)
        for repo, name, sha in refs:
            target.set_ref(repo, name, sha)
            report.refs_set.append((str(repo), name, sha))
        report.repos = [(str(r.repo), r.revision, r.commit, len(r.files)) for r in entries]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if still empty: a failed import leaves the target as it was


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staged(staging: Path, repo: RepoKey, etag: str) -> Path:
    """`<staging>/<models--org--name>/blobs/<etag>`: laid out so a new repo's blobs/ moves in whole."""
    return staging / repo.folder / "blobs" / etag


def _stream_to_staging(reader: BundleReader, path_for: Callable[[str], Path | None], fsync: bool,
                       target: str, needed_bytes: int, space_root: Path, need_sha1: set[str]
                       ) -> tuple[dict[str, BlobDigest], Signature | None]:
    open_files: list[_StagingFile] = []
    made: set[Path] = set()

    def sink(blob: BlobRef) -> Callable[[memoryview], object] | None:
        path = path_for(blob.sha256)
        if path is None:
            return None  # not installed (sync of a subset): hashed on the way past, never written
        for f in open_files:
            f.close(fsync)
        open_files.clear()
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        sf = _StagingFile(path)
        open_files.append(sf)
        return sf.write

    try:
        digests = reader.blobs(sink, need_sha1)
        for f in open_files:
            f.close(fsync)
        open_files.clear()
        sig = reader.finish()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(target, needed_bytes, space_root) from e
        raise HubpinError(f"importing into {target}: {e.strerror or e} ({e.filename or 'staging'})",
                          hint="nothing was changed") from e
    finally:
        for f in open_files:
            with contextlib.suppress(OSError):
                f.close(False)
    return digests, sig


def _check_etags(entries: list[LockedRepo], digests: dict[str, BlobDigest], bundle: Path) -> None:
    for r in entries:
        for f in r.files:
            d = digests[str(f.sha256)]
            actual = d.sha256 if f.lfs else d.git_sha1
            if actual != f.etag:
                raise BundleError(f"bundle {bundle}: {r.repo}: {f.path} etag expected {f.etag}, got {actual}",
                                  hint="the manifest does not match the bytes; get a fresh copy")


def _destinations(entries: list[LockedRepo], bundle: Path) -> list[tuple[RepoKey, str, str, int]]:
    """Each (repo, etag) to install once, with its content's sha256 and size."""
    seen: dict[tuple[RepoKey, str], str] = {}
    out = []
    for r in entries:
        for f in r.files:
            sha = str(f.sha256)
            prior = seen.setdefault((r.repo, f.etag), sha)
            if prior != sha:
                raise BundleError(f"bundle {bundle}: {r.repo}: etag {f.etag} names two contents "
                                  f"(sha256 {prior} and {sha})")
            if prior is sha:
                out.append((r.repo, f.etag, sha, f.size))
    return out


def _link_shared(staging: Path, dests: list[tuple[RepoKey, str, str, int]],
                 first: dict[str, tuple[RepoKey, str]]) -> None:
    """Other uses of a shared content get their own name in staging (before anything moves)."""
    for repo, etag, sha, _size in dests:
        if first[sha] == (repo, etag):
            continue
        src, dst = _staged(staging, *first[sha]), _staged(staging, repo, etag)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)  # blobs are immutable: one inode, no extra space
        except OSError:
            shutil.copyfile(src, dst)


def _commit_local(store: LocalStore, staging: Path, entries: list[LockedRepo],
                  dests: list[tuple[RepoKey, str, str, int]], snapshots: list[tuple[Path, Path]],
                  report: ImportReport) -> None:
    checked: set[Path] = set()

    def check(folder: Path) -> None:
        if folder not in checked:
            store._check_no_symlinks(folder)  # never write through a planted link
            checked.add(folder)

    repos = list(dict.fromkeys(repo for repo, *_ in dests))
    for repo in repos:
        check(store.repo_dir(repo) / "blobs")
    for _tmp, final in snapshots:
        check(final.parent)
    # verified: now only renames. A repo new to the cache gets its whole blobs/ in one rename.
    for repo in repos:
        staged, final = staging / repo.folder / "blobs", store.repo_dir(repo) / "blobs"
        if not final.exists() and not final.is_symlink():
            final.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # one appeared meanwhile: merged file by file below
                os.rename(staged, final)
                continue
        final.mkdir(parents=True, exist_ok=True)
        for p in staged.iterdir():
            os.replace(p, final / p.name)  # a verified copy replaces whatever was cached under that name
    for _repo, _etag, _sha, size in dests:
        report.blobs += 1
        report.bytes += size
    for tmp, final in snapshots:
        final.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # one appeared meanwhile: link_snapshot merges below
            os.rename(tmp, final)
    for r in entries:
        commit = Commit(sha=r.commit, files=r.files, complete=r.complete)
        if r.complete:
            store.put_commit(r.repo, commit)  # links (already right), trees/, the sha256 record
        else:
            store.link_snapshot(r.repo, commit)  # a partial commit gets no trees/ entry and no record


def _prebuild_snapshots(store: LocalStore, staging: Path, entries: list[LockedRepo]) -> list[tuple[Path, Path]]:
    """New `snapshots/<sha>/` folders, built in staging (one rename each instead of one per file)."""
    moves = []
    for i, r in enumerate(entries):
        final = store.snapshot_dir(r.repo, r.commit)
        if final.exists() or final.is_symlink():
            continue  # an existing snapshot is merged file by file by link_snapshot
        tmp = staging / f"snapshot-{i}"
        tmp.mkdir()
        made: set[Path] = {tmp}
        for f in r.files:
            link = tmp / f.path
            if link.parent not in made:
                link.parent.mkdir(parents=True, exist_ok=True)
                made.add(link.parent)
            os.symlink(snapshot_link_target(f.path, f.etag), link)  # relative: valid once moved
        moves.append((tmp, final))
    return moves


def _commit_store(store: Store, staging: Path, dests: list[tuple[RepoKey, str, str, int]],
                  entries: list[LockedRepo], report: ImportReport) -> None:
    for repo, etag, sha, size in dests:
        with store.blob_writer(repo, etag, size, sha) as w, open(_staged(staging, repo, etag), "rb") as f:
            while chunk := f.read(CHUNK):
                w.write(chunk)
        report.blobs += 1
        report.bytes += size
    for r in entries:
        store.put_commit(r.repo, Commit(sha=r.commit, files=r.files, complete=r.complete))


def missing_from(store: Store, entries: list[LockedRepo]) -> list[str]:
    """Files of `entries` whose blob is not in `store` (for a clear error before exporting)."""
    out = []
    for r in entries:
        commit = Commit(sha=r.commit, files=r.files, complete=False)
        for f in r.files:
            if not store.has_blob(r.repo, f.etag) and store.file_path(r.repo, commit, f.path) is None:
                out.append(f"{r.repo}: {f.path}")
    return out


def require_present(store: Store, entries: list[LockedRepo]) -> None:
    missing = missing_from(store, entries)
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise NotSyncedError(f"{store.location}: {'; '.join(missing[:3])}{more} not present (expected every "
                             "file to export)", hint="run `hubpin sync` first, or pass the right --cache-dir")
