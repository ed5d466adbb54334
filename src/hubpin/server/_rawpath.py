"""Parse the RAW request path into a Hub endpoint, decoding each segment exactly once.

Clients percent-encode a revision as one segment (`refs%2Fpr%2F1`) and a tree path likewise
(`sub%2Fdir`), while `/resolve/` file paths keep their `/`. Starlette's decoded `path` can't
tell those apart, so we split `scope["raw_path"]` on `/` first and then unquote each part.
Older clients send `refs/pr/1` unencoded; the client's own regex disambiguates it.

Every name ends up in `hubpin.paths` (repo id via `RepoKey`, revision, file path) before any
lookup: a hostile name raises `HubError` 400 here, never later near the filesystem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_to_bytes

from ..errors import UnsafePathError
from ..objects import RepoKey
from ..paths import safe_relpath, validate_revision
from ._errors import HubError

__all__ = ["Endpoint", "Target", "parse_path"]

Kind = Literal["resolve", "info", "tree", "paths-info", "refs", "commits"]
Endpoint = Literal["whoami", "harnesses", "healthz"]

# huggingface_hub utils/_hf_uris.py: an unencoded special ref spans several segments
_LEGACY_REF = re.compile(r"^refs/(convert/[\w.-]+|pr/\d+)$")
_API_TYPES = {"models": "model", "datasets": "dataset"}
_UNSERVED = {"spaces", "kernels"}  # repo types a mirror of models and datasets never holds
_SIMPLE: dict[str, Endpoint] = {"/api/whoami-v2": "whoami", "/api/agent-harnesses": "harnesses", "/healthz": "healthz"}
MAX_RAW_PATH = 8192


@dataclass(frozen=True)
class Target:
    """One reading of a repo URL: which endpoint, on which repo, revision and path."""

    kind: Kind
    repo: RepoKey
    revision: str | None = None
    path: str = ""


def _segments(raw_path: bytes) -> list[str]:
    if len(raw_path) > MAX_RAW_PATH:
        raise HubError.bad_request(f"request path longer than {MAX_RAW_PATH} bytes")
    raw = raw_path.split(b"?", 1)[0]
    if not raw.startswith(b"/"):
        raise HubError.bad_request("request path must start with '/'")
    parts = raw[1:].split(b"/")
    if len(parts) > 1 and parts[-1] == b"":
        parts.pop()  # a trailing slash
    out = []
    for p in parts:
        try:
            out.append(unquote_to_bytes(p).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise HubError.bad_request("request path is not valid UTF-8 after percent-decoding") from e
    return out


def _split_revision(after: list[str], raw_after: list[str]) -> tuple[str, list[str]]:
    """(revision, rest): the revision is one segment, or an unencoded `refs/pr/N` spanning three."""
    if raw_after and raw_after[0] == "refs" and len(after) >= 3:
        candidate = f"refs/{after[1]}/{after[2]}"
        if "/" not in after[1] + after[2] and _LEGACY_REF.match(candidate):
            return candidate, after[3:]
    return after[0], after[1:]


def _revision(rev: str) -> str:
    try:
        return validate_revision(rev)
    except UnsafePathError as e:
        raise HubError.bad_request(str(e)) from e


def _relpath(path: str) -> str:
    try:
        return safe_relpath(path)
    except UnsafePathError as e:
        raise HubError.bad_request(str(e)) from e


def _repo(repo_type: str, parts: list[str]) -> RepoKey | None:
    try:
        return RepoKey(repo_type, "/".join(parts))  # type: ignore[arg-type]
    except (UnsafePathError, ValueError):
        return None


def parse_path(raw_path: bytes) -> Endpoint | list[Target]:
    """A fixed endpoint name, or the readings of a repo URL (most specific first; may be empty).

    Raises `HubError` (400) for hostile or malformed names.
    """
    segs = _segments(raw_path)
    simple = _SIMPLE.get("/" + "/".join(segs))
    if simple is not None:
        return simple
    raw_segs = raw_path.split(b"?", 1)[0][1:].decode("latin-1").split("/")
    if segs and segs[0] == "api":
        if len(segs) >= 3 and segs[1] in _UNSERVED:
            raise HubError.repo_not_found("/".join(segs[1:4]))  # spaces/kernels: no such repo here
        if len(segs) < 3 or segs[1] not in _API_TYPES:
            return []
        return _api_targets(_API_TYPES[segs[1]], segs[2:], raw_segs[2:])
    if segs and segs[0] == "datasets":
        return _resolve_targets("dataset", segs[1:], raw_segs[1:])
    if len(segs) >= 4 and segs[0] in _UNSERVED and "resolve" in segs[2:4]:
        raise HubError.repo_not_found("/".join(segs[:3]))
    return _resolve_targets("model", segs, raw_segs)


def _resolve_targets(repo_type: str, rest: list[str], raw_rest: list[str]) -> list[Target]:
    # `org/name/resolve/...` first, then `name/resolve/...`
    for n in (2, 1):
        if len(rest) >= n + 2 and rest[n] == "resolve" and "/" not in "".join(rest[:n]):
            repo = _repo(repo_type, rest[:n])
            if repo is None:
                raise HubError.bad_request(f"invalid repo id {'/'.join(rest[:n])!r}")
            rev, path_parts = _split_revision(rest[n + 1 :], raw_rest[n + 1 :])
            if not path_parts:
                raise HubError.bad_request("missing file path after the revision")
            return [Target("resolve", repo, _revision(rev), _relpath("/".join(path_parts)))]
    return []


def _api_targets(repo_type: str, rest: list[str], raw_rest: list[str]) -> list[Target]:
    out: list[Target] = []
    invalid: str | None = None
    for n in (2, 1):
        if len(rest) < n or "/" in "".join(rest[:n]):
            continue
        tail, raw_tail = rest[n:], raw_rest[n:]
        target = _api_tail(repo_type, rest[:n], tail, raw_tail)
        if target is None:
            continue
        if target == "invalid":
            invalid = "/".join(rest[:n])
            continue
        out.append(target)
    if not out and invalid is not None:
        raise HubError.bad_request(f"invalid repo id {invalid!r}")
    return out


def _api_tail(repo_type: str, repo_parts: list[str], tail: list[str], raw_tail: list[str]) -> Target | str | None:
    if tail and tail[0] not in ("revision", "tree", "paths-info", "refs", "commits"):
        return None
    if tail and tail[0] == "refs" and len(tail) != 1:
        return None
    if tail and tail[0] != "refs" and len(tail) < 2:
        return None
    repo = _repo(repo_type, repo_parts)
    if repo is None:
        return "invalid"
    if not tail:
        return Target("info", repo)
    kind = tail[0]
    if kind == "refs":
        return Target("refs", repo)
    if kind == "tree":
        rev, path_parts = _split_revision(tail[1:], raw_tail[1:])
        path = "/".join(path_parts)
        return Target("tree", repo, _revision(rev), _relpath(path) if path else "")
    # revision / paths-info / commits: everything after is the revision (encoded or not)
    rev = "/".join(tail[1:])
    return Target("info" if kind == "revision" else kind, repo, _revision(rev))  # type: ignore[arg-type]
