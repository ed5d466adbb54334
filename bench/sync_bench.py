"""Benchmark `hubpin sync` / `verify` / `snapshot()` against huggingface_hub on loopback.

    .venv/bin/python bench/sync_bench.py [--runs 3] [--big-mib 512] [--small 1000] [--verify-gib 2]

One `hubpin serve` (granian, zero-copy) on 127.0.0.1 over a store built with `hubpin publish`;
each run uses a fresh cache. Peers run in the same script, alternating with hubpin:
- `huggingface_hub.snapshot_download` with HF_HUB_DISABLE_XET=1 (its plain-HTTP path, 8 workers).
- verify: 0.9 x (single-core hashlib.sha256 rate measured here x cores).
Every timed command is a fresh process (interpreter start and imports included for both
sides); peak RSS comes from wait4(). Writes bench/sync_bench.json and bench/sync_bench.svg.
"""

from __future__ import annotations

import argparse
import hashlib
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


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of a fresh process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out = p.stdout.read() if p.stdout else ""
    err = p.stderr.read() if p.stderr else ""
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 << 20)
            f.write(os.urandom(n))
            left -= n


def sha256_rate(seconds: float = 1.0) -> float:
    buf = os.urandom(64 << 20)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        hashlib.sha256(buf).digest()
        n += len(buf)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-mib", type=int, default=512)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--small-kib", type=int, default=4)
    ap.add_argument("--verify-gib", type=float, default=2.0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir on /work's disk)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from hubpin.lockfile import LockedRepo, Lockfile, write_lock
    from hubpin.objects import RepoKey
    from hubpin.publish import publish
    from hubpin.store import LocalStore

    work = Path(tempfile.mkdtemp(prefix="sync-bench-", dir=args.work or ROOT.parent))
    try:
        store = LocalStore(work / "store", fsync=False)
        repos: dict[str, tuple[RepoKey, Path]] = {}

        def make(name: str, files: dict[str, int]) -> RepoKey:
            src = work / "src" / name
            for rel, size in files.items():
                write_random(src / rel, size)
            key = RepoKey("model", f"bench/{name}")
            c = publish(src, key, store).commit
            lock_path = work / f"{name}.lock"
            write_lock(Lockfile((LockedRepo(key, "main", c.sha, c.files, True),)), lock_path)
            for f in src.rglob("*"):  # free the space of big sources, keep the inodes (see run_all)
                if f.is_file() and f.stat().st_size > 1 << 20:
                    f.unlink()
            repos[name] = (key, lock_path)
            return key

        print("building fixtures ...", file=sys.stderr)
        make("big", {"model.safetensors": args.big_mib << 20})
        make("small", {f"f/{i:04d}.txt": args.small_kib << 10 for i in range(args.small)})
        n_verify = 4
        per = int(args.verify_gib * (1 << 30)) // n_verify
        make("verify", {f"model-{i:05d}-of-{n_verify:05d}.safetensors": per for i in range(n_verify)})

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([HUBPIN, "serve", "--store", str(work / "store"), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthz(url)
            results = run_all(args, repos, url, work)
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        results["load_after"] = os.getloadavg()
        out = ROOT / "bench" / "sync_bench.json"
        out.write_text(json.dumps(results, indent=1) + "\n")
        chart(results, ROOT / "bench" / "sync_bench.svg")
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


_HF = """
import sys
from huggingface_hub import snapshot_download
snapshot_download(sys.argv[1], cache_dir=sys.argv[2], max_workers=8)
"""

_SNAPSHOT = """
import statistics, sys, time
import hubpin
lock, cache, repo = sys.argv[1:4]
hubpin.snapshot(repo, lock=lock, cache_dir=cache)
ts = []
for _ in range(1000):
    t0 = time.perf_counter(); hubpin.snapshot(repo, lock=lock, cache_dir=cache); ts.append(time.perf_counter() - t0)
print(statistics.median(ts))
"""

_VERIFY = """
import sys, time
from hubpin.verify import verify

t0 = time.perf_counter(); r = verify(sys.argv[1], cache_dir=sys.argv[2]); dt = time.perf_counter() - t0
assert r.ok, r.problems
print(dt)
"""


def run_all(args: argparse.Namespace, repos: dict, url: str, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HOME=str(work / "hf-home"))
    res: dict = {"runs": args.runs, "cores": os.cpu_count(), "load_before": os.getloadavg(),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    os.sync()
    for name in ("big", "small"):
        key, lock = repos[name]
        ours, peer, rss, nofsync = [], [], [], []
        for i in range(args.runs):
            for who in ("hubpin", "hf", "nofsync") if i % 2 == 0 else ("nofsync", "hf", "hubpin"):
                cache = work / f"cache-{name}-{who}-{i}"
                if who in ("hubpin", "nofsync"):
                    extra = ["--no-fsync"] if who == "nofsync" else []
                    t, m, _ = timed([HUBPIN, "sync", "--lock", str(lock), "--cache-dir", str(cache),
                                     "--endpoint", url, *extra], env)
                    (ours if who == "hubpin" else nofsync).append(t)
                    rss.append(m)
                else:
                    t, _m, _ = timed([PY, "-c", _HF, key.id, str(cache)], env)
                    peer.append(t)
                # small-file caches are kept until the end: deleting thousands of files between runs
                # makes ext4's inode allocator skip every inode freed in the last 60-300 s in the
                # next run (perf: find_inode_bit / recently_deleted), which slowed later runs up to 2x.
                # Big-file caches are few inodes but much memory and disk: those go.
                if name == "big":
                    shutil.rmtree(cache)
                os.sync()
        res[name] = {"hubpin_s": ours, "hf_s": peer, "hubpin_median": statistics.median(ours),
                     "nofsync_s": nofsync, "nofsync_median": statistics.median(nofsync),
                     "nofsync_speedup": statistics.median(peer) / statistics.median(nofsync),
                     "hf_median": statistics.median(peer), "speedup": statistics.median(peer) / statistics.median(ours),
                     "hubpin_peak_rss": max(rss)}
        print(name, res[name], file=sys.stderr)

    # 2 GiB: sync (peak RSS), then verify (page cache warm for both the measure and the reference)
    key, lock = repos["verify"]
    cache = work / "cache-verify"
    rss, vt, cli = [], [], []
    for _i in range(args.runs):
        shutil.rmtree(cache, ignore_errors=True)
        _t, m, _ = timed([HUBPIN, "sync", "--lock", str(lock), "--cache-dir", str(cache), "--endpoint", url], env)
        rss.append(m)
        _t, _m, out = timed([PY, "-c", _VERIFY, str(lock), str(cache)], env)
        vt.append(float(out.strip()))
        t, _m, _ = timed([HUBPIN, "verify", "--lock", str(lock), "--cache-dir", str(cache)], env)
        cli.append(t)
    size = int(args.verify_gib * (1 << 30))
    rate = sha256_rate()
    cores = os.cpu_count() or 1
    res["verify"] = {"bytes": size, "verify_s": vt, "verify_median": statistics.median(vt),
                     "verify_rate": size / statistics.median(vt), "cli_median": statistics.median(cli),
                     "sha256_single_core_rate": rate, "target_rate": 0.9 * rate * cores,
                     "ratio_to_target": size / statistics.median(vt) / (0.9 * rate * cores)}
    res["sync_2gib_peak_rss"] = max(rss)
    print("verify", res["verify"], file=sys.stderr)

    key, lock = repos["small"]
    cache = work / "cache-snap"
    timed([HUBPIN, "sync", "--lock", str(lock), "--cache-dir", str(cache), "--endpoint", url], env)
    time.sleep(2.5)  # snapshot() trusts folder mtimes only once they are 2 s old (same-tick changes)
    snaps = [float(timed([PY, "-c", _SNAPSHOT, str(lock), str(cache), key.id], env)[2]) for _ in range(args.runs)]
    res["snapshot_warm_s"] = statistics.median(snaps)
    return res


def chart(res: dict, path: Path) -> None:
    """A small SVG: hubpin vs peer, seconds (median), per workload."""
    big, small, ver = res["big"], res["small"], res["verify"]
    rows = [
        ("1 x 512 MiB sync", [("hubpin sync", big["hubpin_median"], "#2b7bb9"),
                              ("hubpin sync --no-fsync", big["nofsync_median"], "#7fb3d9"),
                              ("snapshot_download", big["hf_median"], "#bbbbbb")]),
        ("1,000 x 4 KiB sync", [("hubpin sync", small["hubpin_median"], "#2b7bb9"),
                                ("hubpin sync --no-fsync", small["nofsync_median"], "#7fb3d9"),
                                ("snapshot_download", small["hf_median"], "#bbbbbb")]),
        ("verify 2 GiB", [("hubpin verify", ver["verify_median"], "#2b7bb9"),
                          ("0.9 x sha256 x cores", ver["bytes"] / ver["target_rate"], "#bbbbbb")]),
    ]
    width, bar_h, gap, left = 680, 18, 16, 150
    scale = (width - left - 200) / max(v for _n, bars in rows for _l, v, _c in bars)
    height = 40 + sum(len(bars) * bar_h + gap for _n, bars in rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             '<text x="10" y="18" font-weight="bold">hubpin sync/verify vs peers '
             '(median seconds, lower is better)</text>']
    y = 30
    for name, bars in rows:
        parts.append(f'<text x="10" y="{y + bar_h}">{name}</text>')
        for label, value, color in bars:
            parts.append(f'<rect x="{left}" y="{y}" width="{value * scale:.1f}" height="{bar_h - 2}" fill="{color}"/>')
            parts.append(f'<text x="{left + value * scale + 4:.1f}" y="{y + bar_h - 5}">{label} {value:.2f} s</text>')
            y += bar_h
        y += gap
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
