"""`hubpin serve --policy hubpin.toml`: a mirror that refuses to serve what the policy refuses.

`PolicySource` wraps the mirror's `Source` (the one seam every lookup goes through). Before a
file is served it is checked by content: a pickle-family file without `allow-pickle` (or one
that fails the strict scan with it), and a `.py` file without `allow-remote-code`, are answered
with 403 and `X-Error-Message: pickle not allowed: <repo>/<path> (<format>)` on GET, which
huggingface_hub shows in its error (HEAD answers, with an `X-HF-Warning`: a failed HEAD would
surface as a misleading "check your connection"). Results are cached per (repo, blob), since blobs are
immutable. A file the store does not hold yet (a pull-through miss) is checked once stored.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .objects import Commit, FileEntry, RepoKey
from .policy import Policy

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .server._source import Source

__all__ = ["PolicySource", "policy_source"]

_CACHE = 4096
_SERVE_KINDS = ("pickle", "remote-code")  # file-level verdicts; licenses are judged at lock time


class PolicySource:
    """A `Source` that checks every file against a per-repo policy before serving it."""

    def __init__(self, inner: Source, policy_of: Any) -> None:
        """`policy_of(repo) -> Policy`: the policy for each repo (e.g. from a hubpin.toml)."""
        self.inner = inner
        self.store = inner.store
        self.policy_of = policy_of
        self._verdicts: OrderedDict[tuple[RepoKey, str, Policy], str | None] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # has_repo, resolve, get_commit, list_refs, history, ...
        return getattr(self.inner, name)

    def refusal(self, repo: RepoKey, commit: Commit, entry: FileEntry) -> str | None:
        """Why `entry` may not be served, or None."""
        policy = self.policy_of(repo)
        key = (repo, entry.etag, policy)
        with self._lock:
            if key in self._verdicts:
                self._verdicts.move_to_end(key)
                return self._verdicts[key]
        verdict = self._check(repo, commit, entry, policy)
        with self._lock:
            self._verdicts[key] = verdict
            while len(self._verdicts) > _CACHE:
                self._verdicts.popitem(last=False)
        return verdict

    def _check(self, repo: RepoKey, commit: Commit, entry: FileEntry, policy: Policy) -> str | None:
        from .scan import scan_files

        path = self.inner.local_path(repo, commit, entry)
        if path is not None:
            report = scan_files([(entry.path, Path(path))], policy, target=str(repo), check_licenses=False)
        elif self.store.has_blob(repo, entry.etag):
            # a remote store (S3): judge by the first bytes, as `lock` does for big files
            from ._pickle import PREFIX_BYTES

            with tempfile.TemporaryDirectory(prefix="hubpin-serve-policy-") as tmp:
                local = Path(tmp) / "head"
                with open(local, "wb") as f:
                    for chunk in self.store.read_blob(repo, entry.etag, 0, min(entry.size, PREFIX_BYTES)):
                        f.write(chunk)
                report = scan_files([(entry.path, local)], policy, target=str(repo), check_licenses=False,
                                    partial={entry.path})
        else:
            return None  # not stored yet (pull-through miss): checked once it is
        bad = [f for f in report.violations if f.kind in _SERVE_KINDS]
        return bad[0].message(str(repo)) if bad else None

    def file_response(
        self, request: Request, repo: RepoKey, commit: Commit, entry: FileEntry, headers: dict[str, str]
    ) -> Response:
        from .server._errors import HubError, _header_safe

        why = self.refusal(repo, commit, entry)
        if why is None:
            return self.inner.file_response(request, repo, commit, entry, headers)
        if request.method == "HEAD":
            # huggingface_hub turns a failed HEAD into "check your connection" and hides our
            # message; so HEAD answers (no bytes), warns, and the GET is refused with the reason
            response = self.inner.file_response(request, repo, commit, entry, headers)
            response.headers["X-HF-Warning"] = _header_safe(f"hubpin-policy; {why}")
            return response
        raise HubError(403, "PolicyRefused", why, {"X-Repo-Commit": commit.sha})


def policy_source(inner: Source, config_path: str | Path) -> PolicySource:
    """Wrap `inner` with the policy of the hubpin.toml (or pyproject.toml) at `config_path`."""
    from .config import load_project

    project = load_project(config_path)
    Policy.from_project(project)  # bad policy keys fail at startup, not on the first request
    for decl in project.repos:
        Policy.from_project(project, decl.repo)
    return PolicySource(inner, lambda repo: Policy.from_project(project, repo))
