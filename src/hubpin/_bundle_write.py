"""Exporting: pick lock entries from a store, then write a bundle or plain folders, verifying
every byte on the way out (hash while copying), under a temp name renamed at the very end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ._bundle_format import (
    MANIFEST_NAME,
    SIG_NAME,
    BlobRef,
    Manifest,
    blob_member,
    encode_signature,
    member_header,
    padding,
)
from ._bundle_read import hash_and_write
from ._fsutil import TMP_SUFFIX, fsync_dir, open_new
from .errors import BadInput, HashMismatchError, NotFoundError, NotSyncedError
from .hashing import CHUNK
from .lockfile import LockedRepo, Lockfile
from .objects import Commit, FileEntry, RepoKey
from .paths import validate_revision
from .signing import load_private_key, sign
from .store import Store

__all__ = ["DIR_MANIFEST", "Source", "select_entries", "write_bundle", "write_dir"]

DIR_MANIFEST = "hubpin-manifest.json"
BUF = CHUNK  # 1 MiB: measurably faster page-cache writes here than 4 MiB (bench/bundle_bench.py)


def parse_repo_spec(spec: str) -> tuple[RepoKey, str | None]:
    """`org/name`, `org/name@rev`, `datasets/org/name[@rev]` → (repo, revision or None)."""
    name, _, rev = spec.partition("@")
    kind = "model"
    if name.startswith("datasets/"):
        kind, name = "dataset", name[len("datasets/"):]
    elif name.startswith("models/"):
        name = name[len("models/"):]
    repo = RepoKey(kind, name)  # type: ignore[arg-type]
    return repo, (validate_revision(rev) if rev else None)


def select_entries(store: Store, repos: list[str], lock: Lockfile | None) -> list[LockedRepo]:
    """The lock entries to export: from `lock` (optionally only `repos`), else resolved in `store`."""
    if lock is not None:
        if not repos:
            if not lock.repos:
                raise BadInput("the lock pins no repos (expected at least one to export)")
            return list(lock.repos)
        out = []
        for spec in repos:
            repo, _rev = parse_repo_spec(spec)
            entry = lock.get(repo)
            if entry is None:
                raise NotFoundError(f"{repo}: not in the lock (expected one of: "
                                    f"{', '.join(str(r.repo) for r in lock.repos) or 'none'})",
                                    hint="add it with `hubpin add`, or export without --lock")
            out.append(entry)
        return out
    if not repos:
        raise BadInput("nothing to export (expected --repo R or a lock)", hint="pass --repo org/name or --lock hubpin.lock")
    out = []
    for spec in repos:
        repo, rev = parse_repo_spec(spec)
        revision = rev or "main"
        sha = store.resolve(repo, revision)
        if sha is None:
            raise NotFoundError(f"{repo}@{revision}: not in {store.location}",
                                hint="download or `hubpin sync` it first, or pass --cache-dir/--store")
        commit = store.get_commit(repo, sha)
        if commit is None or not commit.files:
            raise NotFoundError(f"{repo}@{sha}: no files in {store.location}")
        # a cache may hold only some files of a commit (allow_patterns): export what is there
        present = [f for f in commit.files
                   if store.has_blob(repo, f.etag) or store.file_path(repo, commit, f.path) is not None]
        if not present:
            raise NotFoundError(f"{repo}@{sha}: none of its {len(commit.files)} files is in {store.location}")
        files = tuple(_with_sha256(store, repo, commit, f) for f in present)
        complete = commit.complete and len(present) == len(commit.files)
        out.append(LockedRepo(repo, revision, sha, files, complete=complete))
    return out


def _with_sha256(store: Store, repo: RepoKey, commit: Commit, f: FileEntry) -> FileEntry:
    """A plain HF cache records no sha256 for regular files: compute it (the manifest needs it)."""
    if f.sha256 is not None:
        return f
    h = hashlib.sha256()
    for chunk in Source(store, repo, commit.sha, f).chunks():
        h.update(chunk)
    return FileEntry(f.path, f.size, f.etag, h.hexdigest())


@dataclass(frozen=True)
class Source:
    """Where to read a file's bytes from in a store."""

    store: Store
    repo: RepoKey
    commit: str
    entry: FileEntry

    def chunks(self) -> Iterator[bytes | memoryview]:
        commit = Commit(sha=self.commit, files=(self.entry,), complete=False)
        path = self.store.file_path(self.repo, commit, self.entry.path)
        if path is not None:
            buf = bytearray(BUF)
            mv = memoryview(buf)
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(mv):  # type: ignore[attr-defined]
                    yield mv[:n]
            return
        if not self.store.has_blob(self.repo, self.entry.etag):
            raise NotSyncedError(f"{self.repo}@{self.commit}: {self.entry.path} (blob {self.entry.etag}) is not in "
                                 f"{self.store.location}", hint="run `hubpin sync` first, or pass the right --cache-dir")
        yield from self.store.read_blob(self.repo, self.entry.etag)


