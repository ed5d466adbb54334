"""Shared helpers for the production-mirror tests: stores, servers with limits, fault upstreams."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.server._limits import Limits, uvicorn_config
from hubpin.server._ops import production_config
from hubpin.server.app import create_app
from hubpin.server.runner import free_port
from hubpin.store import LocalStore


def new_store(path: Path) -> LocalStore:
    path.mkdir(parents=True, exist_ok=True)
    return LocalStore(path, fsync=False)


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def publish_files(store: LocalStore, tmp: Path, repo_id: str, files: dict[str, bytes], *, dataset: bool = False) -> str:
    folder = write_folder(tmp / f"src-{repo_id.replace('/', '-')}-{time.monotonic_ns()}", files)
    return publish(folder, RepoKey("dataset" if dataset else "model", repo_id), store).commit.sha


@contextlib.contextmanager
def serve(app: Any, *, limits: Limits | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` with the guarded uvicorn protocol in a thread; yield the base URL."""
    port = free_port(host)
    config = uvicorn_config(app, host=host, port=port, limits=limits, log_level="warning", lifespan="off",
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def mirror_app(store: LocalStore, **ops: Any) -> Any:
    """The production app over `store` (tokens re-read at once, so revocation is immediate)."""
    ops.setdefault("token_ttl", 0.0)
    ops.setdefault("access_log", False)
    return create_app(store, production_config(store, **ops))


class Faulty:
    """ASGI wrapper around an upstream: counts requests and injects faults into /resolve/ bodies."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str] = []
        self.flip_byte = False
        self.fail_429: int = 0  # answer this many API requests with 429 first
        self.retry_after = "1"
        self.body_delay = 0.0  # seconds to sleep before each body chunk
        self.lock = threading.Lock()

    def count(self, pred: Callable[[str, str], bool]) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if pred(m, p))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.lock:
            self.requests.append((scope["method"], scope["path"]))
            self.auth_headers += [v.decode() for k, v in scope["headers"] if k == b"authorization"]
        if self.fail_429 and scope["path"].startswith("/api/"):
            self.fail_429 -= 1
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"retry-after", self.retry_after.encode()), (b"content-length", b"0"),
                                    (b"x-error-code", b"TooManyRequests")]})
            await send({"type": "http.response.body", "body": b""})
            return
        resolve = "/resolve/" in scope["path"] and scope["method"] == "GET"
        flipped = False

        async def faulty_send(message: dict[str, Any]) -> None:
            nonlocal flipped
            if resolve and message["type"] == "http.response.body":
                body = message.get("body", b"")
                if self.body_delay:
                    import asyncio

                    await asyncio.sleep(self.body_delay)
                if self.flip_byte and body and not flipped:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                    flipped = True
                    message = {**message, "body": body}
            await send(message)

        await self.app(scope, receive, faulty_send)


def store_files(root: Path) -> list[str]:
    """Every file below a store except hubpin's metadata (relative paths, sorted)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)
