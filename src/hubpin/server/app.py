"""The Hub-compatible mirror: `create_app(store, config) -> Starlette`.

Routes (hub-protocol.md §2), all parsed from the RAW path by `_rawpath.parse_path`:

    HEAD/GET /{repo}/resolve/{rev}/{path}            file bytes + X-Repo-Commit, ETag, X-Linked-*
    HEAD/GET /datasets/{repo}/resolve/{rev}/{path}
    GET  /api/{models|datasets}/{repo}[/revision/{rev}]   repo info (`?blobs=true`)
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]          `?recursive=&expand=&cursor=`
    POST /api/{type}s/{repo}/paths-info/{rev}             form `paths=…&expand=`
    GET  /api/{type}s/{repo}/refs[?include_prs=1]
    GET  /api/{type}s/{repo}/commits/{rev}
    GET  /api/whoami-v2, /api/agent-harnesses, /healthz

Every lookup goes through `config.source` (a `Source`), every repo through
`config.access.can_read` (a repo you may not read is answered like a missing one).
Every 4xx carries `X-Error-Code`. No Xet signal is ever sent.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response

from ..errors import UnsafePathError
from ..objects import Commit, RepoKey
from ..paths import safe_relpath
from ..store import Store
from . import _api
from ._errors import HubError, error_response
from ._rawpath import Target, parse_path
from ._source import Source
from .config import ServerConfig

__all__ = ["create_app"]

log = logging.getLogger("hubpin.server")

_MAX_FORM_BYTES = 4 * 1024 * 1024
_LISTING_CACHE_SIZE = 16
_TRUE = {"1", "true", "True", "yes"}
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$")


def bearer_token(request: Request) -> str | None:
    """The `Authorization: Bearer <token>` value, or None."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class _Mirror:
    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.source = config.source if config.source is not None else Source(store)
        self._listings: OrderedDict[tuple[RepoKey, str, str, bool], list[tuple[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    # -- entry point ----------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except HubError as e:
            response = e.response()
        except Exception:
            log.exception("internal error on %s %s", request.method, request.scope.get("path"))
            response = error_response(500, "InternalError", "internal server error")
        # huggingface_hub quotes X-Request-Id in its error messages: echo the client's own trace id
        trace = request.headers.get("x-amzn-trace-id")
        if trace and len(trace) <= 128 and trace.isprintable():
            response.headers["X-Request-Id"] = trace
        return response

    async def _dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or quote(request.scope["path"]).encode()
        parsed = parse_path(raw)
        method = request.method
        if isinstance(parsed, str):
            self._allow(method, "GET", "HEAD")
            if parsed == "healthz":
                return JSONResponse({"status": "ok"})
            if parsed == "harnesses":
                return JSONResponse({"standardEnvVars": [], "harnesses": {}})
            me = await run_in_threadpool(self.config.access.whoami, bearer_token(request))
            if me is None:
                raise HubError(401, "Unauthorized", "Invalid user token.")
            return JSONResponse(me)
        if not parsed:
            raise HubError(404, "NotFound", f"no such endpoint: {request.method} {request.scope.get('path')}")
        kind = parsed[0].kind
        if kind == "paths-info":
            self._allow(method, "POST")
            form = await self._form(request)
            if self.source.inline:
                return self._paths_info(request, parsed, form)
            return await run_in_threadpool(self._paths_info, request, parsed, form)
        self._allow(method, "GET", "HEAD")
        handler = {
            "resolve": self._resolve,
            "info": self._info,
            "tree": self._tree,
            "refs": self._refs,
            "commits": self._commits,
        }[kind]
        if self.source.inline:
            return handler(request, parsed)
        return await run_in_threadpool(handler, request, parsed)

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HubError(405, "MethodNotAllowed", f"method {method} not allowed here; use {', '.join(allowed)}",
                           {"Allow": ", ".join(allowed)})

    @staticmethod
    async def _form(request: Request) -> dict[str, list[str]]:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM_BYTES:
                raise HubError(413, "PayloadTooLarge", f"request body over {_MAX_FORM_BYTES} bytes")
        out: dict[str, list[str]] = {}
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(body or b"{}")
            except ValueError as e:
                raise HubError.bad_request("request body is not valid JSON") from e
            if not isinstance(data, dict):
                raise HubError.bad_request("request body must be a JSON object")
            for k, v in data.items():
                out[k] = [str(x) for x in v] if isinstance(v, list) else [str(v)]
            return out
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as e:
            raise HubError.bad_request("form body is not valid UTF-8") from e
        for k, v in pairs:
            out.setdefault(k, []).append(v)
        return out

    # -- shared lookups (worker thread) ---------------------------------------------------
    def _pick(self, request: Request, targets: list[Target], *, lazy: bool = False) -> Target:
        """The first reading of the URL whose repo exists and is readable; else RepoNotFound.

        `lazy`: with one reading, check only access here and leave existence to `_commit`
        (a resolved revision proves the repo exists; saves a directory walk per HEAD).
        """
        token = bearer_token(request)
        if lazy and len(targets) == 1:
            if self.config.access.can_read(token, targets[0].repo):
                return targets[0]
            raise HubError.repo_not_found(targets[0].repo)
        for t in targets:
            if self.source.has_repo(t.repo) and self.config.access.can_read(token, t.repo):
                return t
        raise HubError.repo_not_found(targets[0].repo)

    def _commit(self, repo: RepoKey, revision: str) -> Commit:
        sha = self.source.resolve(repo, revision)
        commit = self.source.get_commit(repo, sha) if sha else None
        if commit is None:
            if not self.source.has_repo(repo):
                raise HubError.repo_not_found(repo)
            raise HubError.revision_not_found(repo, revision)
        return commit

    def _default_revision(self, repo: RepoKey) -> str:
        refs = self.source.list_refs(repo)
        if "main" in refs or not refs:
            return "main"
        branches = [n for n in refs if not n.startswith("refs/")]
        return branches[0] if len(branches) == 1 else "main"

    # -- handlers (worker thread) ---------------------------------------------------------
    def _resolve(self, request: Request, targets: list[Target]) -> Response:
        t = self._pick(request, targets, lazy=True)
        assert t.revision is not None
        commit = self._commit(t.repo, t.revision)
        entry = commit.file(t.path)
        if entry is None:
            raise HubError.entry_not_found(t.repo, commit.sha, t.path)
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.etag}"'
            headers["X-Linked-Size"] = str(entry.size)
        return self.source.file_response(request, t.repo, commit, entry, headers)

    def _info(self, request: Request, targets: list[Target]) -> Response:
        t = self._pick(request, targets, lazy=True)
        if t.revision is None and self.source.resolve(t.repo, "main") is None:
            commit = self._commit(t.repo, self._default_revision(t.repo))  # a cache without refs/main
        else:
            commit = self._commit(t.repo, t.revision or "main")
        blobs = request.query_params.get("blobs", "") in _TRUE
        return JSONResponse(_api.repo_info(t.repo, commit, blobs))

    def _tree(self, request: Request, targets: list[Target]) -> Response:
        t = self._pick(request, targets, lazy=True)
        assert t.revision is not None
        commit = self._commit(t.repo, t.revision)
        q = request.query_params
        recursive = q.get("recursive", "") in _TRUE
        expand = q.get("expand", "") in _TRUE
        entries = self._listing(t.repo, commit, t.path, recursive)
        if entries is None:
            raise HubError(404, "EntryNotFound", f"folder {t.path} not found in {t.repo}@{commit.sha}",
                           {"X-Repo-Commit": commit.sha})
        size = self.config.expand_page_size if expand else self.config.page_size
        start = self._cursor(q.get("cursor"))
        page = entries[start : start + size]
        last = commit if expand else None
        body = [_api.file_entry(e, last) if not isinstance(e, str) else _api.dir_entry(p, e, last) for p, e in page]
        headers = {"X-Repo-Commit": commit.sha}
        if start + size < len(entries):
            headers["Link"] = f'<{self._next_url(request, start + size)}>; rel="next"'
        return JSONResponse(body, headers=headers)

    def _listing(self, repo: RepoKey, commit: Commit, path: str, recursive: bool) -> list[tuple[str, Any]] | None:
        """`_api.list_tree`, kept for the next pages of a paginated listing (complete commits only)."""
        if not commit.complete:
            return _api.list_tree(commit, path, recursive)
        key = (repo, commit.sha, path, recursive)
        with self._lock:
            hit = self._listings.get(key)
            if hit is not None:
                self._listings.move_to_end(key)
                return hit
        entries = _api.list_tree(commit, path, recursive)
        if entries is not None:
            with self._lock:
                self._listings[key] = entries
                while len(self._listings) > _LISTING_CACHE_SIZE:
                    self._listings.popitem(last=False)
        return entries

    def _paths_info(self, request: Request, targets: list[Target], form: dict[str, list[str]]) -> Response:
        t = self._pick(request, targets)
        assert t.revision is not None
        commit = self._commit(t.repo, t.revision)
        expand = (form.get("expand") or [""])[0] in _TRUE
        dirs: dict[str, str] | None = None
        out: list[dict[str, Any]] = []
        for p in form.get("paths", []):
            try:
                path = safe_relpath(p)
            except UnsafePathError as e:
                raise HubError.bad_request(str(e)) from e
            f = commit.file(path)
            if f is not None:
                out.append(_api.file_entry(f, commit if expand else None))
                continue
            if dirs is None:
                dirs = _api.tree_ids(commit)
            if path in dirs:
                out.append(_api.dir_entry(path, dirs[path], commit if expand else None))
            # missing paths are silently omitted, as on the Hub
        return JSONResponse(out, headers={"X-Repo-Commit": commit.sha})

    def _refs(self, request: Request, targets: list[Target]) -> Response:
        t = self._pick(request, targets)
        include_prs = request.query_params.get("include_prs", "") in _TRUE
        return JSONResponse(_api.refs_body(self.source.list_refs(t.repo), include_prs))

    def _commits(self, request: Request, targets: list[Target]) -> Response:
        t = self._pick(request, targets)
        assert t.revision is not None
        commit = self._commit(t.repo, t.revision)
        size = self.config.page_size
        start = self._cursor(request.query_params.get("cursor"))
        history = self.source.history(t.repo, commit.sha, start + size + 1)
        body = [_api.commit_item(c) for c in history[start : start + size]]
        headers = {}
        if len(history) > start + size:
            headers["Link"] = f'<{self._next_url(request, start + size)}>; rel="next"'
        return JSONResponse(body, headers=headers)

    # -- pagination -----------------------------------------------------------------------
    @staticmethod
    def _cursor(value: str | None) -> int:
        if value is None:
            return 0
        if not value.isdigit() or len(value) > 12:
            raise HubError.bad_request(f"invalid cursor {value!r}")
        return int(value)

    @staticmethod
    def _next_url(request: Request, offset: int) -> str:
        """Absolute, on this server, from the request's own host and raw path (never re-decoded).

        Behind a TLS-terminating proxy, `X-Forwarded-Proto`/`-Host` give the address the client
        used. Trusting them is harmless: the link only goes back to the client who sent them.
        """
        url = request.url
        raw = request.scope.get("raw_path") or quote(request.scope["path"]).encode()
        path = raw.split(b"?", 1)[0].decode("latin-1")
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        params.append(("cursor", str(offset)))
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else url.scheme
        fwd_host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
        host = fwd_host if _HOST.match(fwd_host) else url.netloc
        return f"{scheme}://{host}{path}?{urlencode(params)}"


class _AnyMethod:
    """Wraps an ASGI callable in an object, which starlette routes for every HTTP method."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def create_app(store: Store, config: ServerConfig | None = None) -> Starlette:
    """The mirror ASGI app over `store`. See the module docstring and docs/server.md."""
    mirror = _Mirror(store, config or ServerConfig())
    # an ASGI endpoint (not a function) makes the route accept every method: our own 405 has X-Error-Code
    routes = [*mirror.config.routes, Route("/{path:path}", _AnyMethod(request_response(mirror.handle)))]
    app = Starlette(routes=routes, middleware=list(mirror.config.middleware))
    app.state.mirror = mirror
    app.state.source = mirror.source
    app.state.config = mirror.config
    return app
