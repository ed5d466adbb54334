"""Blob downloads into an HF cache: ranged GETs, resume across runs, hash while writing.

One blob = one `GET /{prefix}{repo}/resolve/{commit}/{path}` (the lock already knows size,
etag and sha256, so there is no HEAD). The bytes go to a file of this process only, are hashed
as they arrive, and are published as `blobs/<etag>` with one `os.replace` only after size,
sha256 and etag all match. Nothing unverified ever sits under a final name.

Resume (huggingface_hub#4196): a download that stops (network error, Ctrl-C, SIGKILL) leaves
its bytes in `blobs/<etag>.hubpin-partial` (or, after a SIGKILL, in the in-flight name
`blobs/<etag>.<pid>@<host>.<rand>.hubpin-partial`). The next run claims such a file with an
atomic rename (so two writers never share one), re-hashes the kept prefix and asks for the
rest with `Range: bytes=N-`. A server that ignores Range (200) or answers a wrong
`Content-Range` makes it start again from 0. The file's length is the progress record: its
content is re-hashed and the final blob verified, so no separate bookkeeping can lie.

Correctness does not depend on file locks (flock is a no-op on some NFS/Lustre mounts): the
`.locks/<repo folder>/<etag>.lock` lock (taken for blobs of 256 KiB and more) only avoids
downloading the same blob twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import queue
import re
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ._partials import (
    PARTIAL_SUFFIX,
    claim,
    disk_free,
    find_partials,
    inflight_name,
    is_stale_partial,
    partial_bytes,
    resting_name,
    syncfs,
)
from ._rawhttp import RawPool, RawResponse
from .errors import CheckFailed, DriftError, HashMismatchError, HubpinError, RemoteError
from .hashing import CHUNK
from .objects import FileEntry, RepoKey

__all__ = [
    "PARTIAL_SUFFIX",
    "BlobTask",
    "Cancelled",
    "Downloader",
    "InsufficientSpaceError",
    "disk_free",
    "find_partials",
    "is_stale_partial",
    "partial_bytes",
    "syncfs",
]

#: blobs bigger than this are hashed on a helper thread while they download
BACKGROUND_HASH_MIN = 4 << 20
#: blobs at least this big are fetched under the `.locks/` lock (dedup across processes)
LOCK_MIN_SIZE = 256 * 1024
#: bytes worth keeping for the next run (below this, a rerun just fetches the file again)
KEEP_PARTIAL_MIN = 64 * 1024
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_RATELIMIT_T = re.compile(r"\bt=(\d+)")


class InsufficientSpaceError(CheckFailed, OSError):
    """Raised when the cache's disk cannot hold the files to download (preflight or ENOSPC)."""


class Cancelled(HubpinError):
    """Raised inside a worker when another download failed and the sync stops."""


