"""The two JSON files a store keeps per commit, shared by every store implementation.

- hubpin's commit record (`.hubpin/commits/<folder>/<sha>.json`): every file with size, etag
  and sha256, plus parent, date and message.
- huggingface_hub's tree cache (`trees/<sha>.json`, format_version 1, no `xet_hash`): what the
  HF cache itself knows of a commit (sha256 of regular files is not in it).

Deterministic bytes: sorted keys, one-space indent, UTF-8, a final newline.
"""

from __future__ import annotations

import json
from typing import Any

from ..objects import Commit, FileEntry

__all__ = ["commit_from_record", "commit_from_tree", "dump_json", "record_json", "tree_json"]


def dump_json(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def record_json(commit: Commit) -> bytes:
    return dump_json({
        "format": 1,
        "commit": commit.sha,
        "parent": commit.parent,
        "created": commit.created,
        "message": commit.message,
        "files": [{"path": f.path, "size": f.size, "etag": f.etag, "sha256": f.sha256} for f in commit.files],
    })


def tree_json(commit: Commit) -> bytes:
    files: dict[str, dict[str, object]] = {}
    for f in commit.files:
        meta: dict[str, object] = {"size": f.size, "blob_id": f.git_oid}
        if f.lfs:
            meta.update(lfs_sha256=f.etag, lfs_size=f.size)
        files[f.path] = meta
    return dump_json({"format_version": 1, "files": files})


def commit_from_record(sha: str, record: dict[str, Any]) -> Commit:
    return Commit(
        sha=sha,
        files=tuple(FileEntry(f["path"], f["size"], f["etag"], f.get("sha256")) for f in record["files"]),
        parent=record.get("parent"),
        created=record.get("created", ""),
        message=record.get("message", ""),
    )


def commit_from_tree(sha: str, tree: dict[str, Any]) -> Commit | None:
    """A commit from huggingface_hub's tree cache (LFS files carry their sha256; others don't)."""
    if not isinstance(tree.get("files"), dict):
        return None
    files = []
    for path, meta in tree["files"].items():
        if meta.get("lfs_sha256"):
            files.append(FileEntry(path, meta.get("lfs_size", meta["size"]), meta["lfs_sha256"], meta["lfs_sha256"]))
        else:
            files.append(FileEntry(path, meta["size"], meta["blob_id"], None))
    return Commit(sha=sha, files=tuple(files))
