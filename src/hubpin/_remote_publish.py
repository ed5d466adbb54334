"""`hubpin publish DIR REPO --to URL`: publish a folder to a running hubpin mirror over HTTP.

The client hashes the folder (size, sha256, git blob id; LFS by the same rules as a local
publish), asks the server which blobs it lacks, uploads only those, then asks for the commit.
The server verifies every blob before it becomes visible (see `server/_upload.py`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ._env import hf_token
from .errors import BadInput, HashMismatchError, RemoteError
from .hashing import CHUNK, hash_files
from .objects import FileEntry, RepoKey
from .paths import validate_revision
from .publish import DEFAULT_LFS_PATTERNS, _gitattributes_lfs_patterns, collect_files, is_lfs

__all__ = ["RemotePublishResult", "publish_http"]


@dataclass(frozen=True)
class RemotePublishResult:
    repo: RepoKey
    revision: str
    commit: str
    parent: str | None
    created: bool
    files: int
    bytes: int
    uploaded: int  # blobs sent (the server lacked them)


def _read(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _check(resp: httpx.Response, what: str, url: str) -> dict[str, Any]:
    if resp.status_code in (401, 403):
        raise BadInput(
            f"{what}: {url} refused the token (HTTP {resp.status_code}: {resp.headers.get('x-error-message', '')})",
            hint="create one with `hubpin token create NAME --write 'org/*'` on the server's store and set HF_TOKEN",
        )
    if resp.status_code == 422:
        raise HashMismatchError(what, expected="the declared size and hashes", actual=resp.headers.get("x-error-message", "?"))
    if resp.status_code >= 400:
        raise RemoteError(f"{what}: {url} answered HTTP {resp.status_code}: {resp.headers.get('x-error-message', '')}")
    data = resp.json()
    return data if isinstance(data, dict) else {}


def publish_http(
    folder: str | os.PathLike[str],
    repo: RepoKey,
    url: str,
    *,
    revision: str = "main",
    message: str | None = None,
    token: str | None = None,
    timeout: float = 60.0,
) -> RemotePublishResult:
    """Publish `folder` as a new commit of `repo` on the hubpin mirror at `url` (token: HF_TOKEN)."""
    root = Path(folder)
    if not root.is_dir():
        raise BadInput(f"{root}: not a folder (expected a folder to publish)")
    validate_revision(revision)
    token = token or hf_token()
    if not token:
        raise BadInput(f"publishing to {url} needs a token with write scope",
                       hint="set HF_TOKEN to a token made with `hubpin token create NAME --write GLOB`")
    if "/" not in repo.id:
        raise BadInput(f"repo id {repo.id!r}: publishing over HTTP needs 'namespace/name'")
    found = collect_files(root)
    if not found:
        raise BadInput(f"{root}: no files to publish")
    patterns = list(DEFAULT_LFS_PATTERNS) + _gitattributes_lfs_patterns(root)
    digests = hash_files([p for _rel, p in found])
    entries = [
        FileEntry(rel, d.size, d.sha256 if is_lfs(rel, d.size, patterns) else d.git_sha1, d.sha256)
        for (rel, _p), d in zip(found, digests, strict=True)
    ]
    files = [{"path": f.path, "size": f.size, "etag": f.etag, "sha256": f.sha256} for f in entries]
    base = f"{url.rstrip('/')}/api/hubpin/upload/{repo.type}s/{repo.id}"
    headers = {"authorization": f"Bearer {token}"}
    try:
        with httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), follow_redirects=False) as client:
            missing = set(_check(client.post(f"{base}/preupload", json={"files": files}), "preupload", url)["missing"])
            sent: set[str] = set()
            for (_rel, path), f in zip(found, entries, strict=True):
                if f.etag not in missing or f.etag in sent:
                    continue
                resp = client.put(f"{base}/blobs/{f.etag}", params={"size": f.size, "sha256": f.sha256},
                                  content=_read(path), headers={"content-length": str(f.size)})
                _check(resp, f"upload of {f.path}", url)
                sent.add(f.etag)
            body = {"revision": revision, "message": message or f"publish {root.name}", "files": files}
            done = _check(client.post(f"{base}/commit", json=body), "commit", url)
    except httpx.HTTPError as e:
        raise RemoteError(f"publishing to {url} failed: {type(e).__name__}: {e}",
                          hint="check that `hubpin serve` runs there; rerun to continue (uploaded blobs are kept)") from e
    return RemotePublishResult(repo, revision, done["commit"], done.get("parent"), bool(done.get("created")),
                               len(entries), sum(f.size for f in entries), len(sent))
