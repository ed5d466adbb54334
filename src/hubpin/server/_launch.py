"""Run the mirror under granian or uvicorn (`hubpin serve`).

granian imports its target by name in its worker process, so the app is built by
`app_from_env()` from `HUBPIN_SERVE_*` variables that `run_server` sets before starting it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ..errors import BadInput
from ..store import Store, open_store

__all__ = ["SERVERS", "app_from_env", "build_app", "check_port", "run_server"]

Server = Literal["granian", "uvicorn"]
SERVERS: tuple[str, ...] = ("granian", "uvicorn")
_ENV_STORE = "HUBPIN_SERVE_STORE"
_ENV_PUBLIC = "HUBPIN_SERVE_PUBLIC"
_ENV_REDIRECT = "HUBPIN_SERVE_REDIRECT"
_ENV_OPS = "HUBPIN_SERVE_OPS"  # JSON of production_config options (paths and globs, never secrets)


def build_app(
    store: Store, public: tuple[str, ...] = (), redirect_expires: int | None = None, ops: dict[str, Any] | None = None
) -> Any:
    """The production app: token access from the store (open while it holds no tokens).

    `redirect_expires`: answer downloads with 302s to presigned store URLs valid that long (S3).
    `ops`: the pull-through/policy options of `_ops.production_config` (upstream, allow, deny, lock, ...);
    uploads, /metrics and the access log are always on."""
    from ._ops import production_config
    from .app import create_app

    config = production_config(store, public=public, redirect_expires=redirect_expires, **(ops or {}))
    return create_app(store, config)


def app_from_env() -> Any:
    """granian's factory target: the app over `$HUBPIN_SERVE_STORE`."""
    public = tuple(p for p in os.environ.get(_ENV_PUBLIC, "").split("\n") if p)
    redirect = int(os.environ.get(_ENV_REDIRECT) or 0) or None
    ops = json.loads(os.environ.get(_ENV_OPS) or "{}")
    return build_app(open_store(os.environ[_ENV_STORE]), public, redirect, ops)


def check_port(host: str, port: int) -> None:
    """Fail early, with a one-line error, if `host:port` can't be bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise BadInput(f"cannot listen on {host}:{port}: {why}", hint="pick another --port") from e


def run_server(
    store_spec: str,
    *,
    host: str,
    port: int,
    server: Server,
    public: tuple[str, ...] = (),
    on_ready: Callable[[str], None] | None = None,
    redirect_expires: int | None = None,
    ops: dict[str, Any] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. `on_ready(url)` is called just before the server starts."""
    if not store_spec.startswith("s3://") and not Path(store_spec).is_dir():
        raise BadInput(f"store folder {store_spec} does not exist", hint="create it with `hubpin publish` or point --store at an HF cache")
    if not store_spec.startswith("s3://"):
        store_spec = str(Path(store_spec).absolute())  # granian's worker may not share our cwd
    store = open_store(store_spec)
    if redirect_expires and not hasattr(store, "presigned_url"):
        raise BadInput(f"--redirect needs a store with presigned URLs (s3://bucket/prefix), got {store_spec}",
                       hint="drop --redirect, or serve an S3 store")
    check = getattr(store, "check", None)
    if check is not None:
        check()  # an S3 store: a bad endpoint, credentials or bucket fail now, in one line
    app = build_app(store, public, redirect_expires, ops)  # bad options fail here, in one line, before binding
    check_port(host, port)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if server == "uvicorn":
        import uvicorn

        from ._limits import uvicorn_config

        config = uvicorn_config(app, host=host, port=port)
        config.log_level = "warning"
        config.access_log = False
        if on_ready:
            on_ready(url)
        uvicorn.Server(config).run()
        return
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    from ._limits import granian_options

    os.environ[_ENV_STORE] = store_spec
    os.environ[_ENV_PUBLIC] = "\n".join(public)
    os.environ[_ENV_REDIRECT] = str(redirect_expires or "")
    os.environ[_ENV_OPS] = json.dumps(ops or {})
    g = Granian(
        "hubpin.server._launch:app_from_env",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=1,
        log_level=LogLevels.warning,
        **granian_options(),
    )
    if on_ready:
        on_ready(url)
    g.serve()
