"""Hub-style error responses: every 4xx carries `X-Error-Code`, `X-Error-Message` and JSON.

huggingface_hub maps `X-Error-Code` to its exception classes (`hf_raise_for_status`):
RepoNotFound → RepositoryNotFoundError, RevisionNotFound → RevisionNotFoundError,
EntryNotFound → EntryNotFoundError (and a `.no_exist` marker when `X-Repo-Commit` is sent).
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from ..objects import RepoKey

__all__ = ["HubError", "error_response"]


class HubError(Exception):
    """Raised inside a handler to answer with a Hub-style error."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @classmethod
    def repo_not_found(cls, repo: RepoKey | str) -> HubError:
        return cls(404, "RepoNotFound", f"Repository not found: {repo}")

    @classmethod
    def revision_not_found(cls, repo: RepoKey, revision: str) -> HubError:
        return cls(404, "RevisionNotFound", f"Invalid rev id: {revision} (repo {repo})")

    @classmethod
    def entry_not_found(cls, repo: RepoKey, sha: str, path: str) -> HubError:
        # X-Repo-Commit lets the client write `.no_exist/<sha>/<path>` (hub-protocol.md 2.1)
        return cls(
            404, "EntryNotFound", f"Entry not found: {path} in {repo}@{sha}", {"X-Repo-Commit": sha}
        )

    @classmethod
    def bad_request(cls, message: str) -> HubError:
        return cls(400, "BadRequest", message)

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.headers)


def _header_safe(text: str) -> str:
    # header values must be latin-1 and single-line; names from the URL may be anything
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")[:500]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON `{"error": message}` response with the Hub's error headers."""
    h = {"X-Error-Code": code, "X-Error-Message": _header_safe(message), **(headers or {})}
    return JSONResponse({"error": message}, status_code=status, headers=h)
