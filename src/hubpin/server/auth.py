"""Token access for the mirror: who may read (and publish to) which repo.

`TokenAccess` plugs into `ServerConfig.access`. Rules, in order:

1. A presented token (`Authorization: Bearer hp_…`, i.e. `HF_TOKEN` on the client) that does
   not match a live token reads nothing, not even public repos: a revoked or mistyped token
   must fail loudly rather than silently fall back to anonymous access.
2. A valid token reads the repos matching its `--read` or `--write` globs.
3. Anonymous callers read the repos matching `serve --public G…`.
4. Open default: when the store holds no tokens at all and no `--public` glob was given,
   everyone reads everything (a plain internal mirror of a cache). The first `hubpin token
   create` closes the mirror; `--public` globs close it too (only they stay anonymous).

Publishing over HTTP (`/api/hubpin/upload/…`) always needs a token with a matching `--write`
glob; there is no anonymous write, open default or not.

A repo the caller may not read is answered exactly like a missing one (the app does that).
Secrets are compared as sha256 digests with `hmac.compare_digest` (see `hubpin.tokens`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..objects import RepoKey
from ..store import Store
from ..tokens import TokenRecord, TokenRegistry, glob_matches

__all__ = ["TokenAccess", "bearer_token"]


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header among raw ASGI headers, or None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class TokenAccess:
    """The `Access` hook backed by the store's tokens (shared by every replica on the store)."""

    def __init__(self, store: Store, *, public: Iterable[str] = (), ttl: float = 2.0) -> None:
        self.registry = TokenRegistry(store, ttl=ttl)
        self.public = tuple(public)

    def is_open(self) -> bool:
        """True when anonymous callers read everything (no tokens in the store, no --public)."""
        return not self.public and not self.registry.records()

    def record(self, token: str | None) -> TokenRecord | None:
        return self.registry.lookup(token)

    def can_read(self, token: str | None, repo: RepoKey) -> bool:
        if token:
            rec = self.registry.lookup(token)
            return rec is not None and rec.can_read(repo)
        if self.public:
            return glob_matches(self.public, repo)
        return not self.registry.records()

    def can_write(self, token: str | None, repo: RepoKey) -> bool:
        rec = self.registry.lookup(token)
        return rec is not None and rec.can_write(repo)

    def whoami(self, token: str | None) -> dict[str, Any] | None:
        rec = self.registry.lookup(token)
        if rec is None:
            return None
        role = "write" if rec.write else "read"
        return {
            "type": "user",
            "id": rec.name,
            "name": rec.name,
            "fullname": rec.name,
            "isPro": False,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": rec.name, "role": role}},
            "hubpin": {"read": list(rec.read), "write": list(rec.write), "created": rec.created},
        }