class _Retry(Exception):
    """A transient failure: wait (`after` seconds if the server said so) and try again."""

    def __init__(self, reason: str, after: float | None = None, offset: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after
        self.offset = offset  # bytes safely on disk when it happened


class _Restart(Exception):
    """The kept prefix cannot be continued (Range ignored, wrong Content-Range): start from 0."""


@dataclass(frozen=True)
class BlobTask:
    """One blob to fetch: the file the URL names, and every locked path sharing its bytes."""

    repo: RepoKey
    commit: str
    entry: FileEntry
    blobs_dir: Path
    locks_dir: Path
    partial: bool = True  # False when a scan of blobs_dir found no partial of this etag

    @property
    def what(self) -> str:
        return f"{self.repo}@{self.commit[:12]}/{self.entry.path}"


@dataclass
class BlobResult:
    downloaded: int = 0  # bytes received over the network
    reused: int = 0  # bytes taken from a kept partial
    requests: int = 0
    skipped: bool = False  # someone else published it meanwhile



def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of `data` (tests replace this to inject ENOSPC)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _retry_after(response: httpx.Response) -> float | None:
    m = _RATELIMIT_T.search(response.headers.get("RateLimit", ""))
    if m:
        return float(m.group(1)) + 1
    value = response.headers.get("Retry-After", "")
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    return None


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class _Hash:
    """sha256 always; the git blob sha1 only when the etag is one (regular, non-LFS files).

    With `background=True` the digests run on a helper thread (hashlib drops the GIL), so a big
    download hashes on one core while it receives and writes on another; at most
    `_PENDING` chunks wait. Call `wait()` before reading a digest.
    """

    def __init__(self, entry: FileEntry, *, background: bool = False) -> None:
        self._entry = entry
        self._queue: queue.SimpleQueue[object] | None = None
        self.reset()
        if background:
            self._queue = queue.SimpleQueue()
            self._slots = threading.Semaphore(_PENDING)
            threading.Thread(target=self._run, name="hubpin-hash", daemon=True).start()

    def _run(self) -> None:
        q = self._queue
        assert q is not None
        while (item := q.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._update(item)  # type: ignore[arg-type]
            self._slots.release()

    def _update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)

    def update(self, data: bytes | memoryview) -> None:
        if self._queue is None:
            self._update(data)
        else:
            self._slots.acquire()
            self._queue.put(bytes(data) if isinstance(data, memoryview) else data)

    def wait(self) -> None:
        """Block until every byte handed to `update` is in the digests."""
        if self._queue is not None:
            done = threading.Event()
            self._queue.put(done)
            done.wait()

    def reset(self) -> None:
        self.wait()
        self.sha256 = hashlib.sha256()
        self.sha1 = None if self._entry.lfs else hashlib.sha1(b"blob %d\0" % self._entry.size)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None


_PENDING = 64  # chunks (of up to 64 KiB from httpx) waiting for the hash thread


# -- the downloader ------------------------------------------------------------------------


class Downloader:
    """Fetch blobs over one keep-alive `httpx.Client` (thread-safe; shared by worker threads),
    or for files up to `raw_max` bytes over `raw` (per-thread http.client connections).

    `file_url(repo, commit, path)` builds the URL (the HubClient's). `on_bytes(n)` is called as
    bytes arrive (negative when a restart throws received bytes away).
    """

    def __init__(
        self,
        http: httpx.Client,
        file_url: Callable[[RepoKey, str, str], str],
        *,
        retries: int = 5,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        on_bytes: Callable[[int], None] | None = None,
        fsync: bool = True,
        use_locks: bool = True,
        raw: RawPool | None = None,
        raw_max: int = 1 << 20,
    ) -> None:
        self.http = http
        self.file_url = file_url
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.on_bytes = on_bytes or (lambda n: None)
        self.fsync = fsync
        self.use_locks = use_locks
        self.raw = raw  # http.client fast path for files up to `raw_max` bytes
        self.raw_max = raw_max
        self.stop = threading.Event()

    # public ------------------------------------------------------------------------------
    def fetch(self, task: BlobTask) -> BlobResult:
        """Download, verify and publish `task`'s blob; raise a HubpinError on failure."""
        final = task.blobs_dir / task.entry.etag
        with self._lock(task):
            if _is_complete_blob(final, task.entry.size):
                return BlobResult(skipped=True)
            return self._fetch_unlocked(task, final)

    # internals ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, task: BlobTask) -> Iterator[None]:
        """`flock` on `.locks/<repo folder>/<etag>.lock`, the file huggingface_hub's filelock locks too.

        Taken directly (filelock costs ~0.4 ms per acquire here, as much as a small file's GET).
        Opened without O_TRUNC and with O_NOFOLLOW, so a lock path planted as a symlink never
        touches its target (CVE-2025-68146); then we go on unlocked: correctness never depends on it.
        """
        fd = -1
        # below LOCK_MIN_SIZE a duplicate download costs less than creating the lock file
        if self.use_locks and task.entry.size >= LOCK_MIN_SIZE:
            try:
                task.locks_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(task.locks_dir / f"{task.entry.etag}.lock",
                             os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o664)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                if fd >= 0:
                    os.close(fd)
                fd = -1  # read-only .locks/, a planted symlink, no flock support
        try:
            yield
        finally:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _fetch_unlocked(self, task: BlobTask, final: Path) -> BlobResult:
        entry = task.entry
        mine = inflight_name(task.blobs_dir, entry.etag)
        offset = claim(task.blobs_dir, entry.etag, entry.size, mine) if task.partial else 0
        if offset:
            fd = os.open(mine, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        else:
            fd = _create(mine)
        result = BlobResult(reused=offset)
        keep = False  # keep the bytes as a resumable partial when we stop for a transient reason
        published = False
        h = _Hash(entry, background=entry.size > BACKGROUND_HASH_MIN)
        try:
            if offset:
                offset = _hash_prefix(mine, offset, h)
                os.lseek(fd, offset, os.SEEK_SET)
            resumed = offset > 0
            while True:
                offset = self._download(task, fd, h, offset, result)
                if _digest_matches(h, entry):
                    break
                if resumed:  # the kept prefix was bad (e.g. written before a power loss): once more from 0
                    resumed = False
                    self.on_bytes(-offset)
                    result.reused = 0
                    offset = 0
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    h.reset()
                    continue
                actual = h.sha256.hexdigest()
                kind, expected = "sha256", entry.sha256 or entry.etag
                if actual == expected and h.sha1 is not None:
                    kind, expected, actual = "git blob id", entry.etag, h.sha1.hexdigest()
                raise HashMismatchError(
                    f"{task.what}: {kind}", expected=expected, actual=actual,
                    hint="the server sent other bytes than the lock pins; nothing was written to the cache",
                )
            if self.fsync:  # bytes on disk before the rename: a crash must not leave an empty blob
                getattr(os, "fdatasync", os.fsync)(fd)
            os.close(fd)
            fd = -1
            os.replace(mine, final)  # an identical blob published meanwhile is simply replaced
            published = True
            return result  # the caller fsyncs blobs/ once, before any link or ref points at it
        except (RemoteError, Cancelled, KeyboardInterrupt):
            keep = True
            raise
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientSpaceError(
                    f"no space left on device writing {task.what} into {task.blobs_dir}: "
                    f"needed {entry.size} bytes, free {disk_free(task.blobs_dir) or 0} bytes",
                    hint="free some space (e.g. `hubpin gc`) or use --cache-dir on a bigger disk; "
                    "the blobs already published are kept",
                ) from None
            raise
        finally:
            h.close()
            if fd >= 0:
                os.close(fd)
            if keep and _size(mine) >= KEEP_PARTIAL_MIN:
                with contextlib.suppress(OSError):
                    os.replace(mine, resting_name(task.blobs_dir, entry.etag))
            if not published:
                with contextlib.suppress(FileNotFoundError):
                    mine.unlink()

    def _download(self, task: BlobTask, fd: int, h: _Hash, offset: int, result: BlobResult) -> int:
        """GET until `offset == size`, resuming after transient failures; return the final offset."""
        size = task.entry.size
        if offset >= size:
            return offset
        failures = 0  # consecutive failures that made no progress
        attempts = 0
        while offset < size:
            if self.stop.is_set():
                raise Cancelled(f"{task.what}: stopped")
            before = offset
            attempts += 1
            try:
                offset = self._get_once(task, fd, h, offset, result)
            except _Restart:
                self.on_bytes(-offset)
                result.reused = 0
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                h.reset()
                offset = 0
                failures = 0
                continue
            except _Retry as e:
                offset = e.offset if e.offset is not None else offset
                failures = 0 if offset > before else failures + 1
                if failures > self.retries or attempts > 10 * (self.retries + 1):
                    raise RemoteError(
                        f"{task.what}: download failed after {attempts} attempts ({e.reason}); "
                        f"{offset} of {size} bytes kept for the next run",
                        hint="rerun `hubpin sync` to continue where it stopped",
                    ) from None
                wait = e.after if e.after is not None else self.backoff * (2 ** max(0, failures - 1))
                if self.stop.wait(min(wait, self.max_wait)):
                    raise Cancelled(f"{task.what}: stopped") from None
        return offset

    def _get_once(self, task: BlobTask, fd: int, h: _Hash, offset: int, result: BlobResult) -> int:
        entry = task.entry
        size = entry.size
        url = self.file_url(task.repo, task.commit, entry.path)
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        result.requests += 1
        try:
            fast = self.raw is not None and size <= self.raw_max and self.raw.usable(url)
            opened = self.raw.get(url, headers) if fast else self.http.stream("GET", url, headers=headers)  # type: ignore[union-attr]
            with opened as r:
                if fast and 300 <= r.status_code < 400:  # redirects are httpx's job (auth, origins)
                    self.raw_max = -1
                    raise _Retry("redirect", after=0.0, offset=offset)
                self._check_response(task, r)
                start = offset
                if r.status_code == 206:
                    m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != offset or (m.group(3) != "*" and int(m.group(3)) != size):
                        raise _Restart()
                elif offset:  # 200 to a Range request: the whole body again; start over with it
                    self.on_bytes(-offset)
                    result.reused = 0
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    h.reset()
                    offset = start = 0
                declared = r.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and start + int(declared) != size:
                    ctype = r.headers.get("Content-Type", "?").split(";")[0]
                    raise HashMismatchError(
                        f"{task.what}: size", expected=f"{size} bytes",
                        actual=f"{start + int(declared)} bytes ({ctype} answer from {_host(url)})",
                        hint="a proxy or captive portal may be answering instead of the Hub; check --endpoint",
                    )
                try:
                    for chunk in r.iter_raw():
                        if not chunk:
                            continue
                        if offset + len(chunk) > size:
                            raise HashMismatchError(
                                f"{task.what}: size", expected=f"{size} bytes", actual=f"more than {size} bytes",
                                hint="the server sent more bytes than the lock pins; nothing was written to the cache",
                            )
                        _write_all(fd, chunk)
                        h.update(chunk)
                        offset += len(chunk)
                        result.downloaded += len(chunk)
                        self.on_bytes(len(chunk))
                        if self.stop.is_set() and offset < size:
                            raise Cancelled(f"{task.what}: stopped")
                except (httpx.TransportError, httpx.StreamError) as e:
                    raise _Retry(f"connection lost after {offset} of {size} bytes: {type(e).__name__}",
                                 offset=offset) from None
        except httpx.TransportError as e:
            raise _Retry(f"{type(e).__name__}: {e}", offset=offset) from None
        if offset < size:
            raise _Retry(f"body ended after {offset} of {size} bytes", offset=offset)
        return offset

    def _check_response(self, task: BlobTask, r: httpx.Response | RawResponse) -> None:
        """Status and `X-Repo-Commit`, before a single byte is written."""
        status = r.status_code
        if status in _RETRY_STATUS:
            raise _Retry(f"HTTP {status}", _retry_after(r))
        if status >= 400:
            code = r.headers.get("X-Error-Code", "")
            hint = {
                401: "the endpoint wants a token: set HF_TOKEN",
                403: "the token may not read this repo",
            }.get(status, "the pinned commit may be gone from the endpoint (history squashed?); "
                          "`hubpin sync --from BUNDLE` installs it from a bundle")
            raise RemoteError(
                f"{task.what}: HTTP {status}{' ' + code if code else ''} from {_host(str(r.url))}", hint=hint
            )
        if status not in (200, 206):
            raise RemoteError(f"{task.what}: unexpected HTTP {status} from {_host(str(r.url))}")
        # the commit the server says it served; on redirects the first hop that names one counts
        served = next(
            (x.headers["X-Repo-Commit"] for x in (*r.history, r) if "X-Repo-Commit" in x.headers), None
        )
        if served != task.commit:
            raise DriftError(
                f"{task.what}: server answered commit {served or '(none)'}, expected locked {task.commit}",
                hint="the endpoint does not serve the pinned commit; nothing was written. Check --endpoint, "
                "or use `hubpin sync --from BUNDLE`",
            )


def _create(path: Path) -> int:
    """A new, empty file at `path`; its folder is made only when missing (not a mkdir per file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)


def _host(url: str) -> str:
    return httpx.URL(url).host or url


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0


def _is_complete_blob(path: Path, size: int) -> bool:
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def _hash_prefix(path: Path, length: int, h: _Hash) -> int:
    """Feed the first `length` bytes of `path` to `h`; return how many were read."""
    done = 0
    with open(path, "rb") as f:
        while done < length:
            chunk = f.read(min(CHUNK, length - done))
            if not chunk:
                break
            h.update(chunk)
            done += len(chunk)
    return done


def _digest_matches(h: _Hash, entry: FileEntry) -> bool:
    h.wait()
    sha256 = h.sha256.hexdigest()
    if entry.sha256 is not None and sha256 != entry.sha256:
        return False
    actual_etag = sha256 if entry.lfs else (h.sha1.hexdigest() if h.sha1 is not None else "")
    return actual_etag == entry.etag
