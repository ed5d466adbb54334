"""Mirror tokens: create, list, revoke, and look a presented secret up.

Tokens live in the store's own metadata (`.hubpin/tokens.json` via `Store.read_meta/write_meta`),
so every `hubpin serve` replica on one store shares them. Only a hash of each secret is kept:

    {"format": 1, "tokens": [{"name": "ci", "sha256": "<hex>", "read": ["org/*"],
                              "write": [], "created": "2026-01-01T00:00:00Z"}]}

Why plain sha256 and not a slow password hash: a secret is `hp_` + 32 random bytes (256 bits),
so guessing it from the hash is infeasible whatever the hash speed; a slow KDF only protects
low-entropy human passwords, and it would cost every request (each one presents the token).

Scopes are globs (fnmatch, case-sensitive) on the repo's display name: `org/name` for a model,
`datasets/org/name` for a dataset. `*` also matches `/`, so `*` is everything, `org/*` is every
model of `org`, `datasets/org/*` every dataset of `org`. Write scope implies read scope.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import BadInput, NotFoundError
from .objects import RepoKey
from .store import Store

__all__ = [
    "TOKEN_PREFIX",
    "TokenRecord",
    "TokenRegistry",
    "create_token",
    "glob_matches",
    "hash_secret",
    "list_tokens",
    "revoke_token",
]

TOKENS_META = "tokens.json"
TOKEN_PREFIX = "hp_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GLOB = re.compile(r"^[\w.*?\[\]!/-]{1,200}$")


@dataclass(frozen=True)
class TokenRecord:
    """One token as stored: never the secret, only its sha256."""

    name: str
    sha256: str
    read: tuple[str, ...]
    write: tuple[str, ...]
    created: str
    expires: str | None = None  # ISO-8601 UTC; None = never

    def expired(self, now: datetime | None = None) -> bool:
        if self.expires is None:
            return False
        when = datetime.strptime(self.expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return (now or datetime.now(UTC)) >= when

    def can_read(self, repo: RepoKey) -> bool:
        return glob_matches(self.read + self.write, repo)

    def can_write(self, repo: RepoKey) -> bool:
        return glob_matches(self.write, repo)

    def public_dict(self) -> dict[str, object]:
        """What `token list` shows: everything but the hash."""
        return {"name": self.name, "read": list(self.read), "write": list(self.write), "created": self.created,
                "expires": self.expires}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def glob_matches(globs: tuple[str, ...] | list[str], repo: RepoKey) -> bool:
    """True when one glob matches `org/name` (model) or `datasets/org/name` (dataset)."""
    name = str(repo)
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def validate_globs(globs: tuple[str, ...] | list[str], what: str) -> tuple[str, ...]:
    for g in globs:
        if not _GLOB.match(g):
            raise BadInput(
                f"invalid {what} glob {g!r}: expected a repo-id pattern such as 'org/*' or 'datasets/org/*'"
            )
    return tuple(globs)


def _load(store: Store) -> list[TokenRecord]:
    raw = store.read_meta(TOKENS_META)
    if raw is None:
        return []
    try:
        data = json.loads(raw)
        return [
            TokenRecord(t["name"], t["sha256"], tuple(t["read"]), tuple(t["write"]), t.get("created", ""),
                        t.get("expires"))
            for t in data["tokens"]
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(
            f"{store.location}/.hubpin/{TOKENS_META}: malformed token file ({e})",
            hint="restore it from a backup, or delete it and create the tokens again",
        ) from None


def _save(store: Store, records: list[TokenRecord]) -> None:
    data = {
        "format": 1,
        "tokens": [
            {"name": r.name, "sha256": r.sha256, "read": list(r.read), "write": list(r.write), "created": r.created,
             **({"expires": r.expires} if r.expires else {})}
            for r in sorted(records, key=lambda r: r.name)
        ],
    }
    store.write_meta(TOKENS_META, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def create_token(
    store: Store,
    name: str,
    *,
    read: list[str] | tuple[str, ...],
    write: list[str] | tuple[str, ...] = (),
    expires_in: timedelta | None = None,
) -> tuple[str, TokenRecord]:
    """Create token `name`; return (secret, record). The secret is not stored and cannot be shown again.

    `expires_in`: the token stops working that long after now (default: never)."""
    if not _NAME.match(name):
        raise BadInput(f"invalid token name {name!r}: expected 1-64 characters of [A-Za-z0-9_.-]")
    if not read and not write:
        raise BadInput(f"token {name}: no scope given (expected at least one --read or --write glob)")
    read_globs, write_globs = validate_globs(read, "--read"), validate_globs(write, "--write")
    with store.meta_lock(TOKENS_META):  # two admins at once: both tokens are kept
        records = _load(store)
        if any(r.name == name for r in records):
            raise BadInput(
                f"token {name} already exists in {store.location}", hint=f"revoke it first: hubpin token revoke {name}"
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        record = TokenRecord(
            name=name,
            sha256=hash_secret(secret),
            read=read_globs,
            write=write_globs,
            created=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            expires=(now + expires_in).strftime("%Y-%m-%dT%H:%M:%SZ") if expires_in is not None else None,
        )
        _save(store, [*records, record])
    return secret, record


def list_tokens(store: Store) -> list[TokenRecord]:
    return sorted(_load(store), key=lambda r: r.name)


def revoke_token(store: Store, name: str) -> TokenRecord:
    with store.meta_lock(TOKENS_META):
        records = _load(store)
        keep = [r for r in records if r.name != name]
        if len(keep) == len(records):
            raise NotFoundError(
                f"token {name} not found in {store.location}", hint="list the tokens with: hubpin token list"
            )
        _save(store, keep)
    return next(r for r in records if r.name == name)


class TokenRegistry:
    """The server's view of the store's tokens, re-read at most every `ttl` seconds.

    A short TTL keeps revocation quick across replicas without reading the store on every request.
    """

    def __init__(self, store: Store, *, ttl: float = 2.0) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._records: list[TokenRecord] = []
        self._loaded_at = float("-inf")

    def records(self) -> list[TokenRecord]:
        with self._lock:
            now = time.monotonic()
            if now - self._loaded_at >= self.ttl:
                self._records = _load(self.store)
                self._loaded_at = now
            return self._records

    def lookup(self, secret: str | None) -> TokenRecord | None:
        """The live record whose hash matches `secret` (constant-time compare against every record);
        None for an unknown, revoked or expired token."""
        if not secret:
            return None
        digest = hash_secret(secret)
        found = None
        for r in self.records():
            # no early exit: the time taken does not tell which record (or whether any) matched
            if hmac.compare_digest(digest, r.sha256):
                found = r
        return None if found is None or found.expired() else found
