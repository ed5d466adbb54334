"""/healthz, /metrics, the access log, and the real `hubpin serve --upstream` (granian) end to end."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _ops_helpers import mirror_app, new_store, publish_files, serve, write_folder
from huggingface_hub import hf_hub_download

from harness import unique_repo
from hubpin.server.runner import free_port


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            got = key[len(name):].strip("{}")
            if sorted(got.split(",")) == sorted(want.split(",")):
                return float(value)
    return 0.0


def test_healthz_metrics_and_access_log(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hubpin.access")
    store = new_store(tmp_path / "store")
    publish_files(store, tmp_path, "org/m", {"a.txt": b"12345"})
    with serve(mirror_app(store)) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        before = httpx.get(f"{url}/metrics").text
        for _ in range(3):
            assert httpx.get(f"{url}/org/m/resolve/main/a.txt").content == b"12345"
        assert httpx.get(f"{url}/org/m/resolve/main/nope.txt").status_code == 404
        after = httpx.get(f"{url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    ok = dict(route="resolve", method="GET", status="200")
    assert _metric(text, "hubpin_requests_total", **ok) - _metric(before, "hubpin_requests_total", **ok) == 3
    miss = dict(route="resolve", method="GET", status="404")
    assert _metric(text, "hubpin_requests_total", **miss) - _metric(before, "hubpin_requests_total", **miss) == 1
    assert _metric(text, "hubpin_response_bytes_total", route="resolve") - \
        _metric(before, "hubpin_response_bytes_total", route="resolve") >= 15
    for name in ("hubpin_active_requests", "hubpin_store_lookups_total", "hubpin_upstream_fetches_total",
                 "hubpin_hash_failures_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    lines = [r.getMessage() for r in caplog.records if r.name == "hubpin.access"]
    assert any('"GET /org/m/resolve/main/a.txt" 200 5 ' in line for line in lines)
    assert any('"GET /org/m/resolve/main/nope.txt" 404' in line for line in lines)


def test_real_serve_cli_pulls_through_from_another_hubpin(hub, tmp_path):
    repo = unique_repo("org/pull")
    folder = write_folder(tmp_path / "f", {"config.json": b'{"x": 1}', "w.safetensors": os.urandom(50_000)})
    sha = hub.publish(folder, repo)
    (tmp_path / "store").mkdir()
    port = free_port()
    exe = shutil.which("hubpin", path=str(Path(sys.executable).parent)) or "hubpin"
    proc = subprocess.Popen(
        [exe, "serve", "--store", str(tmp_path / "store"), "--port", str(port), "--upstream", hub.url,
         "--allow", "org/*"],
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        got = hf_hub_download(repo, "w.safetensors", endpoint=url, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == (folder / "w.safetensors").read_bytes()
        assert Path(got).parent.name == sha
        metrics = httpx.get(f"{url}/metrics").text
        assert _metric(metrics, "hubpin_upstream_fetches_total", result="ok") == 1
        blobs = list((tmp_path / "store" / f"models--{repo.replace('/', '--')}" / "blobs").iterdir())
        assert len(blobs) == 1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    log = (tmp_path / "serve.log").read_text()
    assert "open mirror" in log and f'"GET /{repo}/resolve/main/w.safetensors" 200' in log
