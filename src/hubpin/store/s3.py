"""The scale-out store: the local store's keys in an S3 bucket, shared by stateless replicas.

    <prefix>/models--org--name/blobs/<etag>
    <prefix>/models--org--name/refs/<name>                40 hex, no newline
    <prefix>/models--org--name/trees/<sha>.json           hub 2.x tree cache, never any xet_hash
    <prefix>/.hubpin/commits/<folder>/<sha>.json          hubpin's record: every file's sha256, parent
    <prefix>/.hubpin/<name>                               other metadata (tokens, ...)

There is no `snapshots/`: it only exists for local readers. Endpoint and credentials come the
boto3 way (`AWS_ENDPOINT_URL[_S3]`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`
or `AWS_DEFAULT_REGION`), read when the store is opened. A custom endpoint (SeaweedFS, MinIO,
Ceph RGW) gets path-style addressing.

Nothing is cached across calls except immutable things (a commit record, a blob's size), so any
number of replicas over one bucket see each other's publishes at once.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..errors import BadInput, RemoteError, UnsafePathError
from ..hashing import CHUNK
from ..objects import Commit, RepoKey
from ..paths import is_commit_sha, safe_relpath, validate_revision
from ._records import commit_from_record, commit_from_tree, record_json, tree_json
from ._s3write import MultipartWriter, SinglePutWriter, is_boto_error
from .base import BlobWriter, Store
from .hfcache import _ETAG, META_DIR, _repo_from_folder

__all__ = ["DEFAULT_MULTIPART_THRESHOLD", "DEFAULT_PART_SIZE", "DEFAULT_UPLOAD_CONCURRENCY", "S3Store"]

#: blobs at least this big are sent as a multipart upload (completed only after verification)
DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: part size of multipart uploads; grown for huge blobs to stay under S3's 10,000 parts
DEFAULT_PART_SIZE = 16 * 1024 * 1024
_MAX_PARTS = 10_000
#: parts uploaded at once per multipart blob (S3 servers write faster in parallel); a writer holds
#: at most (this + 1) × part size in memory
DEFAULT_UPLOAD_CONCURRENCY = 4
_COMMIT_CACHE = 256

T = TypeVar("T")


def _split_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise BadInput(f"invalid S3 store {url!r}: expected s3://bucket[/prefix]")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    if not bucket or "/" in bucket or not all(c.isalnum() or c in "-._" for c in bucket):
        raise BadInput(f"invalid S3 store {url!r}: expected s3://bucket[/prefix] with a bucket name of [a-z0-9.-]")
    if prefix:
        safe_relpath(prefix, what="S3 prefix")
    return bucket, prefix


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or type(exc).__name__


def _is_missing(exc: BaseException) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


class S3Store(Store):
    """Refs, commits and blobs of many repos under `s3://bucket/prefix`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        list_page_size: int = 1000,
        upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.list_page_size = list_page_size
        self.upload_concurrency = max(1, upload_concurrency)
        self.client = client if client is not None else _make_client(endpoint_url)
        self._commits: OrderedDict[tuple[RepoKey, str], Commit] = OrderedDict()
        self._sizes: OrderedDict[tuple[RepoKey, str], int] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Store:
        """`s3://bucket/prefix` → an S3Store; endpoint and credentials from the environment."""
        bucket, prefix = _split_url(url)
        return cls(bucket, prefix, **kwargs)

    # -- keys -----------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join(([self.prefix] if self.prefix else []) + list(parts))

    def blob_key(self, repo: RepoKey, etag: str) -> str:
        if not _ETAG.match(etag):
            raise UnsafePathError(f"invalid blob name {etag!r}: expected 40 or 64 lowercase hex")
        return self._key(repo.folder, "blobs", etag)

    def _ref_key(self, repo: RepoKey, name: str) -> str:
        return self._key(repo.folder, "refs", validate_revision(name))

    def _record_key(self, repo: RepoKey, sha: str) -> str:
        return self._key(META_DIR, "commits", repo.folder, f"{sha}.json")

    def _tree_key(self, repo: RepoKey, sha: str) -> str:
        return self._key(repo.folder, "trees", f"{sha}.json")

    def _meta_key(self, name: str) -> str:
        return self._key(META_DIR, safe_relpath(name, what="metadata name"))

    # -- S3 calls, errors mapped to RemoteError -------------------------------------------
    def _call(self, op: str, key: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except Exception as e:
            if not is_boto_error(e):
                raise
            raise self._remote_error(op, key, e) from e

    def _remote_error(self, op: str, key: str, e: BaseException) -> RemoteError:
        code = _error_code(e)
        where = f"s3://{self.bucket}/{key}"
        hint = "check AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and that the bucket exists"
        if code == "NoSuchBucket":
            hint = f"create the bucket {self.bucket!r} first, or point --store at an existing one"
        return RemoteError(f"{where}: S3 {op} failed, expected success, got {code}: {e}", hint=hint)

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(resp["Body"].read())
        except Exception as e:
            if is_boto_error(e) and _is_missing(e):
                return None
            if is_boto_error(e):
                raise self._remote_error("GetObject", key, e) from e
            raise

    def _put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._call("PutObject", key, self.client.put_object, Key=key, Body=data, ContentType=content_type)

    def _head_size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as e:
            if is_boto_error(e) and _is_missing(e):
                return None
            if is_boto_error(e):
                raise self._remote_error("HeadObject", key, e) from e
            raise

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        """Every page of ListObjectsV2 below `prefix` (pagination followed)."""
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": self.list_page_size}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            page = self._call("ListObjectsV2", prefix, self.client.list_objects_v2, **kwargs)
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _list_keys(self, prefix: str) -> Iterator[str]:
        for page in self._list(prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(prefix) :]

    def _get_json(self, key: str) -> dict | None:  # type: ignore[type-arg]
        raw = self._get_bytes(key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def check(self) -> None:
        """One small LIST: raise RemoteError now (bad endpoint, credentials, bucket), not on first use."""
        base = self._key("") if self.prefix else ""
        self._call("ListObjectsV2", base, self.client.list_objects_v2, Prefix=base, MaxKeys=1)

    # -- repos and refs -------------------------------------------------------------------
    def list_repos(self) -> list[RepoKey]:
        base = self._key("") if self.prefix else ""
        repos: set[RepoKey] = set()
        for page in self._list(base, "/"):
            for p in page.get("CommonPrefixes", []):
                repo = _repo_from_folder(p["Prefix"][len(base) :].rstrip("/"))
                if repo is not None:
                    repos.add(repo)
        return sorted(repos)

    def has_repo(self, repo: RepoKey) -> bool:
        """One LIST of at most one key (the server asks on every request), not a read of every ref."""
        prefixes = (self._key(repo.folder, "refs", ""), self._key(META_DIR, "commits", repo.folder, ""),
                    self._key(repo.folder, "trees", ""))  # fmt: skip
        for prefix in prefixes:
            page = self._call("ListObjectsV2", prefix, self.client.list_objects_v2, Prefix=prefix, MaxKeys=1)
            if page.get("Contents"):
                return True
        return False

    def list_refs(self, repo: RepoKey) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self._list_keys(self._key(repo.folder, "refs", "")):
            try:
                sha = self.get_ref(repo, name)
            except UnsafePathError:
                continue  # a key no hubpin wrote; never let it name a ref
            if sha is not None:
                out[name] = sha
        return dict(sorted(out.items()))

    def get_ref(self, repo: RepoKey, name: str) -> str | None:
        raw = self._get_bytes(self._ref_key(repo, name))
        if raw is None:
            return None
        text = raw.decode("ascii", errors="replace").strip()
        return text if is_commit_sha(text) else None

    def set_ref(self, repo: RepoKey, name: str, sha: str) -> None:
        key = self._ref_key(repo, name)
        if not is_commit_sha(sha):
            raise UnsafePathError(f"invalid commit {sha!r} for ref {name}: expected 40 lowercase hex")
        # one PUT is atomic per object in S3; 40 hex, no newline, as in the HF cache (#4133)
        self._put_bytes(key, sha.encode("ascii"), "text/plain")

    def resolve(self, repo: RepoKey, revision: str) -> str | None:
        """As `Store.resolve`; a full sha of a known commit skips the `refs/<sha>` lookup (one GET less)."""
        if is_commit_sha(revision) and self.get_commit(repo, revision) is not None:
            return revision  # commits are cached once read: pinned HEADs then cost no S3 call
        return super().resolve(repo, revision)

    # -- commits --------------------------------------------------------------------------
    def list_commits(self, repo: RepoKey) -> list[str]:
        found: set[str] = set()
        for prefix in (self._key(META_DIR, "commits", repo.folder, ""), self._key(repo.folder, "trees", "")):
            found.update(k[: -len(".json")] for k in self._list_keys(prefix) if k.endswith(".json"))
        return sorted(s for s in found if is_commit_sha(s))

    def get_commit(self, repo: RepoKey, sha: str) -> Commit | None:
        if not is_commit_sha(sha):
            return None
        with self._lock:
            cached = self._commits.get((repo, sha))
        if cached is not None:
            return cached  # a commit never changes once written
        commit = self._load_commit(repo, sha)
        if commit is not None:
            with self._lock:
                self._commits[(repo, sha)] = commit
                while len(self._commits) > _COMMIT_CACHE:
                    self._commits.popitem(last=False)
        return commit

    def _load_commit(self, repo: RepoKey, sha: str) -> Commit | None:
        record = self._get_json(self._record_key(repo, sha))
        if record is not None:
            return commit_from_record(sha, record)
        tree = self._get_json(self._tree_key(repo, sha))
        return commit_from_tree(sha, tree) if tree is not None else None

    def put_commit(self, repo: RepoKey, commit: Commit) -> None:
        missing = [f for f in commit.files if not self.has_blob(repo, f.etag)]
        if missing:
            f = missing[0]
            raise FileNotFoundError(f"{repo}@{commit.sha}: blob {f.etag} of {f.path} is not in the store")
        if commit.complete:
            self._put_bytes(self._tree_key(repo, commit.sha), tree_json(commit), "application/json")
        # the record goes last: a commit is listed as hubpin's only once everything it needs is there
        self._put_bytes(self._record_key(repo, commit.sha), record_json(commit), "application/json")

    # -- blobs ----------------------------------------------------------------------------
    def has_blob(self, repo: RepoKey, etag: str) -> bool:
        return self.blob_size(repo, etag) is not None

    def blob_size(self, repo: RepoKey, etag: str) -> int | None:
        with self._lock:
            size = self._sizes.get((repo, etag))
        if size is not None:
            return size  # blobs are content-addressed: a present blob never changes
        size = self._head_size(self.blob_key(repo, etag))
        if size is not None:
            with self._lock:
                self._sizes[(repo, etag)] = size
                while len(self._sizes) > 4 * _COMMIT_CACHE:
                    self._sizes.popitem(last=False)
        return size

    def read_blob(self, repo: RepoKey, etag: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes [start, end) with one ranged GET, in chunks of at most 1 MiB."""
        key = self.blob_key(repo, etag)
        if end is not None and end <= start:
            return
        kwargs: dict[str, Any] = {"Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            resp = self.client.get_object(Bucket=self.bucket, **kwargs)
        except Exception as e:
            if not is_boto_error(e):
                raise
            if _is_missing(e):
                raise FileNotFoundError(f"s3://{self.bucket}/{key}: no such blob") from e
            if _error_code(e) == "InvalidRange":
                return  # start at or past the end: nothing to send
            raise self._remote_error("GetObject", key, e) from e
        body = resp["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def blob_writer(self, repo: RepoKey, etag: str, size: int, sha256: str | None) -> BlobWriter:
        key = self.blob_key(repo, etag)
        what = f"{repo}/blobs/{etag}"
        if size >= self.multipart_threshold:
            part = max(self.part_size, math.ceil(size / _MAX_PARTS))
            return MultipartWriter(self, key, part, what, etag, size, sha256)
        return SinglePutWriter(self, key, what, etag, size, sha256)

    def presigned_url(self, repo: RepoKey, etag: str, expires: int = 3600, method: str = "GET") -> str:
        """A time-limited URL of a blob, for answering downloads with a redirect to S3.

        The signature covers the method: a `method="GET"` URL answers GETs only (on AWS S3)."""
        op = {"GET": "get_object", "HEAD": "head_object"}[method]
        params = {"Bucket": self.bucket, "Key": self.blob_key(repo, etag)}
        return str(self.client.generate_presigned_url(op, Params=params, ExpiresIn=expires))

    # -- metadata -------------------------------------------------------------------------
    def read_meta(self, name: str) -> bytes | None:
        return self._get_bytes(self._meta_key(name))

    def write_meta(self, name: str, data: bytes) -> None:
        self._put_bytes(self._meta_key(name), data)


def _make_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client configured from the environment at call time."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        region_name=region,
        signature_version="s3v4",
        # SeaweedFS, MinIO and Ceph RGW answer on one host: the bucket goes in the path
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 4, "mode": "standard"},
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
