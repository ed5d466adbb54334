"""A client for Hub-compatible endpoints: the real Hub, or a hubpin mirror.

Only metadata and small files go through here (`lock` needs commits, trees and the bytes of
non-LFS files to hash them); bulk downloads reuse `HubClient.http` and `HubClient.file_url`.

- Errors: `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) becomes a
  `NotFoundError` naming the repo, revision or path (exit 2); an unreachable endpoint, a 5xx or
  a malformed answer becomes a `RemoteError` (exit 3) with a hint.
- Retries: 408/429/5xx and connection errors are retried a bounded number of times, waiting
  what `Retry-After` or `RateLimit: ...;t=<s>` asks (capped), else exponential backoff.
- The token (`HF_TOKEN` / the HF token file) is sent as `Authorization: Bearer` only to the
  endpoint's own origin, never logged or put in a message; pagination links to another origin
  are refused.
- Every name in a server answer passes `hubpin.paths` before it is returned.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import httpx

from . import _env
from .errors import ConfigError, HashMismatchError, NotFoundError, RemoteError, UnsafePathError
from .hashing import Digest, Hasher
from .objects import RepoKey
from .paths import is_commit_sha, safe_relpath, validate_revision

__all__ = ["HubClient", "RemoteFile", "USER_AGENT"]

USER_AGENT = "hubpin/0.1"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_RATELIMIT_T = re.compile(r"\bt=(\d+)")
_ENDPOINT_HINT = "is the endpoint reachable? check --endpoint, [settings] endpoint or HF_ENDPOINT"


@dataclass(frozen=True, order=True)
class RemoteFile:
    """One file of a remote commit, from the tree API.

    `oid` is the git blob id (of the content, or of the LFS pointer); `lfs_sha256` is set for
    LFS files. `etag` is then the Hub ETag = HF cache blob name."""

    path: str
    size: int
    oid: str
    lfs_sha256: str | None = None

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.oid


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class _EndpointOnlyAuth(httpx.Auth):
    """Bearer token on requests to the endpoint's origin only (never to a CDN or another host)."""

    def __init__(self, token: str, endpoint: str) -> None:
        self._token = token
        self._origin = _origin(endpoint)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _origin(str(request.url)) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:  # never show the token
        return "<_EndpointOnlyAuth>"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait: `RateLimit: "api";r=0;t=<s>` or `Retry-After`."""
    m = _RATELIMIT_T.search(response.headers.get("RateLimit", ""))
    if m:
        return float(m.group(1)) + 1  # the Hub's own client waits t+1 (hf utils/_http.py)
    value = response.headers.get("Retry-After")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


class HubClient:
    """Metadata client for one Hub-compatible endpoint, over a keep-alive `httpx.Client`.

    `http` is public so bulk downloaders can share its connection pool, headers and auth;
    `file_url()` builds the `/resolve/` URL of a file at a commit.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None | bool = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`endpoint` defaults to `HF_ENDPOINT`, then https://huggingface.co. `token` defaults to
        the one huggingface_hub would use (`HF_TOKEN`, the token file); `False` sends none."""
        self.endpoint = (endpoint or _env.default_endpoint() or _env.DEFAULT_ENDPOINT).rstrip("/")
        if not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint {self.endpoint!r}: expected an http:// or https:// URL")
        if token is None:
            token = _env.hf_token()
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._sleep = sleep
        self.http = httpx.Client(
            auth=_EndpointOnlyAuth(token, self.endpoint) if isinstance(token, str) and token else None,
            headers={"User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            follow_redirects=True,  # httpx drops Authorization on a cross-origin hop, and so does our auth
            transport=transport,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HubClient({self.endpoint!r})"

    # -- URLs ------------------------------------------------------------------------------
    def file_url(self, repo: RepoKey, commit: str, path: str) -> str:
        """`{endpoint}/{prefix}{repo}/resolve/{commit}/{path}` with the Hub's encoding rules."""
        return f"{self.endpoint}/{repo.url_prefix}/resolve/{quote(commit, safe='')}/{quote(safe_relpath(path))}"

    def _api_url(self, repo: RepoKey, *parts: str) -> str:
        return "/".join([self.endpoint, repo.api_prefix, *parts])

    # -- transport with retries and error mapping -------------------------------------------
    def _wait(self, attempt: int, response: httpx.Response | None) -> None:
        asked = _retry_after(response) if response is not None else None
        delay = asked if asked is not None else 0.5 * (2**attempt)
        self._sleep(min(delay, self.max_wait))

    @contextlib.contextmanager
    def _request(
        self, method: str, url: str, what: str, *, stream: bool = False, params: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """Send with retries; yield a 2xx response (streamed if asked) or raise a HubpinError."""
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                request = self.http.build_request(method, url, params=params)
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as e:
                # nothing listening is rarely transient: retry it twice (1.5 s), not the full budget
                budget = min(self.max_retries, 2) if isinstance(e, httpx.ConnectError) else self.max_retries
                if attempt < budget:
                    self._wait(attempt, None)
                    attempt += 1
                    continue
                raise RemoteError(
                    f"{what}: {self.endpoint} unreachable ({type(e).__name__}: {e})", hint=_ENDPOINT_HINT
                ) from None
            except httpx.RequestError as e:  # too many redirects, undecodable body: not worth a retry
                raise RemoteError(f"{what}: {self.endpoint} failed ({type(e).__name__}: {e})",
                                  hint=_ENDPOINT_HINT) from None
            if response.status_code in _RETRY_STATUS and attempt < self.max_retries:
                response.close()
                self._wait(attempt, response)
                attempt += 1
                continue
            try:
                if response.status_code >= 400:
                    self._raise_for_status(response, what)
                yield response
            finally:
                response.close()
            return

    def _raise_for_status(self, response: httpx.Response, what: str) -> None:
        code = response.headers.get("X-Error-Code", "")
        status = response.status_code
        if code in ("RepoNotFound", "GatedRepo"):
            raise NotFoundError(
                f"{what}: repo not found at {self.endpoint} ({status} {code})",
                hint="check the repo id (and --dataset for datasets) and that your token (HF_TOKEN) may read it",
            )
        if code == "RevisionNotFound":
            raise NotFoundError(f"{what}: revision not found at {self.endpoint} ({status} {code})",
                                hint="check the branch, tag or commit in your config")
        if code == "EntryNotFound":
            raise NotFoundError(f"{what}: file not found at {self.endpoint} ({status} {code})")
        if status in (401, 403):
            raise RemoteError(f"{what}: {self.endpoint} refused access ({status})",
                              hint="set HF_TOKEN to a token that may read this repo")
        if status == 404:
            raise NotFoundError(f"{what}: not found at {self.endpoint} (404 without X-Error-Code)",
                                hint="is this a Hub-compatible endpoint? check --endpoint / HF_ENDPOINT")
        raise RemoteError(f"{what}: {self.endpoint} answered {status}", hint=_ENDPOINT_HINT)

    def _get_json(self, url: str, what: str, params: dict[str, str] | None = None) -> tuple[Any, httpx.Response]:
        with self._request("GET", url, what, params=params) as r:
            try:
                return r.json(), r
            except ValueError:
                ctype = r.headers.get("Content-Type", "?")
                raise RemoteError(f"{what}: {self.endpoint} answered {r.status_code} with non-JSON ({ctype})",
                                  hint=_ENDPOINT_HINT) from None

    # -- API -------------------------------------------------------------------------------
    def resolve(self, repo: RepoKey, revision: str) -> str:
        """The 40-hex commit that `revision` (branch, tag or sha) points to now."""
        validate_revision(revision)
        what = f"{repo}@{revision}"
        body, _ = self._get_json(self._api_url(repo, "revision", quote(revision, safe="")), what)
        sha = body.get("sha") if isinstance(body, dict) else None
        if not isinstance(sha, str) or not is_commit_sha(sha):
            raise RemoteError(f"{what}: expected a 40-hex 'sha' in the repo info, got {sha!r}", hint=_ENDPOINT_HINT)
        if is_commit_sha(revision) and sha != revision:
            raise RemoteError(f"{what}: asked for commit {revision}, the endpoint answered {sha}")
        return sha

    def list_refs(self, repo: RepoKey) -> dict[str, str]:
        """Branches and tags: `{"main": sha, "v1.0": sha, ...}` (tags as their plain names)."""
        body, _ = self._get_json(self._api_url(repo, "refs"), f"{repo} refs")
        refs: dict[str, str] = {}
        if not isinstance(body, dict):
            raise RemoteError(f"{repo} refs: expected a JSON object, got {type(body).__name__}")
        for kind in ("branches", "tags", "converts"):
            for item in body.get(kind) or []:
                name, sha = (item or {}).get("name"), (item or {}).get("targetCommit")
                if not isinstance(sha, str) or not is_commit_sha(sha):
                    raise RemoteError(f"{repo} refs: {kind} {name!r} has a malformed commit {sha!r}")
                try:
                    refs[validate_revision(name)] = sha
                except UnsafePathError as e:
                    raise UnsafePathError(f"{repo} refs: the endpoint listed {e.message}") from None
        return refs

    def list_files(self, repo: RepoKey, commit: str) -> list[RemoteFile]:
        """Every file of `commit` (recursive tree API, following absolute `Link: rel="next"` pages)."""
        if not is_commit_sha(commit):
            raise ValueError(f"list_files needs a 40-hex commit, got {commit!r}")
        what = f"{repo}@{commit[:12]}"
        url: str | None = self._api_url(repo, "tree", commit)
        params: dict[str, str] | None = {"recursive": "true", "expand": "false"}
        files: dict[str, RemoteFile] = {}
        pages = 0
        while url:
            body, response = self._get_json(url, f"{what} tree", params)
            if not isinstance(body, list):
                raise RemoteError(f"{what} tree: expected a JSON array, got {type(body).__name__}", hint=_ENDPOINT_HINT)
            for item in body:
                f = self._parse_entry(item, what)
                if f is None:
                    continue
                if f.path in files:
                    raise RemoteError(f"{what} tree: {f.path} listed twice")
                files[f.path] = f
            pages += 1
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries its own query
            if url and _origin(url) != _origin(self.endpoint):
                # the token would follow the link; a Hub-compatible server paginates on itself
                raise RemoteError(f"{what} tree: next page on another origin ({url!r}), refused",
                                  hint="the endpoint must paginate with absolute links to itself")
            if pages > 100_000:
                raise RemoteError(f"{what} tree: more than 100000 pages; the endpoint is looping")
        return sorted(files.values())

    @staticmethod
    def _parse_entry(item: Any, what: str) -> RemoteFile | None:
        if not isinstance(item, dict):
            raise RemoteError(f"{what} tree: expected objects, got {item!r}")
        if item.get("type") == "directory":
            return None
        try:
            path = safe_relpath(item.get("path"))
        except UnsafePathError as e:
            raise UnsafePathError(f"{what} tree: the endpoint listed an {e.message}") from None
        size, oid, lfs = item.get("size"), item.get("oid"), item.get("lfs")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RemoteError(f"{what} tree: {path}: size expected a non-negative integer, got {size!r}")
        if not isinstance(oid, str) or not _HEX40.match(oid):
            raise RemoteError(f"{what} tree: {path}: oid expected 40 lowercase hex, got {oid!r}")
        sha256 = None
        if lfs is not None:
            sha256 = lfs.get("oid") if isinstance(lfs, dict) else None
            if not isinstance(sha256, str) or not _HEX64.match(sha256):
                raise RemoteError(f"{what} tree: {path}: lfs.oid expected 64 lowercase hex, got {sha256!r}")
            lfs_size = lfs.get("size", size)
            if lfs_size != size:
                raise RemoteError(f"{what} tree: {path}: size {size} but lfs.size {lfs_size!r}")
        return RemoteFile(path, size, oid, sha256)

    @contextlib.contextmanager
    def open_file(self, repo: RepoKey, commit: str, path: str) -> Iterator[httpx.Response]:
        """Stream `/resolve/<commit>/<path>`; checks the endpoint answered for that commit."""
        what = f"{repo}@{commit[:12]}: {path}"
        with self._request("GET", self.file_url(repo, commit, path), what, stream=True) as r:
            served = r.headers.get("X-Repo-Commit")
            if served is not None and served != commit:
                raise RemoteError(f"{what}: asked for commit {commit}, the endpoint served {served}")
            yield r

    def hash_file(self, repo: RepoKey, commit: str, f: RemoteFile, *, sink: BinaryIO | None = None) -> Digest:
        """Download one file and hash it; size and git blob id (non-LFS) or sha256 (LFS) must match.

        The bytes also go to `sink` when given (only trust them if this returns). A connection
        that breaks mid-body is retried from the start (bounded, like any request)."""
        what = f"{repo}@{commit[:12]}: {f.path}"
        attempt = 0
        while True:
            h = Hasher(f.size)
            if sink is not None:
                sink.seek(0)
                sink.truncate()
            try:
                with self.open_file(repo, commit, f.path) as r:
                    for chunk in r.iter_bytes(1 << 20):
                        h.update(chunk)
                        if sink is not None:
                            sink.write(chunk)
                        if h.size > f.size:  # endless data: stop at the declared length
                            break
                break
            except httpx.TransportError as e:
                if attempt >= self.max_retries:
                    raise RemoteError(f"{what}: download from {self.endpoint} broke off after {h.size} bytes "
                                      f"({type(e).__name__})", hint=_ENDPOINT_HINT) from None
                self._wait(attempt, None)
                attempt += 1
            except httpx.RequestError as e:
                raise RemoteError(f"{what}: download from {self.endpoint} failed ({type(e).__name__}: {e})",
                                  hint=_ENDPOINT_HINT) from None
        if h.size != f.size:
            got = f"more than {f.size} bytes" if h.size > f.size else f"{h.size} bytes"
            raise HashMismatchError(f"{what} size", expected=f"{f.size} bytes", actual=got, hint=_ENDPOINT_HINT)
        digest = h.digest()
        if f.lfs_sha256 is not None:
            if digest.sha256 != f.lfs_sha256:
                raise HashMismatchError(f"{what} sha256", expected=f.lfs_sha256, actual=digest.sha256)
        elif digest.git_sha1 != f.oid:
            raise HashMismatchError(f"{what} git blob id", expected=f.oid, actual=digest.git_sha1,
                                    hint="the endpoint served bytes that differ from its own tree listing")
        return digest
