"""Publishing over HTTP: the server side of `hubpin publish DIR REPO --to URL`.

Three calls, each needing `Authorization: Bearer <token>` whose `--write` globs match the repo:

    POST /api/hubpin/upload/{models|datasets}/{repo}/preupload
         {"files": [{"path", "size", "etag", "sha256"}, …]}  →  {"missing": ["<etag>", …]}
    PUT  /api/hubpin/upload/{models|datasets}/{repo}/blobs/{etag}?size=N&sha256=H   (raw bytes)
         → 201 {"etag"} once size, sha256 and etag matched (through `BlobWriter`); 422 otherwise
    POST /api/hubpin/upload/{models|datasets}/{repo}/commit
         {"revision", "message", "files": [...]}  →  {"commit", "parent", "created"}

A blob is visible only after it is verified; a commit is recorded only when every blob it lists
is in the store, and its id is `commit_id(files, parent)` like a local `hubpin publish`.
A caller without write access gets 401 (no or bad token) or 403, whether the repo exists or not.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import HashMismatchError, UnsafePathError
from ..objects import Commit, FileEntry, RepoKey, commit_id
from ..paths import validate_revision
from ..store import Store
from ._errors import HubError, error_response
from .auth import TokenAccess

__all__ = ["upload_routes"]

_MAX_JSON = 64 * 1024 * 1024
_TYPES = {"models": "model", "datasets": "dataset"}


def _repo(request: Request) -> RepoKey:
    kind = request.path_params["kind"]
    if kind not in _TYPES:
        raise HubError(404, "NotFound", f"unknown repo type {kind!r}: expected models or datasets")
    try:
        return RepoKey(_TYPES[kind], f"{request.path_params['org']}/{request.path_params['name']}")  # type: ignore[arg-type]
    except UnsafePathError as e:
        raise HubError.bad_request(str(e)) from e


def _token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _check_write(access: TokenAccess, request: Request, repo: RepoKey) -> None:
    token = _token(request)
    if token is None or access.record(token) is None:
        raise HubError(401, "Unauthorized", "publishing needs a valid hubpin token with write scope (HF_TOKEN)")
    if not access.can_write(token, repo):
        raise HubError(403, "Forbidden", f"this token may not write to {repo}")


async def _json(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_JSON:
            raise HubError(413, "PayloadTooLarge", f"request body over {_MAX_JSON} bytes")
    try:
        data = json.loads(body)
    except ValueError as e:
        raise HubError.bad_request("request body is not valid JSON") from e
    if not isinstance(data, dict):
        raise HubError.bad_request("request body must be a JSON object")
    return data


def _entries(data: dict[str, Any]) -> list[FileEntry]:
    raw = data.get("files")
    if not isinstance(raw, list) or not raw:
        raise HubError.bad_request("expected a non-empty 'files' list")
    try:
        entries = [FileEntry(f["path"], f["size"], f["etag"], f["sha256"]) for f in raw]
    except (KeyError, TypeError, ValueError, UnsafePathError) as e:
        raise HubError.bad_request(f"bad file entry: {e}") from e
    if any(f.sha256 is None for f in entries):
        raise HubError.bad_request("every file needs its sha256")
    if len({f.path for f in entries}) != len(entries):
        raise HubError.bad_request("a path is listed twice")
    return entries


def upload_routes(store: Store, access: TokenAccess) -> list[Route]:
    """The starlette routes of the upload protocol (mount them before the Hub routes)."""

    async def guarded(request: Request, handler: Any) -> Response:
        try:
            repo = _repo(request)
            _check_write(access, request, repo)
            return await handler(request, repo)  # type: ignore[no-any-return]
        except HubError as e:
            return e.response()

    async def preupload(request: Request) -> Response:
        async def run(request: Request, repo: RepoKey) -> Response:
            entries = _entries(await _json(request))
            missing = await run_in_threadpool(lambda: sorted({f.etag for f in entries if not store.has_blob(repo, f.etag)}))
            return JSONResponse({"missing": missing})

        return await guarded(request, run)

    async def put_blob(request: Request) -> Response:
        async def run(request: Request, repo: RepoKey) -> Response:
            etag = request.path_params["etag"]
            q = request.query_params
            try:
                entry = FileEntry("blob", int(q.get("size", "-1")), etag, q.get("sha256"))
            except (ValueError, TypeError) as e:
                raise HubError.bad_request(f"bad blob parameters: {e}") from e
            if entry.sha256 is None:
                raise HubError.bad_request("sha256 query parameter is required")
            if store.has_blob(repo, etag):
                async for _ in request.stream():  # drain; the blob is already there
                    pass
                return JSONResponse({"etag": etag, "stored": False})
            writer = await run_in_threadpool(store.blob_writer, repo, etag, entry.size, entry.sha256)
            try:
                with writer:
                    async for chunk in request.stream():
                        writer.write(chunk)
            except HashMismatchError as e:
                return error_response(422, "HashMismatch", str(e))
            return JSONResponse({"etag": etag, "stored": True}, status_code=201)

        return await guarded(request, run)

    async def commit(request: Request) -> Response:
        async def run(request: Request, repo: RepoKey) -> Response:
            data = await _json(request)
            entries = _entries(data)
            revision = data.get("revision", "main")
            try:
                validate_revision(revision)
            except UnsafePathError as e:
                raise HubError.bad_request(str(e)) from e
            message = str(data.get("message") or "publish over HTTP")[:1000]
            return JSONResponse(await run_in_threadpool(_record, store, repo, revision, message, entries))

        return await guarded(request, run)

    base = "/api/hubpin/upload/{kind}/{org}/{name}"
    return [
        Route(base + "/preupload", preupload, methods=["POST"]),
        Route(base + "/blobs/{etag}", put_blob, methods=["PUT"]),
        Route(base + "/commit", commit, methods=["POST"]),
    ]


def _record(store: Store, repo: RepoKey, revision: str, message: str, entries: list[FileEntry]) -> dict[str, Any]:
    missing = sorted({f.path for f in entries if not store.has_blob(repo, f.etag)})
    if missing:
        raise HubError(409, "MissingBlobs", f"{len(missing)} blob(s) not uploaded yet, e.g. {missing[0]}")
    parent = store.get_ref(repo, revision)
    if parent is not None:
        prev = store.get_commit(repo, parent)
        if prev is not None and [(f.path, f.size, f.etag) for f in prev.files] == [
            (f.path, f.size, f.etag) for f in sorted(entries)
        ]:
            return {"commit": parent, "parent": prev.parent, "created": False}
    sha = commit_id(entries, parent)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.put_commit(repo, Commit(sha=sha, files=tuple(entries), parent=parent, created=created, message=message))
    store.set_ref(repo, revision, sha)
    return {"commit": sha, "parent": parent, "created": True}
