"""Keep-alive `http.client` connections, one per thread, for small downloads from a plain-HTTP endpoint.

A GET through httpx costs ~0.5 ms of CPU here, as much as everything else a small file needs;
http.client costs a quarter of that. So `sync` sends small files (the many-small-files case:
tokenizers, configs, dataset shards) through this pool when the endpoint is `http://` (a
mirror on the LAN or loopback) and no proxy applies; everything else (https, proxies,
redirects, big files) goes through the HubClient's httpx client. Errors come out as httpx
exceptions, so callers handle one family.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

__all__ = ["RawPool", "RawResponse"]

_READ = 1 << 16


class RawResponse:
    """The slice of `httpx.Response` the downloader reads: status, headers, history, url, iter_raw()."""

    history: tuple[httpx.Response, ...] = ()

    def __init__(self, response: http.client.HTTPResponse, url: str) -> None:
        self._r = response
        self.status_code = response.status
        self.headers = response.headers  # an email.message.Message: case-insensitive get / in
        self.url = url

    def iter_raw(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self._r.read1(_READ)
            except (http.client.HTTPException, OSError) as e:
                raise httpx.ReadError(f"{type(e).__name__}: {e}") from None
            if not chunk:
                return
            yield chunk


class RawPool:
    """One keep-alive connection per thread to the endpoint's host (enabled for plain http only)."""

    def __init__(self, endpoint: str, token: str | None, user_agent: str, timeout: float = 30.0) -> None:
        parts = urlsplit(endpoint)
        self.host = parts.hostname or ""
        self.port = parts.port or 80
        self.origin = f"http://{parts.netloc}"
        self.timeout = timeout
        proxies = urllib.request.getproxies()
        self.enabled = (
            parts.scheme == "http" and bool(self.host)
            and ("http" not in proxies or bool(urllib.request.proxy_bypass(self.host)))
        )
        self._headers = {"User-Agent": user_agent}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()

    def usable(self, url: str) -> bool:
        return self.enabled and url.startswith(self.origin + "/")

    def _conn(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def get(self, url: str, headers: dict[str, str]) -> Iterator[RawResponse]:
        """GET `url`; yield the response with its body unread. A reused connection the server
        closed meanwhile is retried once on a fresh one (keep-alive races are not failures)."""
        target = url[len(self.origin):]
        for attempt in (0, 1):
            conn, reused = self._conn()
            try:
                conn.request("GET", target, headers={**self._headers, **headers})
                response = conn.getresponse()
                break
            except (http.client.HTTPException, OSError) as e:
                self._drop()
                if reused and attempt == 0:
                    continue
                raise httpx.ConnectError(f"{type(e).__name__}: {e}") from None
        complete = False
        try:
            yield RawResponse(response, url)
            complete = response.isclosed() or response.length == 0
        finally:
            if complete and not response.will_close:
                response.close()  # body consumed: the connection stays open for the next GET
            else:
                self._drop()  # an unread or broken body: never reuse the connection
