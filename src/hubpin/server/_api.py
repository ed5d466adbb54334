"""JSON bodies of the `/api/` endpoints, shaped as huggingface_hub 2.4.0 parses them.

Never a `xetHash` anywhere: it would switch clients to the Xet path (hub-protocol.md 2.9).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from ..hashing import lfs_pointer
from ..objects import Commit, FileEntry, RepoKey

__all__ = ["commit_item", "dir_entry", "file_entry", "iso_date", "list_tree", "refs_body", "repo_info", "tree_ids"]

_EPOCH = "1970-01-01T00:00:00.000Z"


def iso_date(text: str) -> str:
    """`2026-01-02T03:04:05Z` (publish records) → `2026-01-02T03:04:05.000Z` (the Hub's form)."""
    if not text:
        return _EPOCH
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return _EPOCH
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _lfs(f: FileEntry, key: str) -> dict[str, Any]:
    return {key: f.etag, "size": f.size, "pointerSize": len(lfs_pointer(f.etag, f.size))}


def file_entry(f: FileEntry, commit: Commit | None = None) -> dict[str, Any]:
    """A tree / paths-info file entry; `commit` adds the `expand=true` fields."""
    out: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
    if f.lfs:
        out["lfs"] = _lfs(f, "oid")
    if commit is not None:
        out["lastCommit"] = _last_commit(commit)
    return out


def dir_entry(path: str, oid: str, commit: Commit | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "directory", "oid": oid, "path": path}
    if commit is not None:
        out["lastCommit"] = _last_commit(commit)
    return out


def _last_commit(commit: Commit) -> dict[str, str]:
    # the commit being listed: hubpin does not track per-path history
    return {"id": commit.sha, "title": commit.message.splitlines()[0] if commit.message else "", "date": iso_date(commit.created)}


def tree_ids(commit: Commit) -> dict[str, str]:
    """Git tree object ids of every folder (and `""` for the root), as git would compute them."""
    children: dict[str, list[tuple[str, bool, str]]] = {"": []}
    for d in commit.directories():
        children.setdefault(d, [])
    for f in commit.files:
        parent, _, name = f.path.rpartition("/")
        children[parent].append((name, False, f.git_oid))
    ids: dict[str, str] = {}
    # deepest folders first, so each parent sees its subfolders' ids
    for d in sorted(children, key=lambda p: (p.count("/") + (1 if p else 0)), reverse=True):
        entries = children[d]
        # git sorts tree entries by name, folders compared as "name/"
        body = b"".join(
            (b"40000 " if is_dir else b"100644 ") + name.encode() + b"\0" + bytes.fromhex(oid)
            for name, is_dir, oid in sorted(entries, key=lambda e: e[0] + ("/" if e[1] else ""))
        )
        oid = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
        ids[d] = oid
        if d:
            parent, _, name = d.rpartition("/")
            children[parent].append((name, True, oid))
    return ids


def list_tree(commit: Commit, path: str, recursive: bool) -> list[tuple[str, FileEntry | str]] | None:
    """Entries below folder `path` ("" = root) as (path, FileEntry | tree oid), sorted; None if no such folder."""
    ids = tree_ids(commit)
    if path and path not in ids:
        return None
    prefix = f"{path}/" if path else ""
    out: list[tuple[str, FileEntry | str]] = []
    for d, oid in ids.items():
        if d and d.startswith(prefix) and (recursive or "/" not in d[len(prefix) :]):
            out.append((d, oid))
    for f in commit.files:
        if f.path.startswith(prefix) and (recursive or "/" not in f.path[len(prefix) :]):
            out.append((f.path, f))
    out.sort(key=lambda e: e[0])
    return out


def repo_info(repo: RepoKey, commit: Commit, blobs: bool) -> dict[str, Any]:
    """`/api/{type}s/{repo}[/revision/{rev}]`: id and sha are required by the client."""
    siblings: list[dict[str, Any]] = []
    for f in commit.files:
        s: dict[str, Any] = {"rfilename": f.path}
        if blobs:
            s.update(size=f.size, blobId=f.git_oid)
            if f.lfs:
                s["lfs"] = _lfs(f, "sha256")
        siblings.append(s)
    date = iso_date(commit.created)
    info: dict[str, Any] = {
        "_id": commit.sha[:24],
        "id": repo.id,
        "sha": commit.sha,
        "private": False,
        "gated": False,
        "disabled": False,
        "tags": [],
        "downloads": 0,
        "likes": 0,
        "lastModified": date,
        "createdAt": date,
        "cardData": {},
        "siblings": siblings,
    }
    if repo.type == "model":
        info["modelId"] = repo.id
    else:
        info["description"] = ""
    return info


def refs_body(refs: dict[str, str], include_prs: bool) -> dict[str, Any]:
    """`/refs`: branches, converts, tags (+ pullRequests). hubpin stores plain refs: all are branches."""
    body: dict[str, list[dict[str, str]]] = {"branches": [], "converts": [], "tags": []}
    prs: list[dict[str, str]] = []
    for name, sha in sorted(refs.items()):
        if name.startswith("refs/pr/"):
            prs.append({"name": name[len("refs/pr/") :], "ref": name, "targetCommit": sha})
        elif name.startswith("refs/convert/"):
            body["converts"].append({"name": name[len("refs/convert/") :], "ref": name, "targetCommit": sha})
        elif name.startswith("refs/tags/"):
            body["tags"].append({"name": name[len("refs/tags/") :], "ref": name, "targetCommit": sha})
        else:
            body["branches"].append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha})
    if include_prs:
        body["pullRequests"] = prs
    return body


def commit_item(c: Commit) -> dict[str, Any]:
    title, _, rest = (c.message or "").partition("\n")
    return {
        "id": c.sha,
        "authors": [{"user": "hubpin"}],
        "date": iso_date(c.created),
        "title": title,
        "message": rest.strip(),
    }
