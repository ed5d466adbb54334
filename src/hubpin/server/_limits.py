"""Deadlines and connection caps that keep slow or greedy clients from starving the mirror.

uvicorn has no request-receipt deadline: its keep-alive timer is reset on every byte, so one
connection trickling header bytes lives for minutes (security.md §4, CVE-2007-6750 class).
Three layers close that gap:

* `uvicorn_protocol(limits)`: an h11 protocol subclass that closes a connection whose request
  headers are not complete `header_timeout` seconds after it opened (or after the previous
  response), refuses a connection beyond `max_conns_per_ip` from one address, and aborts a
  connection whose client has not read anything for `send_timeout` seconds (slow reader).
* `LimitsMiddleware`: ASGI; works under any server. A request body must arrive within
  `request_timeout` (else 408), and at most `max_requests_per_ip` requests of one address are
  in flight (else 503 + Retry-After).
* `granian_options(limits)`: granian's own header read timeout and connection buffer size.

Memory per connection stays bounded without extra code: h11 caps the header block
(`h11_max_incomplete_event_size`), uvicorn pauses reading when a body buffer passes 64 KiB, and
`send` waits for the socket to drain, so a slow reader holds one chunk, not the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["Limits", "LimitsMiddleware", "granian_options", "uvicorn_config", "uvicorn_protocol"]

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """Per-connection limits. Times are seconds; `0` disables a cap."""

    header_timeout: float = 10.0  # first byte (or end of the previous response) → end of headers
    request_timeout: float = 600.0  # end of headers → end of the request body
    send_timeout: float = 60.0  # longest the client may leave the socket unread
    keep_alive: float = 5.0  # idle time between requests on one connection
    max_conns_per_ip: int = 64
    max_requests_per_ip: int = 64
    max_header_bytes: int = 64 * 1024


class _GuardMixin:
    """Hooks into uvicorn's protocol callbacks (the names are the same for h11 and httptools)."""

    limits: Limits
    per_ip: Counter[str]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._ip = self.client[0] if self.client else "?"
        self.per_ip[self._ip] += 1
        if self.limits.max_conns_per_ip and self.per_ip[self._ip] > self.limits.max_conns_per_ip:
            transport.abort()  # over the cap: refuse before reading a byte
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(self._header_timer)
        self._cancel(self._send_timer)
        self.per_ip[self._ip] -= 1
        if self.per_ip[self._ip] <= 0:
            del self.per_ip[self._ip]
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:  # a request's headers are complete
            self._cancel(self._header_timer)
            self._header_timer = None

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()  # type: ignore[misc]
        if self.cycle is before:  # (a pipelined request already parsed needs no header deadline)
            self._arm_header_timer()  # the next request on this connection gets its own deadline

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        if self.limits.send_timeout and self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._expire, "send")

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        self._cancel(self._send_timer)
        self._send_timer = None

    def _arm_header_timer(self) -> None:
        self._cancel(self._header_timer)
        self._header_timer = None
        if self.limits.header_timeout and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._expire, "header")

    def _expire(self, which: str) -> None:
        if which == "header":
            self._header_timer = None
        else:
            self._send_timer = None
        if not self.transport.is_closing():
            # RST, not FIN: with SO_LINGER 0 the kernel drops the unsent bytes too, so a stalled
            # reader holds neither our buffer nor a socket buffer full of data any longer
            sock = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def uvicorn_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """An h11 protocol class enforcing `limits`; pass it as `uvicorn.Config(http=...)`."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return type(
        "GuardedH11Protocol",
        (_GuardMixin, H11Protocol),
        {"limits": limits, "per_ip": Counter()},
    )


def uvicorn_config(app: Any, *, host: str, port: int, limits: Limits | None = None, **kwargs: Any) -> Any:
    """A uvicorn.Config with the guarded protocol and matching keep-alive and header-size caps.

    Wrap `app` in `LimitsMiddleware` yourself unless it comes from `production_config`; then
    `limits` defaults to the ones that app was built with."""
    import uvicorn

    limits = limits or _limits_of(app) or Limits()
    return uvicorn.Config(
        app,  # LimitsMiddleware comes with the app (`_ops.production_config`), for granian too
        host=host,
        port=port,
        http=uvicorn_protocol(limits),
        timeout_keep_alive=max(1, int(limits.keep_alive)),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        **kwargs,
    )


def _limits_of(app: Any) -> Limits | None:
    """The `Limits` a starlette app built by `production_config` carries in its middleware."""
    config = getattr(getattr(app, "state", None), "config", None)
    for m in getattr(config, "middleware", ()):
        if getattr(m, "cls", None) is LimitsMiddleware:
            found = m.kwargs.get("limits")
            return found if isinstance(found, Limits) else None
    return None


# hyper's own default. granian's `max_buffer_size` caps the header block *and* the connection's
# write buffer: at 64 KiB one 1 GiB download ran at 2.7 GB/s, at this size 3.3 GB/s
# (interleaved curl rounds, BENCHMARKS.md "serve"); 1 MiB and 4 MiB were no faster.
GRANIAN_BUFFER = 8192 + 4096 * 100


def granian_options(limits: Limits | None = None) -> dict[str, Any]:
    """Keyword arguments for `granian.Granian(...)`: header read timeout and connection buffer size
    (the header-block cap under granian is that buffer, ~408 KiB, not `max_header_bytes`)."""
    from granian.http import HTTP1Settings

    limits = limits or Limits()
    return {
        "http1_settings": HTTP1Settings(
            header_read_timeout=int(limits.header_timeout * 1000),
            max_buffer_size=max(limits.max_header_bytes, GRANIAN_BUFFER),
        ),
    }


class _BodyTimeout(Exception):
    pass


class LimitsMiddleware:
    """ASGI: request-body deadline (408) and a per-address cap on requests in flight (503)."""

    def __init__(self, app: Any, limits: Limits | None = None) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.in_flight: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ip = (scope.get("client") or ("?", 0))[0]
        cap = self.limits.max_requests_per_ip
        if cap and self.in_flight[ip] >= cap:
            await _plain(send, 503, "too many concurrent requests from your address", {"retry-after": "1"})
            return
        self.in_flight[ip] += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.request_timeout if self.limits.request_timeout else None
        started = False
        timed_out = False

        body_done = False

        async def timed_receive() -> Message:
            nonlocal timed_out, body_done
            if deadline is None or body_done:  # after the body, receive() only waits for a disconnect
                return await receive()  # type: ignore[no-any-return]
            try:
                async with asyncio.timeout_at(deadline):
                    message: Message = await receive()
            except TimeoutError:
                timed_out = True
                raise _BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if timed_out:  # whatever the app answers after a body timeout (often a 500) becomes a 408
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _plain(send, 408, "request body not received in time",
                                 {"connection": "close", "x-error-code": "RequestTimeout"})
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except _BodyTimeout:
            if not started:
                await _plain(send, 408, "request body not received in time",
                             {"connection": "close", "x-error-code": "RequestTimeout"})
        finally:
            self.in_flight[ip] -= 1
            if self.in_flight[ip] <= 0:
                del self.in_flight[ip]


async def _plain(send: Any, status: int, message: str, extra: dict[str, str]) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-error-message", message.encode()),
        *((k.encode(), v.encode()) for k, v in extra.items()),
    ]
    with contextlib.suppress(Exception):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
