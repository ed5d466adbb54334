"""Pull-through and lock-pinned serving: `hubpin serve --upstream URL --allow G… [--lock F]`.

`MirrorSource` is the app's `Source` (see `_source.py`) with three additions:

* **Pull-through.** A miss on an allowed repo is answered from the upstream (the Hub or another
  hubpin): branch → commit and file lists via `/api/{type}s/{repo}/revision/{rev}?blobs=true`,
  bytes via `/resolve/<commit>/<path>`. Each blob is fetched once however many clients ask
  (`_fetch.SingleFlight`), streamed to them as it arrives, hashed on the way and published to
  the store only after size and hash match; on a mismatch every client's body is cut short
  (their own size check fails) and nothing is stored. When every blob of a commit is stored,
  the commit and its refs are recorded, so the store serves it with the upstream gone.
* **Policy.** `--allow` globs select what may be fetched; `--deny` globs hide repos entirely,
  stored or not. Globs match `org/name` / `datasets/org/name` (as for tokens).
* **`--lock F`.** Only the commits pinned in a lockfile exist: the declared revision and the
  commit id (full or short) resolve to the locked commit; anything else is not found.

Branch answers are cached for `ref_ttl` seconds. An upstream 429 is honoured: its Retry-After
(or `RateLimit: …;t=N`) blocks further upstream calls until then, and short waits are slept
out. With the upstream down or rate-limited, whatever the store holds is served.
The upstream token is sent only to the upstream's own origin, never the client's token.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import HashMismatchError
from ..lockfile import Lockfile
from ..objects import Commit, FileEntry, RepoKey
from ..paths import is_commit_sha
from ..store import Store
from ..tokens import glob_matches
from . import _metrics as metrics
from ._errors import HubError
from ._fetch import BlobFetch, FetchFailed, SingleFlight
from ._source import Source, parse_range

__all__ = ["MirrorSource", "Upstream", "UpstreamUnavailable"]

log = logging.getLogger("hubpin.proxy")
_SHORT = re.compile(r"^[0-9a-f]{5,40}$")


class UpstreamUnavailable(Exception):
    """The upstream could not answer now (network, 5xx, rate limit): fall back to the store."""


class _OriginAuth(httpx.Auth):
    """Adds the upstream token only to requests for the upstream's own origin (not redirects to a CDN)."""

    def __init__(self, origin: httpx.URL, token: str | None) -> None:
        self.origin = (origin.scheme, origin.host, origin.port)
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers.pop("authorization", None)
        if self.token and (request.url.scheme, request.url.host, request.url.port) == self.origin:
            request.headers["authorization"] = f"Bearer {self.token}"
        yield request


def _retry_after(resp: httpx.Response) -> float:
    value = resp.headers.get("retry-after", "")
    if value.strip().isdigit():
        return float(value)
    m = re.search(r"\bt=(\d+)", resp.headers.get("ratelimit", ""))
    return float(m.group(1)) if m else 1.0


