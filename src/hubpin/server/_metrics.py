"""Prometheus metrics, the access log, and `/metrics`.

`ObservabilityMiddleware` wraps the whole app: it counts requests by route and status, bytes
sent and active connections, and writes one access-log line per request to the
`hubpin.access` logger. The line never contains the Authorization header or a query string
(tokens and signed URLs live there); only method, path, status, bytes, time and the token's
*name* when it is a valid hubpin token.

Pull-through and store counters (`STORE_LOOKUPS`, `UPSTREAM_FETCHES`, `HASH_FAILURES`) are
incremented by `proxy.py`. All metrics live in `REGISTRY`, one per process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "ACTIVE",
    "BYTES_SENT",
    "HASH_FAILURES",
    "REGISTRY",
    "REQUESTS",
    "STORE_LOOKUPS",
    "UPSTREAM_FETCHES",
    "ObservabilityMiddleware",
    "metrics_response",
    "route_of",
]

REGISTRY = CollectorRegistry()
REQUESTS = Counter("hubpin_requests", "HTTP requests by route, method and status", ["route", "method", "status"],
                   registry=REGISTRY)
BYTES_SENT = Counter("hubpin_response_bytes", "Response body bytes sent", ["route"], registry=REGISTRY)
ACTIVE = Gauge("hubpin_active_requests", "Requests being served right now", registry=REGISTRY)
DURATION = Histogram("hubpin_request_seconds", "Time to the end of the response", ["route"], registry=REGISTRY,
                     buckets=(0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600))
STORE_LOOKUPS = Counter("hubpin_store_lookups", "Blob lookups in the store by result (hit or miss)", ["result"],
                        registry=REGISTRY)
UPSTREAM_FETCHES = Counter("hubpin_upstream_fetches", "Blob downloads started from the upstream", ["result"],
                           registry=REGISTRY)
HASH_FAILURES = Counter("hubpin_hash_failures", "Blobs refused because size or hash did not match", registry=REGISTRY)

access_log = logging.getLogger("hubpin.access")


def route_of(path: str) -> str:
    """A low-cardinality route label: never the repo id or the file name."""
    if path in ("/healthz", "/metrics", "/api/whoami-v2"):
        return path
    if path.startswith("/api/hubpin/upload"):
        return "upload"
    if path.startswith("/api/"):
        for kind in ("/tree/", "/paths-info/", "/refs", "/commits/", "/revision/"):
            if kind in path:
                return "api:" + kind.strip("/")
        return "api:info"
    if "/resolve/" in path:
        return "resolve"
    return "other"


def metrics_response() -> tuple[bytes, str]:
    """The `/metrics` body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class ObservabilityMiddleware:
    """ASGI: metrics for every request, `/metrics` and `/healthz` answered here, one log line each.

    `who(token) -> name | None` names a caller in the log (never the secret itself).
    """

    def __init__(self, app: Any, *, who: Callable[[str | None], str | None] | None = None) -> None:
        self.app = app
        self.who = who

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/metrics" and scope["method"] in ("GET", "HEAD"):
            body, ctype = metrics_response()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return
        route = route_of(path)
        status = 0
        sent = 0
        t0 = time.perf_counter()

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":
                import os

                sent += os.path.getsize(message["path"])
            await send(message)

        name = "-"
        if self.who is not None and access_log.isEnabledFor(logging.INFO):
            from .auth import bearer_token

            token = bearer_token(scope.get("headers", []))
            if token:  # the lookup may re-read the store's tokens (S3): not on the event loop
                from starlette.concurrency import run_in_threadpool

                name = await run_in_threadpool(self.who, token) or "invalid-token"
        ACTIVE.inc()
        try:
            await self.app(scope, receive, counting_send)
        finally:
            ACTIVE.dec()
            elapsed = time.perf_counter() - t0
            REQUESTS.labels(route, scope["method"], str(status or 499)).inc()
            BYTES_SENT.labels(route).inc(sent)
            DURATION.labels(route).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                client = (scope.get("client") or ("-", 0))[0]
                # the raw path without the query string: tokens never appear here
                raw = scope.get("raw_path") or path.encode()
                shown = raw.split(b"?", 1)[0].decode("latin-1")
                access_log.info('%s %s "%s %s" %s %d %.3f', client, name, scope["method"], shown, status or 499,
                                sent, elapsed)
