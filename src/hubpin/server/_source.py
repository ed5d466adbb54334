"""Where the mirror gets refs, commits and bytes: the one seam a pull-through mirror overrides.

Every handler in `app.py` goes through a `Source`; none touches the store directly. The base
class serves what a `Store` holds. A subclass (e.g. pull-through from an upstream Hub) can
override `resolve` / `get_commit` / `list_refs` to fill the store on a miss, and
`file_response` to stream bytes to the client while they are being fetched and verified.

Methods other than `file_response` block (filesystem or network I/O): the app calls them in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from ..objects import Commit, FileEntry, RepoKey
from ..paths import is_commit_sha
from ..store import LocalStore, Store
from ._errors import HubError

__all__ = ["Source", "parse_range"]

_COMMIT_CACHE_SIZE = 256
_PARTIAL_TTL = 5.0  # seconds a partial HF-cache snapshot is reused before it is read again


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """[(start, end)] half-open byte ranges of a `Range` header, or None for the whole file.

    Uses starlette's own parser (the one FileResponse applies), so our 416/400 answers and
    FileResponse's 206 agree. Raises HubError 416 (with `Content-Range: bytes */size`) or 400.
    """
    if header is None:
        return None
    from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

    try:
        ranges = FileResponse._parse_range_header(header, size)
    except RangeNotSatisfiable as e:
        raise HubError(
            416, "RangeNotSatisfiable", f"range {header!r} not satisfiable for {size} bytes",
            {"Content-Range": f"bytes */{size}"},
        ) from e
    except MalformedRangeHeader as e:
        raise HubError.bad_request(f"malformed Range header {header!r}: {e.content}") from e
    return ranges or None


class _BlobResponse(FileResponse):
    # where bytes do pass through Python (uvicorn; Range under any server), 1 MiB reads beat
    # starlette's 64 KiB (measured ~1.5x under uvicorn); memory stays one chunk per connection
    chunk_size = 1 << 20


class Source:
    """Refs, commits and file bytes of the repos one `Store` holds."""

    def __init__(self, store: Store, *, redirect_expires: int | None = None) -> None:
        self.store = store
        # `hubpin serve --redirect`: answer downloads with a presigned URL when the store has them (S3)
        self.redirect_expires = redirect_expires
        # commits are immutable by id: keep recent complete ones parsed (HEAD traffic is hot)
        self._commits: OrderedDict[tuple[RepoKey, str], tuple[Commit, float | None]] = OrderedDict()
        self._lock = threading.Lock()
        #: run lookups on the event loop: for a plain local store they are quick metadata reads, and
        #: the worker-thread hop halves HEAD throughput. Subclasses (network fetches) stay off the loop.
        self.inline = type(self) is Source and isinstance(store, LocalStore) and not redirect_expires
        # a plain local store: list only what is there. Subclasses (pull-through) list what they
        # can fetch, so they keep the store's full commits.
        self._plain_local = type(self) is Source and isinstance(store, LocalStore)

    # -- lookups (blocking) ---------------------------------------------------------------
    def has_repo(self, repo: RepoKey) -> bool:
        """True if the repo exists here (before any access check)."""
        return self.store.has_repo(repo)

    def resolve(self, repo: RepoKey, revision: str) -> str | None:
        """Branch, tag, `refs/pr/N`, full or 5+-hex short sha → 40-hex commit, or None."""
        if is_commit_sha(revision) and self.store.get_ref(repo, revision) is None:
            # the URL names the commit itself (what `hubpin sync` sends): the cached commit proves
            # it exists, instead of the store re-reading its whole file list on every request
            return revision if self.get_commit(repo, revision) is not None else None
        return self.store.resolve(repo, revision)

    def get_commit(self, repo: RepoKey, sha: str) -> Commit | None:
        """The commit's file list, or None if the store lacks it.

        Complete commits are immutable by id and cached. A partial snapshot of a plain HF cache
        can still grow (and reading one may hash real files), so it is reused for a few seconds.
        """
        key = (repo, sha)
        now = time.monotonic()
        with self._lock:
            hit = self._commits.get(key)
            if hit is not None and (hit[1] is None or hit[1] > now):
                self._commits.move_to_end(key)
                return hit[0]
        commit = self.store.get_commit(repo, sha)
        if commit is not None and self._plain_local:
            commit = self._only_present(repo, commit)
        if commit is not None:
            with self._lock:
                self._commits[key] = (commit, None if commit.complete else now + _PARTIAL_TTL)
                while len(self._commits) > _COMMIT_CACHE_SIZE:
                    self._commits.popitem(last=False)
        return commit

    def _only_present(self, repo: RepoKey, commit: Commit) -> Commit:
        """The files of `commit` whose bytes this cache holds (an HF cache lists what is there).

        huggingface_hub writes the full `trees/<sha>.json` even for a partial `snapshot_download`
        (allow_patterns), so a listed file may have no blob: listing it would promise bytes a GET
        can't deliver. Such a commit is served as partial (re-read every few seconds).
        """
        root = os.path.join(self.store.location, repo.folder, "blobs")
        present = [f for f in commit.files
                   if os.path.isfile(os.path.join(root, f.etag)) or self.store.file_path(repo, commit, f.path)]
        if len(present) == len(commit.files):
            return commit
        return Commit(sha=commit.sha, files=tuple(present), parent=commit.parent, created=commit.created,
                      message=commit.message, complete=False)

    def list_refs(self, repo: RepoKey) -> dict[str, str]:
        """Ref name → 40-hex commit; hides `refs/<short-sha>` files huggingface_hub writes."""
        refs = self.store.list_refs(repo)
        return {name: sha for name, sha in refs.items() if not (sha.startswith(name) and name != sha)}

    def history(self, repo: RepoKey, sha: str, limit: int) -> list[Commit]:
        """The commit and its ancestors, newest first, at most `limit`."""
        out: list[Commit] = []
        seen: set[str] = set()
        cur: str | None = sha
        while cur and cur not in seen and len(out) < limit:
            seen.add(cur)
            c = self.get_commit(repo, cur)
            if c is None:
                break
            out.append(c)
            cur = c.parent
        return out

    def local_path(self, repo: RepoKey, commit: Commit, entry: FileEntry) -> Path | None:
        """A regular file holding the entry's bytes, for zero-copy serving; None if remote."""
        return self.store.file_path(repo, commit, entry.path)

    def _local_file(self, repo: RepoKey, commit: Commit, entry: FileEntry) -> tuple[str, os.stat_result] | None:
        """(path, stat) of a regular file with the entry's bytes, or None."""
        if isinstance(self.store, LocalStore) and type(self).local_path is Source.local_path:
            # hot path (every HEAD): one lstat on blobs/<etag>, no pathlib; never through a symlink
            blob = os.path.join(self.store.location, repo.folder, "blobs", entry.etag)
            try:
                st = os.lstat(blob)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode):
                return blob, st
        path = self.local_path(repo, commit, entry)
        return (str(path), os.stat(path)) if path is not None else None

    # -- bytes ----------------------------------------------------------------------------
    def file_response(
        self, request: Request, repo: RepoKey, commit: Commit, entry: FileEntry, headers: dict[str, str]
    ) -> Response:
        """The GET/HEAD answer for one file: `headers` (X-Repo-Commit, ETag, ...) must be kept.

        Local files go out through starlette's FileResponse (`http.response.pathsend` under
        granian: the server's Rust core reads the file, no byte passes through Python; Range →
        206). Others are streamed from `Store.read_blob` in bounded chunks.
        """
        presign = getattr(self.store, "presigned_url", None)
        if self.redirect_expires and presign is not None:
            # a GET URL on HEAD too: huggingface_hub GETs the Location its HEAD received
            return _redirect(presign(repo, entry.etag, self.redirect_expires), entry, headers)
        ranges = parse_range(request.headers.get("range"), entry.size) if request.method in ("GET", "HEAD") else None
        found = self._local_file(repo, commit, entry)
        if found is not None:
            path, st = found
            if st.st_size != entry.size:
                raise HubError(
                    500, "StoreCorrupt",
                    f"{repo}@{commit.sha}: {entry.path} is {st.st_size} bytes in the store, expected {entry.size}",
                )
            if request.method == "HEAD" and ranges is None:
                # the hot metadata probe: headers only, without FileResponse's per-request work
                return Response(status_code=200, media_type="application/octet-stream",
                                headers={**headers, "Content-Length": str(entry.size)})
            # our ETag/Content-Length win: FileResponse only setdefault()s its own
            return _BlobResponse(path, headers={**headers, "Content-Length": str(entry.size)}, stat_result=st,
                                media_type="application/octet-stream")
        if self._plain_local:
            # listed a moment ago, gone now (a cache being cleaned): not here, rather than a broken body
            raise HubError.entry_not_found(repo, commit.sha, entry.path)
        if ranges is not None and len(ranges) == 1:
            start, end = ranges[0]
            headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{entry.size}",
                       "Content-Length": str(end - start)}
            return self._stream(request, repo, entry, start, end, 206, headers)
        return self._stream(request, repo, entry, 0, entry.size, 200, {**headers, "Content-Length": str(entry.size)})

    def _stream(
        self, request: Request, repo: RepoKey, entry: FileEntry, start: int, end: int, status: int,
        headers: dict[str, str],
    ) -> Response:
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type="application/octet-stream")
        body: Iterator[bytes] = self.store.read_blob(repo, entry.etag, start, end)
        return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")


def _redirect(location: str, entry: FileEntry, headers: dict[str, str]) -> Response:
    """A cross-origin 302 to the store. huggingface_hub does not follow it on HEAD, so the file's
    metadata must sit on the 302 itself (hub-protocol.md §2.1); it drops `Authorization` on the GET."""
    meta = {"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size), "Location": location}
    return Response(status_code=302, headers={**headers, **meta})
