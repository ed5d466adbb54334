"""Single-flight blob fetches: one upstream download per blob, any number of readers.

The leader (a background thread) streams the upstream body into a spool file and, in the same
pass, into the store's `BlobWriter` (which hashes and verifies before publishing). Readers
stream the spool file as it grows. The last byte is held back until the blob is verified: a
body that fails the size or hash check is cut one byte short for every reader, so each
client's own size check fails too, and nothing reaches the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from ..errors import HubpinError
from ..objects import FileEntry, RepoKey
from ..store import Store

__all__ = ["BlobFetch", "FetchFailed", "SingleFlight"]

CHUNK = 1 << 20
_NOTIFY_EVERY = 1 << 20


class FetchFailed(Exception):
    """Raised in a reader when the upstream body failed (network, size or hash)."""


class BlobFetch:
    """One in-progress download of `entry`'s blob; readers call `aiter_range`."""

    def __init__(self, repo: RepoKey, entry: FileEntry, spool_dir: Path) -> None:
        self.repo = repo
        self.entry = entry
        fd, name = tempfile.mkstemp(prefix=f".{entry.etag[:16]}.", suffix=".spool", dir=spool_dir)
        self._fd = fd
        self.spool = Path(name)
        self.cond = threading.Condition()
        self.written = 0
        self.done = False  # verified and published
        self.error: str | None = None
        self.store: Store | None = None
        # async readers wait on an asyncio.Event of their own loop, so none holds a thread
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def _notify(self) -> None:
        """Wake every reader (call with `self.cond` held)."""
        self.cond.notify_all()
        for loop, event in list(self._waiters):
            with contextlib.suppress(RuntimeError):  # a loop that has closed
                loop.call_soon_threadsafe(event.set)

    # -- leader side ----------------------------------------------------------------------
    def run(
        self,
        store: Store,
        chunks: Iterator[bytes],
        on_finish: Callable[[], None] = lambda: None,
        on_published: Callable[[], None] = lambda: None,
    ) -> Exception | None:
        """Copy `chunks` to the spool and the store; publish only if size and hashes match.

        `on_published` runs after the blob is in the store and before readers get the last
        byte, so a client that finished reading finds the store up to date.
        Returns the exception that stopped the fetch (also shown to every reader), or None.
        """
        self.store = store
        try:
            with store.blob_writer(self.repo, self.entry.etag, self.entry.size, self.entry.sha256) as w:
                told = 0
                for chunk in chunks:
                    w.write(chunk)  # raises before writing past the expected size
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(self._fd, view):]
                    with self.cond:
                        self.written += len(chunk)
                        if self.written - told >= _NOTIFY_EVERY:  # wake readers per MiB, not per packet
                            told = self.written
                            self._notify()
            on_published()
            with self.cond:
                self.done = True
                self._notify()
            return None
        except BaseException as e:
            with self.cond:
                self.error = str(e) if isinstance(e, HubpinError) else f"{type(e).__name__}: {e}"
                self._notify()
            if not isinstance(e, Exception):
                raise
            return e
        finally:
            os.close(self._fd)
            on_finish()  # new readers now go to the store (or start a new fetch)
            with contextlib.suppress(FileNotFoundError):
                self.spool.unlink()  # open readers keep their own descriptor

    # -- reader side ----------------------------------------------------------------------
    def _limit(self) -> int:
        """Bytes readers may have now (call with `self.cond` held); raises FetchFailed on failure."""
        if self.error is not None:
            raise FetchFailed(self.error)
        # unverified: everything but the last byte
        return self.entry.size if self.done else min(self.written, self.entry.size - 1)

    async def aiter_range(self, start: int, end: int, wait: float = 60.0) -> AsyncIterator[bytes]:
        """Yield bytes [start, end) as they arrive; raise FetchFailed if the fetch fails.

        Runs on the event loop: a reader waiting for bytes holds no worker thread."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self.cond:
            self._waiters.add(waiter)
        try:
            try:
                fd = os.open(self.spool, os.O_RDONLY)
            except FileNotFoundError:  # finished between join() and here
                if not self.done:
                    raise FetchFailed(self.error or "upstream fetch ended") from None
                assert self.store is not None
                for chunk in self.store.read_blob(self.repo, self.entry.etag, start, end):
                    yield chunk
                return
            try:
                pos = start
                while pos < end:
                    waiter[1].clear()  # before looking: a later notify sets it again
                    with self.cond:
                        limit = self._limit()
                    if limit <= pos:
                        try:
                            await asyncio.wait_for(waiter[1].wait(), wait)
                        except TimeoutError:
                            raise FetchFailed(f"no upstream bytes for {wait:.0f} s") from None
                        continue
                    data = os.pread(fd, min(min(limit, end) - pos, CHUNK), pos)
                    if not data:
                        raise FetchFailed("spool file shorter than announced")
                    pos += len(data)
                    yield data
            finally:
                os.close(fd)
        finally:
            with self.cond:
                self._waiters.discard(waiter)


class SingleFlight:
    """At most one `BlobFetch` per (repo, etag) at a time."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self._lock = threading.Lock()
        self._active: dict[tuple[RepoKey, str], BlobFetch] = {}

    def join(
        self, repo: RepoKey, entry: FileEntry, start_leader: Callable[[BlobFetch], None]
    ) -> tuple[BlobFetch, bool]:
        """The fetch in progress for the blob, or a new one started with `start_leader`.

        Returns (fetch, started_here). `start_leader` must start the download in the background.
        """
        key = (repo, entry.etag)
        with self._lock:
            fetch = self._active.get(key)
            if fetch is not None:
                return fetch, False
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            fetch = BlobFetch(repo, entry, self.spool_dir)
            self._active[key] = fetch
        start_leader(fetch)
        return fetch, True

    def finish(self, fetch: BlobFetch) -> None:
        with self._lock:
            if self._active.get((fetch.repo, fetch.entry.etag)) is fetch:
                del self._active[(fetch.repo, fetch.entry.etag)]
