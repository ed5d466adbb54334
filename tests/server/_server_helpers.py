"""Helpers shared by the mirror tests (imported by tests/server/conftest.py and test modules)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

_RUN = uuid.uuid4().hex[:6]
_count = itertools.count()


def unique_repo(prefix: str) -> str:
    """A repo id no other test uses (the session hub is shared with other test modules)."""
    return f"{prefix}-{_RUN}-{next(_count)}"


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    """Create `root` holding `files` (repo path → bytes)."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


