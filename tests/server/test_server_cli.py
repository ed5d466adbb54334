"""The real `hubpin serve` command in a subprocess, downloaded through by huggingface_hub."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _server_helpers import tiny_fixture  # noqa: F401 (the `tiny` fixture)
from huggingface_hub import hf_hub_download

from hubpin.server.runner import free_port


def _hubpin() -> str:
    return shutil.which("hubpin", path=str(Path(sys.executable).parent)) or "hubpin"


def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hubpin serve exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("hubpin serve did not become healthy")


@pytest.mark.slow
@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_hubpin_serve_cli(hub, tiny, tmp_path, server):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [_hubpin(), "serve", "--store", str(hub.store_dir), "--port", str(port), "--server", server],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_healthy(url, proc)
        path = hf_hub_download(tiny.repo_id, "model.safetensors", cache_dir=tmp_path / "c", endpoint=url)
        assert Path(path).read_bytes() == tiny.files["model.safetensors"]
        r = httpx.head(f"{url}/{tiny.repo_id}/resolve/main/config.json")
        assert r.headers["x-repo-commit"] == tiny.sha and r.headers["server"] == server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    err = proc.stderr.read() if proc.stderr else ""
    assert f"on {url}" in err  # the URL is printed on start
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err


def test_hubpin_serve_bad_input(tmp_path):
    r = subprocess.run([_hubpin(), "serve", "--store", str(tmp_path / "nope"), "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: store folder") and "hint:" in r.stderr
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        r = subprocess.run([_hubpin(), "serve", "--store", str(tmp_path), "--port", str(busy)],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "already in use" in r.stderr and "hint:" in r.stderr
