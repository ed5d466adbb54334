"""Server settings and the access hook the token layer plugs into.

`ServerConfig` is a frozen dataclass handed to `create_app`. Its `access` object decides who
may read what; the default lets everyone read everything (a plain internal mirror).
A repo the caller may not read is answered exactly like a repo that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..objects import RepoKey

if TYPE_CHECKING:
    from ._source import Source

__all__ = ["Access", "AllowAll", "ServerConfig"]


@runtime_checkable
class Access(Protocol):
    """Who may read which repo. `token` is the `Authorization: Bearer` value, or None."""

    def can_read(self, token: str | None, repo: RepoKey) -> bool:
        """True if the caller may see `repo`; False makes it answer like a missing repo."""
        ...

    def whoami(self, token: str | None) -> dict[str, Any] | None:
        """The `/api/whoami-v2` body for `token`, or None for 401 "Invalid user token"."""
        ...


class AllowAll:
    """Everyone reads everything. whoami: 401 without a token, a generic user with any token."""

    def can_read(self, token: str | None, repo: RepoKey) -> bool:
        return True

    def whoami(self, token: str | None) -> dict[str, Any] | None:
        if token is None:
            return None
        return {
            "type": "user",
            "name": "hubpin",
            "fullname": "hubpin mirror user",
            "orgs": [],
            "auth": {"accessToken": {"displayName": "hubpin", "role": "read"}},
        }


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one mirror app.

    access: the read-permission hook (see `Access`).
    source: where refs, commits and file bytes come from; None = straight from the store.
        A pull-through mirror passes its own `Source` subclass here.
    page_size / expand_page_size: entries per `/tree/` page (the Hub uses 1000, and 50 with
        `expand=true`); tests lower them to exercise pagination.
    routes: extra starlette routes, matched before the Hub routes (e.g. `/metrics`, uploads).
    middleware: starlette `Middleware(...)` entries wrapped around the whole app (outermost first).
    """

    access: Access = field(default_factory=AllowAll)
    source: Source | None = None
    page_size: int = 1000
    expand_page_size: int = 50
    routes: tuple[Any, ...] = ()
    middleware: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.page_size < 1 or self.expand_page_size < 1:
            raise ValueError("page sizes must be positive")
