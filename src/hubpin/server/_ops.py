"""Assemble the production mirror's `ServerConfig`: tokens, pull-through, lock pinning,
uploads, metrics, access log and request limits (`hubpin serve --upstream/--allow/--lock …`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from starlette.middleware import Middleware

from ..errors import BadInput
from ..lockfile import read_lock
from ..store import Store
from ..tokens import validate_globs
from ._limits import Limits, LimitsMiddleware
from ._metrics import ObservabilityMiddleware
from ._source import Source
from ._upload import upload_routes
from .auth import TokenAccess
from .config import ServerConfig
from .proxy import MirrorSource, Upstream

__all__ = ["configure_access_log", "production_config", "read_token_file"]

log = logging.getLogger("hubpin.server")


def configure_access_log() -> None:
    """Send `hubpin.access` lines (one per request, no tokens) to stderr unless logging is set up."""
    logger = logging.getLogger("hubpin.access")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def read_token_file(path: str | Path) -> str:
    """The upstream token from a file (one line); never taken from the command line or the log."""
    try:
        token = Path(path).read_text("utf-8").strip()
    except OSError as e:
        raise BadInput(f"--upstream-token-file {path}: cannot read it ({e.strerror})") from None
    if not token or "\n" in token:
        raise BadInput(f"--upstream-token-file {path}: expected exactly one non-empty line")
    return token


def production_config(
    store: Store,
    *,
    public: Iterable[str] = (),
    upstream: str | None = None,
    upstream_token_file: str | Path | None = None,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    lock: str | Path | None = None,
    limits: Limits | None = None,
    token_ttl: float = 2.0,
    ref_ttl: float = 60.0,
    redirect_expires: int | None = None,
    access_log: bool = True,
    per_ip: int | None = None,
    policy: str | Path | None = None,
) -> ServerConfig:
    """The ServerConfig `hubpin serve` runs with. Raises BadInput for inconsistent options.

    `access_log`: make sure `hubpin.access` lines reach stderr (tests capture them instead).
    `per_ip`: connections and requests in flight per client address (0: no cap; behind a proxy
    every client has the proxy's address, so cap there instead).
    `policy`: a hubpin.toml whose policy the mirror enforces per file (hubpin._policy_serve)."""
    if access_log:
        configure_access_log()
    if per_ip is not None:
        if per_ip < 0:
            raise BadInput(f"--per-ip-limit {per_ip}: expected 0 (no cap) or a positive number")
        limits = replace(limits or Limits(), max_conns_per_ip=per_ip, max_requests_per_ip=per_ip)
    public = validate_globs(tuple(public), "--public")
    allow = validate_globs(tuple(allow), "--allow")
    deny = validate_globs(tuple(deny), "--deny")
    if upstream is not None and not allow:
        raise BadInput("--upstream needs at least one --allow glob (what may be fetched)",
                       hint="e.g. --allow 'org/*' --allow 'datasets/org/*', or --allow '*' for everything")
    if upstream is None and (allow or upstream_token_file):
        raise BadInput("--allow and --upstream-token-file only make sense with --upstream URL")
    if upstream is not None and not upstream.startswith(("http://", "https://")):
        raise BadInput(f"--upstream {upstream!r}: expected an http:// or https:// URL")
    access = TokenAccess(store, public=public, ttl=token_ttl)
    if access.is_open():
        log.warning("open mirror: %s holds no tokens and no --public glob was given, so anyone who can reach "
                    "this server reads every repo (create a token to close it)", store.location)
    source: Source | None = Source(store, redirect_expires=redirect_expires) if redirect_expires else None
    if upstream is not None or deny or lock is not None:
        token = read_token_file(upstream_token_file) if upstream_token_file else None
        source = MirrorSource(
            store,
            upstream=Upstream(upstream, token=token) if upstream else None,
            allow=allow,
            deny=deny,
            lock=read_lock(lock) if lock is not None else None,
            ref_ttl=ref_ttl,
            redirect_expires=redirect_expires,
        )
    if policy is not None:
        # supply-chain policy of a hubpin.toml (hubpin._policy_serve): files checked before serving
        from .._policy_serve import policy_source

        source = policy_source(source or Source(store), policy)  # type: ignore[assignment]

    def who(token: str | None) -> str | None:
        rec = access.record(token)
        return rec.name if rec else None

    return ServerConfig(
        access=access,
        source=source,
        routes=tuple(upload_routes(store, access)),
        middleware=(
            Middleware(ObservabilityMiddleware, who=who),
            Middleware(LimitsMiddleware, limits=limits or Limits()),
        ),
    )
