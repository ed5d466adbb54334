"""The one error hierarchy of hubpin, and the CLI exit code each maps to.

HubpinError                      base; `exit_code`, `hint`
├── CheckFailed (1)              a check failed: hash, size, policy, drift
│   ├── HashMismatchError        content differs from what was expected
│   ├── PolicyError              pickle / remote code / license refused
│   ├── DriftError               lock vs remote or cache disagree (`--check`)
│   └── NotSyncedError           a locked repo is not (fully) in the cache
├── BadInput (2)                 the user's input is wrong
│   ├── ConfigError              hubpin.toml / pyproject.toml
│   ├── LockfileError            hubpin.lock
│   ├── UnsafePathError          a hostile or malformed file name / repo id / revision
│   ├── BundleError              a bundle that is malformed, tampered or unsigned
│   └── NotFoundError            a repo, revision or file that does not exist
└── RemoteError (3)              the endpoint failed, answered wrongly, or is unreachable

Messages are one line: what, where, expected vs actual. `hint` says what to do next.
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "BundleError",
    "CheckFailed",
    "ConfigError",
    "DriftError",
    "HashMismatchError",
    "HubpinError",
    "LockfileError",
    "NotFoundError",
    "NotSyncedError",
    "PolicyError",
    "RemoteError",
    "UnsafePathError",
]


class HubpinError(Exception):
    """Base of every error hubpin raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class CheckFailed(HubpinError):
    """Raised when a verification or policy check fails (exit 1)."""

    exit_code = 1


class HashMismatchError(CheckFailed):
    """Raised when bytes do not match the expected size or digest."""

    def __init__(
        self,
        what: str,
        *,
        expected: str,
        actual: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{what}: expected {expected}, got {actual}", hint=hint)
        self.what = what
        self.expected = expected
        self.actual = actual


class PolicyError(CheckFailed):
    """Raised when a file or repo violates the project's supply-chain policy."""


class DriftError(CheckFailed):
    """Raised when the lock and the remote or the cache disagree."""


class NotSyncedError(CheckFailed, FileNotFoundError):
    """Raised when a locked repo or file is missing from the local cache."""


class BadInput(HubpinError):
    """Raised for bad usage or bad input (exit 2)."""

    exit_code = 2


class ConfigError(BadInput):
    """Raised when hubpin.toml or [tool.hubpin] is missing or malformed."""


class LockfileError(BadInput):
    """Raised when hubpin.lock is missing, malformed or incomplete."""


class UnsafePathError(BadInput, ValueError):
    """Raised when a file name, repo id or revision could escape its folder or is malformed."""


class BundleError(BadInput):
    """Raised when a bundle is malformed, tampered with, or not signed as required."""


class NotFoundError(BadInput):
    """Raised when a repo, revision or file does not exist (locally or remotely)."""


class RemoteError(HubpinError):
    """Raised when the endpoint is unreachable or answers wrongly (exit 3)."""

    exit_code = 3