class Upstream:
    """A small client for a Hub-compatible upstream (the Hub, or another hubpin)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0,
                 max_wait: float = 3.0) -> None:
        self.url = url.rstrip("/")
        origin = httpx.URL(self.url)
        self.max_wait = max_wait
        self._blocked_until = 0.0
        self.client = httpx.Client(
            base_url=self.url,
            auth=_OriginAuth(origin, token),
            follow_redirects=True,
            timeout=httpx.Timeout(timeout, read=max(timeout, 30.0)),
            headers={"user-agent": "hubpin-proxy", "accept-encoding": "identity"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        for _attempt in range(2):  # a 429 with a short Retry-After is waited out once
            wait = self._blocked_until - time.monotonic()
            if wait > 0:
                if wait > self.max_wait:
                    raise UpstreamUnavailable(f"rate limited by {self.url} for {wait:.0f} more s")
                time.sleep(wait)
            try:
                req = self.client.build_request(method, path, **kw)
                resp = self.client.send(req, stream=stream)
            except httpx.HTTPError as e:
                raise UpstreamUnavailable(f"{self.url}: {type(e).__name__}: {e}") from e
            if resp.status_code == 429:
                self._blocked_until = time.monotonic() + _retry_after(resp)
                resp.close()
                continue
            if resp.status_code >= 500:
                resp.close()
                raise UpstreamUnavailable(f"{self.url}{path}: HTTP {resp.status_code}")
            return resp
        raise UpstreamUnavailable(f"rate limited by {self.url}")

    def repo_info(self, repo: RepoKey, revision: str | None) -> dict[str, Any] | None:
        """Repo info with file metadata; None when the upstream says the repo or revision is missing."""
        path = f"/api/{repo.type}s/{repo.id}"
        if revision is not None:
            path += f"/revision/{quote(revision, safe='')}"
        resp = self._send("GET", path, params={"blobs": "true"})
        if resp.status_code in (401, 403, 404):
            return None
        if resp.status_code != 200:
            raise UpstreamUnavailable(f"{self.url}{path}: HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError as e:
            raise UpstreamUnavailable(f"{self.url}{path}: not JSON") from e
        return data if isinstance(data, dict) else None

    def refs(self, repo: RepoKey) -> dict[str, str] | None:
        resp = self._send("GET", f"/api/{repo.type}s/{repo.id}/refs")
        if resp.status_code != 200:
            return None
        data = resp.json()
        out: dict[str, str] = {}
        for group in ("branches", "tags", "converts"):
            for r in data.get(group, []):
                name, sha = r.get("name"), r.get("targetCommit")
                if isinstance(name, str) and isinstance(sha, str) and is_commit_sha(sha):
                    out[name if group != "converts" else f"refs/convert/{name}"] = sha
        return out

    @contextmanager
    def blob(self, repo: RepoKey, sha: str, entry: FileEntry) -> Iterator[Iterator[bytes]]:
        """The upstream body of one file of commit `sha`, as chunks."""
        path = f"/{repo.url_prefix}/resolve/{sha}/{quote(entry.path)}"
        resp = self._send("GET", path, stream=True)
        try:
            if resp.status_code != 200:
                raise UpstreamUnavailable(f"{self.url}{path}: HTTP {resp.status_code}")
            got = resp.headers.get("x-repo-commit")
            if got is not None and got != sha:
                raise UpstreamUnavailable(f"{self.url}{path}: X-Repo-Commit {got}, expected {sha}")
            yield resp.iter_raw()  # as received (64 KiB reads): re-chunking would only copy
        finally:
            resp.close()


def commit_from_info(repo: RepoKey, info: dict[str, Any]) -> Commit:
    """A Commit from `/api/…?blobs=true`; every name and hash is validated (upstream is untrusted)."""
    sha = info.get("sha")
    if not isinstance(sha, str) or not is_commit_sha(sha):
        raise UpstreamUnavailable(f"{repo}: upstream sent no valid commit sha ({sha!r})")
    files = []
    for s in info.get("siblings") or []:
        try:
            lfs = s.get("lfs") or None
            if lfs:
                files.append(FileEntry(s["rfilename"], int(lfs["size"]), lfs["sha256"], lfs["sha256"]))
            else:
                files.append(FileEntry(s["rfilename"], int(s["size"]), s["blobId"], None))
        except (KeyError, TypeError, ValueError) as e:
            raise UpstreamUnavailable(f"{repo}@{sha}: unusable file entry from upstream: {e}") from e
    return Commit(sha=sha, files=tuple(files))


class MirrorSource(Source):
    """A `Source` that pulls through from an upstream, filters by policy, or pins to a lock."""

    def __init__(
        self,
        store: Store,
        *,
        upstream: Upstream | None = None,
        allow: Iterable[str] = ("*",),
        deny: Iterable[str] = (),
        lock: Lockfile | None = None,
        ref_ttl: float = 60.0,
        spool_dir: Path | None = None,
        redirect_expires: int | None = None,
    ) -> None:
        super().__init__(store, redirect_expires=redirect_expires)
        self.upstream = upstream
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        self.lock = lock
        self.ref_ttl = ref_ttl
        root = getattr(store, "root", None)
        if spool_dir is None:
            # a store without a folder (S3): a private temp folder per process, never a shared fixed path
            spool_dir = Path(root) / ".hubpin" / "spool" if root is not None else Path(tempfile.mkdtemp(prefix="hubpin-spool-"))
        self.flights = SingleFlight(spool_dir)
        self._mlock = threading.Lock()
        self._remote: dict[tuple[RepoKey, str], Commit] = {}  # fetched from upstream, not yet stored
        self._ref_cache: dict[tuple[RepoKey, str], tuple[str, float]] = {}
        self._refs_of: dict[tuple[RepoKey, str], set[str]] = {}  # commit → ref names to record
        self._exists: dict[RepoKey, tuple[bool, float]] = {}

    # -- policy ---------------------------------------------------------------------------
    def hidden(self, repo: RepoKey) -> bool:
        return glob_matches(self.deny, repo) or (self.lock is not None and self.lock.get(repo) is None)

    def fetchable(self, repo: RepoKey) -> bool:
        return self.upstream is not None and glob_matches(self.allow, repo) and not glob_matches(self.deny, repo)

    # -- lookups --------------------------------------------------------------------------
    def has_repo(self, repo: RepoKey) -> bool:
        if self.hidden(repo):
            return False
        if self.lock is not None or super().has_repo(repo):
            return True
        if not self.fetchable(repo):
            return False
        now = time.monotonic()
        known = self._exists.get(repo)
        if known is not None and known[1] > now:
            return known[0]
        try:
            info = self.upstream.repo_info(repo, None)  # type: ignore[union-attr]
        except UpstreamUnavailable as e:
            log.warning("upstream unavailable for %s: %s", repo, e)
            return False
        exists = info is not None
        if info is not None:
            self._remember(repo, commit_from_info(repo, info), "main")
        self._exists[repo] = (exists, now + self.ref_ttl)
        return exists

    def resolve(self, repo: RepoKey, revision: str) -> str | None:
        if self.hidden(repo):
            return None
        if self.lock is not None:
            locked = self.lock.get(repo)
            assert locked is not None
            if revision == locked.revision or (_SHORT.match(revision) and locked.commit.startswith(revision)):
                return locked.commit
            return None
        if is_commit_sha(revision):
            return revision if self.get_commit(repo, revision) is not None else None
        if self.fetchable(repo):
            now = time.monotonic()
            cached = self._ref_cache.get((repo, revision))
            if cached is not None and cached[1] > now:
                return cached[0]
            try:
                info = self.upstream.repo_info(repo, revision)  # type: ignore[union-attr]
            except UpstreamUnavailable as e:
                log.warning("upstream unavailable for %s@%s, serving the store: %s", repo, revision, e)
                return super().resolve(repo, revision) or (cached[0] if cached else None)
            if info is not None:
                commit = commit_from_info(repo, info)
                self._remember(repo, commit, revision)
                return commit.sha
        return super().resolve(repo, revision)

    def get_commit(self, repo: RepoKey, sha: str) -> Commit | None:
        if self.hidden(repo):
            return None
        if self.lock is not None:
            locked = self.lock.get(repo)
            return locked.as_commit() if locked is not None and locked.commit == sha else None
        stored = super().get_commit(repo, sha)
        if stored is not None and stored.complete:
            return stored
        with self._mlock:
            remote = self._remote.get((repo, sha))
        if remote is not None:
            return remote
        if self.fetchable(repo):
            try:
                info = self.upstream.repo_info(repo, sha)  # type: ignore[union-attr]
            except UpstreamUnavailable as e:
                log.warning("upstream unavailable for %s@%s: %s", repo, sha, e)
                return stored
            if info is not None:
                commit = commit_from_info(repo, info)
                if commit.sha == sha:
                    self._remember(repo, commit, None)
                    return commit
        return stored

    def list_refs(self, repo: RepoKey) -> dict[str, str]:
        if self.hidden(repo):
            return {}
        if self.lock is not None:
            locked = self.lock.get(repo)
            assert locked is not None
            return {} if is_commit_sha(locked.revision) else {locked.revision: locked.commit}
        if self.fetchable(repo):
            try:
                refs = self.upstream.refs(repo)  # type: ignore[union-attr]
            except UpstreamUnavailable:
                refs = None
            if refs is not None:
                return refs
        return super().list_refs(repo)

    def _remember(self, repo: RepoKey, commit: Commit, revision: str | None) -> None:
        with self._mlock:
            self._remote[(repo, commit.sha)] = commit
            if revision is not None:
                self._ref_cache[(repo, revision)] = (commit.sha, time.monotonic() + self.ref_ttl)
                self._refs_of.setdefault((repo, commit.sha), set()).add(revision)
        self._record_if_complete(repo, commit)

    def _record_if_complete(self, repo: RepoKey, commit: Commit) -> None:
        """Once every blob is stored: record the commit and move the refs that pointed at it."""
        if not all(self.store.has_blob(repo, f.etag) for f in commit.files):
            return
        try:
            stored = self.store.get_commit(repo, commit.sha)
            if stored is None or not stored.complete:
                self.store.put_commit(repo, commit)
            with self._mlock:
                names = sorted(self._refs_of.pop((repo, commit.sha), set()))
                self._remote.pop((repo, commit.sha), None)
            for name in names:
                self.store.set_ref(repo, name, commit.sha)
        except Exception:
            log.exception("could not record %s@%s in the store", repo, commit.sha)

    # -- bytes ----------------------------------------------------------------------------
    def file_response(
        self, request: Request, repo: RepoKey, commit: Commit, entry: FileEntry, headers: dict[str, str]
    ) -> Response:
        if self.store.has_blob(repo, entry.etag):
            metrics.STORE_LOOKUPS.labels("hit").inc()
            return super().file_response(request, repo, commit, entry, headers)
        if self.local_path(repo, commit, entry) is not None:  # a symlink-free HF cache
            metrics.STORE_LOOKUPS.labels("hit").inc()
            return super().file_response(request, repo, commit, entry, headers)
        metrics.STORE_LOOKUPS.labels("miss").inc()
        if not self.fetchable(repo):
            raise HubError(503, "Unavailable", f"{repo}@{commit.sha}: {entry.path} is not in the store "
                           "and no upstream may provide it", {"Retry-After": "60"})
        ranges = parse_range(request.headers.get("range"), entry.size)
        start, end, status = 0, entry.size, 200
        headers = {**headers, "Content-Length": str(entry.size)}
        if ranges is not None and len(ranges) == 1:
            start, end = ranges[0]
            status = 206
            headers.update({"Content-Range": f"bytes {start}-{end - 1}/{entry.size}",
                            "Content-Length": str(end - start)})
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type="application/octet-stream")
        fetch, _ = self.flights.join(repo, entry, lambda f: self._start(f, commit))
        return StreamingResponse(self._relay(fetch, start, end), status_code=status, headers=headers,
                                 media_type="application/octet-stream")

    @staticmethod
    async def _relay(fetch: BlobFetch, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in fetch.aiter_range(start, end):
                yield chunk
        except FetchFailed as e:
            # raising mid-body makes the server drop the connection: the client sees a short body
            log.warning("cutting %s/%s short: %s", fetch.repo, fetch.entry.path, e)
            raise

    def _start(self, fetch: BlobFetch, commit: Commit) -> None:
        threading.Thread(target=self._lead, args=(fetch, commit), name=f"hubpin-fetch-{fetch.entry.etag[:12]}",
                         daemon=True).start()

    def _lead(self, fetch: BlobFetch, commit: Commit) -> None:
        repo, entry = fetch.repo, fetch.entry
        assert self.upstream is not None

        def chunks() -> Iterator[bytes]:
            with self.upstream.blob(repo, commit.sha, entry) as body:  # type: ignore[union-attr]
                yield from body

        err = fetch.run(self.store, chunks(), on_finish=lambda: self.flights.finish(fetch),
                        on_published=lambda: self._stored(repo, commit, entry))
        if err is None:
            metrics.UPSTREAM_FETCHES.labels("ok").inc()
            return
        metrics.UPSTREAM_FETCHES.labels("failed").inc()
        if isinstance(err, HashMismatchError):
            metrics.HASH_FAILURES.inc()
        log.warning("upstream fetch of %s@%s/%s failed, nothing stored: %s", repo, commit.sha, entry.path, err)

    def _stored(self, repo: RepoKey, commit: Commit, entry: FileEntry) -> None:
        link = getattr(self.store, "link_snapshot", None)
        try:
            if link is not None:  # a local store: the file is usable offline right away
                link(repo, commit, [entry])
        except Exception:
            log.exception("could not link %s@%s/%s", repo, commit.sha, entry.path)
        self._record_if_complete(repo, commit)
