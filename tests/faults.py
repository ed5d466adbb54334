"""A fault-injecting ASGI wrapper around the real hubpin mirror (`hubpin.server.app.create_app`).

The wrapped app serves a real store; per-test knobs on `FaultyHub.faults` change what reaches
the client on `GET .../resolve/...`: truncate, flip a byte, extra bytes, ignore Range, wrong
Content-Range, 429 + Retry-After, trickle, wrong X-Repo-Commit, an HTML page with 200. Every
request is logged (`FaultyHub.log`) so tests can assert how many were made and with what Range.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HTML = b"<!doctype html><html><body><h1>Please sign in to the corporate proxy</h1></body></html>"


@dataclass
class Faults:
    """What to break. Offsets are absolute positions in the file (not in the response)."""

    only: str | None = None  # apply only to resolve paths containing this text
    truncate_at: int | None = None  # every response stops (connection closed) at this file offset
    truncate_after: int | None = None  # every response stops after this many body bytes
    flip_at: int | None = None  # invert the byte at this file offset
    extra: int = 0  # append junk bytes; the length is then not declared (chunked)
    ignore_range: bool = False  # answer 200 + the whole file to a Range request
    bad_content_range: bool = False  # 206 with a Content-Range that does not match the body
    status_429: int = 0  # answer this many resolve GETs with 429
    retry_after: str = "1"
    trickle: tuple[int, float] | None = None  # (bytes per piece, seconds between pieces)
    wrong_commit: str | None = None  # X-Repo-Commit to claim instead of the real one
    html: bool = False  # a captive portal: 200 text/html instead of the file


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int = 0


@dataclass
class FaultyHub:
    """ASGI app: `FaultyHub(create_app(store))`; change `faults` between requests."""

    app: Callable[[Scope, Receive, Send], Awaitable[None]]
    faults: Faults = field(default_factory=Faults)
    log: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, **knobs: Any) -> Faults:
        with self._lock:
            self.faults = Faults(**knobs)
            self.log.clear()
        return self.faults

    def resolve_gets(self) -> list[Request]:
        with self._lock:
            return [r for r in self.log if r.method == "GET" and "/resolve/" in r.path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        req = Request(scope["method"], scope.get("path", ""), headers.get("range"))
        with self._lock:
            self.log.append(req)
            f = self.faults
        scope = dict(scope)
        scope.pop("extensions", None)  # no pathsend/zero-copy: bodies pass through us as chunks
        applies = scope["method"] == "GET" and "/resolve/" in req.path and (f.only is None or f.only in req.path)
        if not applies:
            await self.app(scope, receive, _recording(send, req))
            return
        if f.status_429:
            with self._lock:
                f.status_429 -= 1
            req.status = 429
            await _simple(send, 429, b"slow down", [(b"retry-after", f.retry_after.encode()),
                                                     (b"x-error-code", b"TooManyRequests")])
            return
        if f.ignore_range:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
        range_start = _range_start(req.range) if not f.ignore_range else 0
        await self.app(scope, receive, _Mangler(send, f, req, range_start).send)


def _range_start(header: str | None) -> int:
    if header and header.startswith("bytes="):
        first = header[6:].split("-", 1)[0]
        if first.isdigit():
            return int(first)
    return 0


def _recording(send: Send, req: Request) -> Send:
    async def inner(message: Message) -> None:
        if message["type"] == "http.response.start":
            req.status = message["status"]
        await send(message)

    return inner


async def _simple(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Abort(Exception):
    """Raised to make the server drop the connection mid-body (a truncated download)."""


class _Mangler:
    def __init__(self, send: Send, f: Faults, req: Request, range_start: int) -> None:
        self._send = send
        self.f = f
        self.req = req
        self.pos = range_start  # file offset of the next body byte
        self.sent = 0  # body bytes of this response
        self.status = 0
        self.dropped = False

    async def send(self, message: Message) -> None:
        f = self.f
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.req.status = self.status
            headers = list(message.get("headers", []))
            if self.status in (200, 206):
                if f.html:
                    self.dropped = True
                    await _simple(self._send, 200, HTML, [(b"content-type", b"text/html; charset=utf-8"),
                                                          *[(k, v) for k, v in headers if k.lower() == b"x-repo-commit"]])
                    return
                if f.wrong_commit:
                    headers = [(k, v) for k, v in headers if k.lower() != b"x-repo-commit"]
                    headers.append((b"x-repo-commit", f.wrong_commit.encode()))
                if f.extra:
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                if f.bad_content_range and self.status == 206:
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-range"]
                    headers.append((b"content-range", f"bytes 0-{self.pos}/{self.pos + 1}".encode()))
            message = {**message, "headers": headers}
            await self._send(message)
            return
        if message["type"] != "http.response.body" or self.dropped:
            if not self.dropped:
                await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.status not in (200, 206):
            await self._send(message)
            return
        stop = None
        if f.truncate_at is not None:
            stop = f.truncate_at - self.pos
        if f.truncate_after is not None:
            left = f.truncate_after - self.sent
            stop = left if stop is None else min(stop, left)
        if stop is not None and stop < len(body):
            body = body[: max(0, stop)]
            await self._piece(body)
            raise _Abort("injected truncation")
        if f.flip_at is not None and self.pos <= f.flip_at < self.pos + len(body):
            i = f.flip_at - self.pos
            body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
        await self._piece(body, more=True)
        if not more:
            if f.extra:
                await self._piece(b"\0" * f.extra, more=True)
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _piece(self, body: bytes, more: bool = True) -> None:
        trickle = self.f.trickle
        step = trickle[0] if trickle else max(1, len(body))
        for i in range(0, len(body), step):
            part = body[i:i + step]
            await self._send({"type": "http.response.body", "body": part, "more_body": more})
            self.pos += len(part)
            self.sent += len(part)
            if trickle:
                await asyncio.sleep(trickle[1])


# -- helpers shared by the sync tests --------------------------------------------------------


def lock_for(store: Any, repo_id: str, sha: str, *, dataset: bool = False, revision: str = "main",
             complete: bool = True) -> Any:
    """A one-repo Lockfile pinning `sha` of `repo_id` as published in `store` (no `hubpin lock` needed)."""
    from hubpin.lockfile import LockedRepo, Lockfile
    from hubpin.objects import RepoKey

    repo = RepoKey("dataset" if dataset else "model", repo_id)
    commit = store.get_commit(repo, sha)
    assert commit is not None, f"{repo_id}@{sha} not in the store"
    files = commit.files if complete else commit.files[:-1]
    return Lockfile((LockedRepo(repo, revision, sha, files, complete),))


def cache_state(root: Any) -> dict[str, str]:
    """Every path under an HF cache with what it is: link target, or size+sha256 of a file."""
    import hashlib
    import os
    from pathlib import Path

    out: dict[str, str] = {}
    root = Path(root)
    if not root.exists():
        return out
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            else:
                data = p.read_bytes()
                out[rel] = f"{len(data)}:{hashlib.sha256(data).hexdigest()[:16]}"
    return out
