"""Helpers and fixtures shared by the mirror tests.

Deliberately not a `conftest.py`: a second module named `conftest` would shadow the root one for
every test file that does `from harness import …`. Test modules import the fixtures they use.
"""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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




@dataclass
class Tiny:
    """A model repo with main == v1.0, a refs/pr/1 commit adding a file, nested paths and an LFS file."""

    repo_id: str
    sha: str
    pr_sha: str
    files: dict[str, bytes]
    pr_files: dict[str, bytes]


TINY_FILES = {
    "config.json": b'{"model_type": "bert", "hidden_size": 8}\n',
    "sub dir/nested file.txt": b"nested hello\n",
    "data/part/a.txt": b"a" * 10,
    "data/b.txt": b"b" * 20,
    # *.safetensors is LFS by the default patterns: etag = sha256, X-Linked-* headers
    "model.safetensors": os.urandom(3000),
}


@pytest.fixture(scope="session", name="tiny")
def tiny_fixture(hub: Any, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    repo_id = unique_repo("srv/tiny")
    folder = write_folder(tmp_path_factory.mktemp("tiny"), TINY_FILES)
    sha = hub.publish(folder, repo_id)
    assert hub.publish(folder, repo_id, revision="v1.0") == sha
    pr_files = {**TINY_FILES, "pr.txt": b"from the pull request\n"}
    pr_folder = write_folder(tmp_path_factory.mktemp("tiny-pr"), pr_files)
    pr_sha = hub.publish(pr_folder, repo_id, revision="refs/pr/1")
    assert pr_sha != sha
    return Tiny(repo_id, sha, pr_sha, dict(TINY_FILES), pr_files)
