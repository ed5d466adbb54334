"""Shared test harness (imported by tests/conftest.py first, and by tests for its helpers).

huggingface_hub reads HF_ENDPOINT, HF_HOME etc. once, at import. So before any test module can
import it, this file points the environment at one session-wide hubpin mirror on 127.0.0.1 and
at throwaway HF folders. Tests publish uniquely named repos into that mirror's store (`hub`
fixture) and then drive unmodified clients against it. Nothing leaves the machine.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hubpin.server.runner import free_port

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="hubpin-tests-"))
HUB_PORT = free_port()
HUB_URL = f"http://127.0.0.1:{HUB_PORT}"

os.environ.update(
    {
        "HF_ENDPOINT": HUB_URL,
        "HF_HOME": str(_SESSION_DIR / "hf-home"),
        "HF_HUB_CACHE": str(_SESSION_DIR / "hf-home" / "hub"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "DISABLE_SAFETENSORS_CONVERSION": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_DATASETS_CACHE": str(_SESSION_DIR / "hf-home" / "datasets"),
    }
)
for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUBPIN_STORE"):
    os.environ.pop(var, None)

_names = itertools.count()


def unique_repo(prefix: str = "org/repo") -> str:
    """A repo id no other test uses (the session hub is shared)."""
    return f"{prefix}-{next(_names)}"


@dataclass
class Hub:
    """The session-wide mirror: a hubpin server on 127.0.0.1 over `store_dir`."""

    url: str
    store_dir: Path

    @property
    def store(self):  # noqa: ANN201 - LocalStore
        from hubpin.store import LocalStore

        return LocalStore(self.store_dir, fsync=False)

    def publish(self, folder: Path, repo_id: str, *, dataset: bool = False, revision: str = "main") -> str:
        from hubpin.objects import RepoKey
        from hubpin.publish import publish

        repo = RepoKey("dataset" if dataset else "model", repo_id)
        return publish(folder, repo, self.store, revision=revision).commit.sha


@pytest.fixture(scope="session")
def hub() -> Iterator[Hub]:
    from hubpin.server.app import create_app
    from hubpin.server.runner import serve_in_thread
    from hubpin.store import LocalStore

    store_dir = _SESSION_DIR / "hub-store"
    store_dir.mkdir(exist_ok=True)
    with serve_in_thread(create_app(LocalStore(store_dir, fsync=False)), port=HUB_PORT) as url:
        yield Hub(url, store_dir)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """An empty HF cache folder for one test."""
    d = tmp_path / "hf-cache"
    d.mkdir()
    return d


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (for clients that must read env vars at import, e.g. offline)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=timeout)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the real `hubpin` console script."""
    exe = shutil.which("hubpin", path=str(Path(sys.executable).parent)) or "hubpin"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([exe, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