def _copy_verified(src: Source, out: BinaryIO, sources: list[Source]) -> None:
    """Copy `src` into `out`, hashing; every entry sharing the bytes must match size, sha256, etag."""
    e = src.entry
    need_sha1 = any(not s.entry.lfs for s in sources)
    h256 = hashlib.sha256()
    h1 = hashlib.sha1(b"blob %d\0" % e.size) if need_sha1 else None
    hashes = [h256] if h1 is None else [h256, h1]
    size = 0
    for chunk in src.chunks():
        size += len(chunk)
        if size > e.size:
            break
        hash_and_write(hashes, memoryview(chunk), out.write)
    what = f"{src.repo}@{src.commit}: {e.path} in {src.store.location}"
    hint = "the cached copy is damaged; delete it and run `hubpin sync` again"
    if size != e.size:
        raise HashMismatchError(f"{what}: size", expected=f"{e.size} bytes",
                                actual=f"{size if size < e.size else 'more than ' + str(e.size)} bytes", hint=hint)
    actual = h256.hexdigest()
    if actual != e.sha256:
        raise HashMismatchError(f"{what}: sha256", expected=str(e.sha256), actual=actual, hint=hint)
    for s in sources:
        got = actual if s.entry.lfs else (h1.hexdigest() if h1 is not None else "")
        if got != s.entry.etag:
            raise HashMismatchError(f"{s.repo}@{s.commit}: {s.entry.path}: etag", expected=s.entry.etag, actual=got)


def _sources(store: Store, entries: list[LockedRepo]) -> dict[str, list[Source]]:
    by_sha: dict[str, list[Source]] = {}
    for r in entries:
        for f in r.files:
            by_sha.setdefault(str(f.sha256), []).append(Source(store, r.repo, r.commit, f))
    return by_sha


def _check_out(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise BadInput(f"{out}: already exists (expected a new path)", hint="remove it or choose another name")
    if not out.parent.is_dir():
        raise BadInput(f"{out.parent}: no such folder (expected an existing folder for the export)")


def _tmp_beside(out: Path) -> Path:
    return out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")


def write_bundle(store: Store, entries: list[LockedRepo], out: Path, *, sign_key: Path | None = None,
                 fsync: bool = True) -> Manifest:
    """Write a bundle of `entries` read from `store` to `out` (a new file); return its manifest."""
    _check_out(out)
    key = load_private_key(sign_key) if sign_key is not None else None  # fail before writing
    manifest = Manifest.for_repos(entries)
    data = manifest.to_bytes()
    by_sha = _sources(store, entries)
    tmp = _tmp_beside(out)
    try:
        with open_new(tmp) as f:
            _member(f, MANIFEST_NAME, data)
            for blob in manifest.blobs:
                _blob(f, blob, by_sha[blob.sha256])
            if key is not None:
                _member(f, SIG_NAME, encode_signature(sign(key, data)))
            f.write(bytes(1024))  # end of archive; no record padding, so the signature is at a fixed tail
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.rename(tmp, out)  # (not replace: never clobber a file created meanwhile... best effort)
        if fsync:
            fsync_dir(out.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return manifest


def _member(f: BinaryIO, name: str, data: bytes) -> None:
    f.write(member_header(name, len(data)))
    f.write(data)
    f.write(bytes(padding(len(data))))


def _blob(f: BinaryIO, blob: BlobRef, sources: list[Source]) -> None:
    f.write(member_header(blob_member(blob.sha256), blob.size))
    _copy_verified(sources[0], f, sources)
    f.write(bytes(padding(blob.size)))


def _dir_prefix(repo: RepoKey) -> str:
    return repo.id if repo.type == "model" else f"datasets/{repo.id}"


def write_dir(store: Store, entries: list[LockedRepo], out: Path, *, fsync: bool = True) -> dict[str, object]:
    """Write `OUT/<org>/<name>/<path>` real files (datasets under `OUT/datasets/`) + hubpin-manifest.json."""
    _check_out(out)
    prefixes: dict[str, RepoKey] = {}
    for r in entries:
        p = _dir_prefix(r.repo)
        if p == DIR_MANIFEST:
            raise BadInput(f"{r.repo}: its folder would replace {DIR_MANIFEST} in a dir export")
        clash = next((q for q in prefixes if p == q or p.startswith(q + "/") or q.startswith(p + "/")), None)
        if clash is not None:
            raise BadInput(f"{r.repo} and {prefixes[clash]}: folders {p} and {clash} overlap in a dir export",
                           hint="export them separately")
        prefixes[p] = r.repo
    tmp = _tmp_beside(out)
    tmp.mkdir()
    try:
        for r in entries:
            base = tmp / _dir_prefix(r.repo)
            for fe in r.files:
                dest = base / fe.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open_new(dest) as f:
                    src = Source(store, r.repo, r.commit, fe)
                    _copy_verified(src, f, [src])
                    if fsync:
                        f.flush()
                        os.fsync(f.fileno())
        doc = {"format": "hubpin-dir", "version": 1,
               "repos": [{"type": r.repo.type, "id": r.repo.id, "folder": _dir_prefix(r.repo),
                          "revision": r.revision, "commit": r.commit, "complete": r.complete,
                          "files": [{"path": f.path, "size": f.size, "etag": f.etag, "sha256": f.sha256}
                                    for f in r.files]} for r in entries]}
        (tmp / DIR_MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        if out.exists() or out.is_symlink():
            raise BadInput(f"{out}: appeared while exporting (expected a new path)")
        os.rename(tmp, out)
        if fsync:
            fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc
