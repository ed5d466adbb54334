"""Stores of refs, commits and blobs: an HF cache directory, or an S3 bucket."""

from __future__ import annotations

from pathlib import Path

from .base import BlobWriter, Store
from .hfcache import LocalStore

__all__ = ["BlobWriter", "LocalStore", "Store", "open_store"]


def open_store(spec: str | Path | None = None) -> Store:
    """`s3://bucket/prefix` → S3Store; a folder → LocalStore; None → the default HF cache."""
    if spec is None:
        from .._env import default_cache_dir

        return LocalStore(default_cache_dir())
    text = str(spec)
    if text.startswith("s3://"):
        from .s3 import S3Store  # boto3 is imported only when needed

        return S3Store.from_url(text)
    return LocalStore(text)
