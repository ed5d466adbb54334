"""Benchmark `hubpin lock` against what huggingface_hub offers for the same pin, on loopback.

    .venv/bin/python bench/lock_bench.py [--runs 3] [--small 1000] [--small-kib 4] [--lfs-mib 64]

A pin needs, for every file of a commit, its size and sha256. hubpin gets LFS sha256s from the
tree and downloads + hashes only the regular files. huggingface_hub has no lock: the closest
peer is `snapshot_download` (HF_HUB_DISABLE_XET=1, plain HTTP) followed by sha256 of every file,
at max_workers 8 (its default) and 16; the best of the two is the peer figure.

One `hubpin serve` on 127.0.0.1 over a store built with `hubpin publish`. Every timed command
is a fresh process (interpreter start and imports included on both sides); runs alternate.
`hubpin lock` runs with its default hooks (the policy scan included, as a user gets it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, wait_healthz

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HUBPIN = str(Path(PY).parent / "hubpin")

_HF = """
import hashlib, os, sys
from huggingface_hub import snapshot_download

folder = snapshot_download(sys.argv[1], cache_dir=sys.argv[2], max_workers=int(sys.argv[3]))
n = 0
for root, _dirs, files in os.walk(folder):
    for name in files:
        with open(os.path.join(root, name), "rb") as f:
            hashlib.file_digest(f, "sha256")
        n += 1
print(n)
"""


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--small-kib", type=int, default=4)
    ap.add_argument("--lfs-mib", type=int, default=64)
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from hubpin.objects import RepoKey
    from hubpin.publish import publish
    from hubpin.store import LocalStore

    work = Path(tempfile.mkdtemp(prefix="lock-bench-", dir=ROOT.parent))
    try:
        store = LocalStore(work / "store", fsync=False)
        src = work / "src"
        for i in range(args.small):
            p = src / f"f{i % 10}" / f"{i:05d}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.urandom(args.small_kib << 9).hex().encode())  # text, regular (non-LFS)
        (src / "model.safetensors").write_bytes(os.urandom(args.lfs_mib << 20))
        repo = RepoKey("model", "bench/lockme")
        commit = publish(src, repo, store).commit
        shutil.rmtree(src)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([HUBPIN, "serve", "--store", str(work / "store"), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HOME=str(work / "hf-home"))
        res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
                     "load_before": os.getloadavg(), "files": len(commit.files), "bytes": commit.total_size,
                     "runs": args.runs}
        times: dict[str, list[float]] = {"hubpin": [], "hf8": [], "hf16": []}
        try:
            wait_healthz(url)
            for i in range(args.runs):
                order = ["hubpin", "hf8", "hf16"]
                for who in order if i % 2 == 0 else order[::-1]:
                    scratch = work / f"run-{who}-{i}"
                    scratch.mkdir()
                    if who == "hubpin":
                        (scratch / "hubpin.toml").write_text(f'[models."{repo.id}"]\n')
                        t = timed([HUBPIN, "lock", "--endpoint", url], env, cwd=scratch)
                    else:
                        t = timed([PY, "-c", _HF, repo.id, str(scratch / "cache"), who[2:]], env)
                    times[who].append(t)
                    shutil.rmtree(scratch)
                    print(who, round(t, 2), file=sys.stderr)
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        med = {k: statistics.median(v) for k, v in times.items()}
        best_peer = min(("hf8", "hf16"), key=lambda k: med[k])
        res.update(times=times, median=med, best_peer=best_peer, speedup=med[best_peer] / med["hubpin"],
                   load_after=os.getloadavg())
        print(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
