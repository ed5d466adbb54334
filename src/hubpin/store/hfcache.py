"""The local store: an HF cache directory, exactly as huggingface_hub reads and writes it.

    <root>/models--org--name/blobs/<etag>
    <root>/models--org--name/refs/<name>                 40 hex, no newline
    <root>/models--org--name/snapshots/<sha>/<path>      relative symlink -> ../../blobs/<etag>
    <root>/models--org--name/trees/<sha>.json            hub 2.x tree cache, never any xet_hash
    <root>/.hubpin/commits/<folder>/<sha>.json           hubpin's record: every file's sha256, parent

It also reads caches that huggingface_hub filled by itself (no `.hubpin/`, no `trees/`, partial
snapshots): then a commit is whatever its snapshot folder holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .._fsutil import atomic_symlink, atomic_write_bytes, open_new, publish, temp_name
from ..errors import UnsafePathError
from ..hashing import CHUNK, hash_file
from ..objects import Commit, FileEntry, RepoKey
from ..paths import is_commit_sha, safe_relpath, validate_revision
from ._records import commit_from_record, commit_from_tree, record_json, tree_json
from .base import BlobWriter, Store

__all__ = ["LocalStore", "snapshot_link_target"]

_FOLDER = re.compile(r"^(model|dataset)s--(.+)$")
_ETAG = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
META_DIR = ".hubpin"


def snapshot_link_target(path: str, etag: str) -> str:
    """Relative symlink target from `snapshots/<sha>/<path>` to `blobs/<etag>`."""
    depth = path.count("/") + 2  # <path>'s folders, then <sha>, then snapshots
    return "/".join([".."] * depth + ["blobs", etag])


def _repo_from_folder(name: str) -> RepoKey | None:
    m = _FOLDER.fullmatch(name)
    if not m:
        return None
    try:
        return RepoKey(m.group(1), m.group(2).replace("--", "/"))  # type: ignore[arg-type]
    except (UnsafePathError, ValueError):
        return None


class _LocalBlobWriter(BlobWriter):
    def __init__(self, final: Path, what: str, etag: str, size: int, sha256: str | None, fsync: bool) -> None:
        super().__init__(what, etag, size, sha256)
        self.final = final
        self.tmp = temp_name(final)
        self._fsync = fsync
        final.parent.mkdir(parents=True, exist_ok=True)
        self._f = open_new(self.tmp)

    def _write(self, data: bytes | memoryview) -> None:
        self._f.write(data)

    def _commit(self) -> None:
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())
        self._f.close()
        publish(self.tmp, self.final, fsync=False)

    def _abort(self) -> None:
        self._f.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.location = str(self.root)
        self.fsync = fsync

    # -- layout ---------------------------------------------------------------------------
    def repo_dir(self, repo: RepoKey) -> Path:
        return self.root / repo.folder

    def blob_path(self, repo: RepoKey, etag: str) -> Path:
        if not _ETAG.fullmatch(etag):
            raise UnsafePathError(f"invalid blob name {etag!r}: expected 40 or 64 lowercase hex")
        return self.repo_dir(repo) / "blobs" / etag

    def snapshot_dir(self, repo: RepoKey, sha: str) -> Path:
        if not is_commit_sha(sha):
            raise UnsafePathError(f"invalid commit {sha!r}: expected 40 lowercase hex")
        return self.repo_dir(repo) / "snapshots" / sha

    def _record_path(self, repo: RepoKey, sha: str) -> Path:
        return self.root / META_DIR / "commits" / repo.folder / f"{sha}.json"

    # -- repos and refs -------------------------------------------------------------------
    def list_repos(self) -> list[RepoKey]:
        if not self.root.is_dir():
            return []
        repos = [_repo_from_folder(p.name) for p in self.root.iterdir() if p.is_dir()]
        return sorted(r for r in repos if r is not None)

    def list_refs(self, repo: RepoKey) -> dict[str, str]:
        refs_dir = self.repo_dir(repo) / "refs"
        out: dict[str, str] = {}
        if not refs_dir.is_dir():
            return out
        for dirpath, _dirs, files in os.walk(refs_dir):
            for name in files:
                if name.startswith("."):
                    continue  # our own temp files
                rel = (Path(dirpath) / name).relative_to(refs_dir).as_posix()
                sha = self.get_ref(repo, rel)
                if sha is not None:
                    out[rel] = sha
        return dict(sorted(out.items()))

    def get_ref(self, repo: RepoKey, name: str) -> str | None:
        validate_revision(name)
        path = self.repo_dir(repo) / "refs" / name
        try:
            if path.is_symlink():
                return None
            text = path.read_text("ascii", errors="replace").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return text if is_commit_sha(text) else None

    def set_ref(self, repo: RepoKey, name: str, sha: str) -> None:
        validate_revision(name)
        if not is_commit_sha(sha):
            raise UnsafePathError(f"invalid commit {sha!r} for ref {name}: expected 40 lowercase hex")
        path = self.repo_dir(repo) / "refs" / name
        self._check_no_symlinks(path.parent)
        # exactly 40 hex chars, no newline: huggingface_hub reads refs without strip() (#4133)
        atomic_write_bytes(path, sha.encode("ascii"), fsync=self.fsync)

    # -- commits --------------------------------------------------------------------------
    def list_commits(self, repo: RepoKey) -> list[str]:
        found: set[str] = set()
        rec_dir = self.root / META_DIR / "commits" / repo.folder
        for d, suffix in ((rec_dir, ".json"), (self.repo_dir(repo) / "trees", ".json")):
            if d.is_dir():
                found.update(p.name[: -len(suffix)] for p in d.iterdir() if p.name.endswith(suffix))
        snaps = self.repo_dir(repo) / "snapshots"
        if snaps.is_dir():
            found.update(p.name for p in snaps.iterdir() if p.is_dir())
        return sorted(s for s in found if is_commit_sha(s))

    def get_commit(self, repo: RepoKey, sha: str) -> Commit | None:
        if not is_commit_sha(sha):
            return None
        record = self._read_json(self._record_path(repo, sha))
        if record is not None:
            return commit_from_record(sha, record)
        tree = self._read_json(self.repo_dir(repo) / "trees" / f"{sha}.json")
        commit = commit_from_tree(sha, tree) if tree is not None else None
        if commit is not None:
            return commit
        return self._commit_from_snapshot(repo, sha)

    def _commit_from_snapshot(self, repo: RepoKey, sha: str) -> Commit | None:
        """A commit as huggingface_hub left it: whatever its snapshot folder holds (maybe partial)."""
        snap = self.snapshot_dir(repo, sha)
        if not snap.is_dir():
            return None
        blobs = (self.repo_dir(repo) / "blobs").resolve()
        files = []
        for dirpath, _dirs, names in os.walk(snap):
            for name in names:
                full = Path(dirpath) / name
                rel = full.relative_to(snap).as_posix()
                try:
                    safe_relpath(rel)
                except UnsafePathError:
                    continue
                if full.is_symlink():
                    target = full.resolve()
                    if target.parent != blobs or not _ETAG.fullmatch(target.name) or not target.is_file():
                        continue  # dangling or planted link: never serve outside blobs/
                    etag = target.name
                    size = target.stat().st_size
                    files.append(FileEntry(rel, size, etag, etag if len(etag) == 64 else None))
                elif full.is_file():  # HF_HUB_DISABLE_SYMLINKS caches hold real files
                    d = hash_file(full)
                    etag = d.sha256 if d.size > 10 * 1024 * 1024 else d.git_sha1
                    files.append(FileEntry(rel, d.size, etag, d.sha256))
        return Commit(sha=sha, files=tuple(files), complete=False)

    def put_commit(self, repo: RepoKey, commit: Commit) -> None:
        for f in commit.files:
            if not self.has_blob(repo, f.etag):
                raise FileNotFoundError(f"{repo}@{commit.sha}: blob {f.etag} of {f.path} is not in the store")
        self.link_snapshot(repo, commit)
        if commit.complete:
            self.write_tree_cache(repo, commit)
        atomic_write_bytes(self._record_path(repo, commit.sha), record_json(commit), fsync=self.fsync)

    def write_tree_cache(self, repo: RepoKey, commit: Commit) -> None:
        """`trees/<sha>.json` in huggingface_hub's format; only ever for a complete tree, no xet_hash."""
        path = self.repo_dir(repo) / "trees" / f"{commit.sha}.json"
        atomic_write_bytes(path, tree_json(commit), fsync=self.fsync)

    def link_snapshot(self, repo: RepoKey, commit: Commit, paths: list[FileEntry] | None = None) -> None:
        """Relative symlinks `snapshots/<sha>/<path>` → `blobs/<etag>`, never through a planted link."""
        snap = self.snapshot_dir(repo, commit.sha)
        ready: set[Path] = set()  # folders checked and made in this call: once each, not once per file
        for f in paths if paths is not None else commit.files:
            link = snap / f.path
            if link.parent not in ready:
                self._check_no_symlinks(link.parent)
                link.parent.mkdir(parents=True, exist_ok=True)
                ready.add(link.parent)
            target = snapshot_link_target(f.path, f.etag)
            try:
                os.symlink(target, link)  # the common case, a new link: one syscall, never follows `link`
                continue
            except FileExistsError:
                pass
            if not link.is_symlink() and link.is_dir():
                raise UnsafePathError(f"{link}: a folder stands where file {f.path} belongs")
            atomic_symlink(target, link)

    def _check_no_symlinks(self, folder: Path) -> None:
        """Refuse to create anything below a symlinked folder inside the store (planted links)."""
        try:
            rel = folder.relative_to(self.root)
        except ValueError as e:
            raise UnsafePathError(f"{folder}: outside the store {self.root}") from e
        cur = self.root
        for part in rel.parts:
            cur = cur / part
            if cur.is_symlink():
                raise UnsafePathError(f"{cur}: is a symlink inside the store; refusing to write through it")

    # -- blobs ----------------------------------------------------------------------------
    def has_blob(self, repo: RepoKey, etag: str) -> bool:
        p = self.blob_path(repo, etag)
        return p.is_file() and not p.is_symlink()

    def blob_size(self, repo: RepoKey, etag: str) -> int | None:
        try:
            p = self.blob_path(repo, etag)
            return None if p.is_symlink() else p.stat().st_size
        except FileNotFoundError:
            return None

    def local_blob_path(self, repo: RepoKey, etag: str) -> Path | None:
        p = self.blob_path(repo, etag)
        return p if p.is_file() and not p.is_symlink() else None

    def file_path(self, repo: RepoKey, commit: Commit, path: str) -> Path | None:
        entry = commit.file(path)
        if entry is None:
            return None
        blob = self.local_blob_path(repo, entry.etag)
        if blob is not None:
            return blob
        # symlink-free caches keep the bytes in snapshots/ itself
        real = self.snapshot_dir(repo, commit.sha) / path
        return real if real.is_file() and not real.is_symlink() else None

    def read_blob(self, repo: RepoKey, etag: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with open(self.blob_path(repo, etag), "rb") as f:
            f.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def blob_writer(self, repo: RepoKey, etag: str, size: int, sha256: str | None) -> BlobWriter:
        final = self.blob_path(repo, etag)
        self._check_no_symlinks(final.parent)
        return _LocalBlobWriter(final, f"{repo}/blobs/{etag}", etag, size, sha256, self.fsync)

    # -- metadata -------------------------------------------------------------------------
    def _meta_path(self, name: str) -> Path:
        return self.root / META_DIR / safe_relpath(name, what="metadata name")

    def read_meta(self, name: str) -> bytes | None:
        try:
            return self._meta_path(name).read_bytes()
        except FileNotFoundError:
            return None

    def write_meta(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self._meta_path(name), data, fsync=self.fsync)

    @contextlib.contextmanager
    def meta_lock(self, name: str) -> Iterator[None]:
        from filelock import FileLock  # >= 3.20.3: never follows a lock path planted as a symlink

        path = self._meta_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock", timeout=60):
            yield

    @staticmethod
    def _read_json(path: Path) -> dict | None:  # type: ignore[type-arg]
        try:
            data = json.loads(path.read_bytes())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return data if isinstance(data, dict) else None
