"""Bundle export/import throughput vs GNU `tar cf` / `tar xf` of the same files, same run.

    .venv/bin/python bench/bundle_bench.py [--gib 2] [--runs 3] [--work /tmp/hubpin-bundle-bench] [--delete-between]

The data set: a few large files (like weight shards) and many small ones (like tokenizer and
config files), random bytes, ~`--gib` GiB in total, published into a hubpin store (an HF cache
layout). Then, per run:

- `hubpin export` (bundle, unsigned and signed: every byte read from the cache, hashed with
  sha256 (+ git sha1 for the small files), verified, written) vs `tar cf` of the source folder;
- `hubpin import` into an empty cache (strict parse, every byte hashed into staging, verified,
  renamed into blobs/, snapshots/trees/refs written), with fsync (the default) and without,
  vs `tar xf` (no hashing, no fsync) of the tar into an empty folder.

Page cache is warm for both sides (2 cores; the machine is shared: see the load line).
Reports the median of `--runs` runs and hubpin/tar throughput ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hubpin.bundle import export_bundle, generate_keypair, import_bundle, select_entries
from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.store import LocalStore

MiB = 1 << 20


def make_source(folder: Path, total: int) -> int:
    """~85% in 4 large files, the rest in many 64-200 KiB files; returns the byte count."""
    folder.mkdir(parents=True)
    large, n_large = int(total * 0.85) // 4, 4
    block = os.urandom(64 * MiB)
    written = 0
    for i in range(n_large):
        with open(folder / f"model-{i:05d}-of-{n_large:05d}.safetensors", "wb") as f:
            left = large
            while left:
                # vary each block so no two shards share content
                n = min(left, len(block))
                f.write(os.urandom(16) + block[16:n] if n > 16 else block[:n])
                left -= n
        written += large
    small_dir = folder / "extra"
    small_dir.mkdir()
    i = 0
    while written < total:
        size = 64 * 1024 + (i * 7919) % (136 * 1024)
        (small_dir / f"part-{i:05d}.json").write_bytes(os.urandom(size))
        written += size
        i += 1
    return written


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hubpin-bundle-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--delete-between", action="store_true",
                    help="delete each import's output right after its step (the protocol before 2026-11-29); "
                    "default: keep them until the end, because ext4 then makes the next step's file creations "
                    "skip every inode freed in the last 60-300 s, which costs the side creating more inodes "
                    "(hubpin: blobs + snapshot symlinks) more than tar")
    args = ap.parse_args()
    work: Path = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        src = work / "src"
        nbytes = make_source(src, int(args.gib * (1 << 30)))
        nfiles = sum(1 for p in src.rglob("*") if p.is_file())
        store = LocalStore(work / "store", fsync=False)
        publish(src, RepoKey("model", "bench/model"), store)
        entries = select_entries(store, ["bench/model"], None)
        key = generate_keypair(work / "key").private
        tar_bin = shutil.which("tar") or "tar"
        tar_version = subprocess.run([tar_bin, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        print(f"data: {nbytes / (1 << 30):.2f} GiB in {nfiles} files; {tar_version}; python {sys.version.split()[0]}")
        print(f"load before: {os.getloadavg()}")
        results: dict[str, list[float]] = {}

        def rec(name: str, seconds: float) -> None:
            results.setdefault(name, []).append(seconds)

        b, t = work / "out.hubpin", work / "out.tar"
        for run in range(args.runs):
            # page cache flushed before every timed step; the order alternates between runs
            exports = [
                ("export (hubpin bundle)", lambda: (export_bundle(b, store, entries), b.unlink())),
                ("export signed (hubpin)", lambda: (export_bundle(b, store, entries, sign_key=key), b.unlink())),
                ("tar cf", lambda: (subprocess.run([tar_bin, "cf", str(t), "-C", str(src), "."], check=True),
                                        t.unlink())),
            ]
            for name, step in exports if run % 2 == 0 else exports[::-1]:
                os.sync()
                rec(name, timed(step))  # (the unlink is inside: cheap next to writing GiBs, same for both)
            os.sync()
            export_bundle(b, store, entries)
            subprocess.run([tar_bin, "cf", str(t), "-C", str(src), "."], check=True)
            imports = [
                ("import (hubpin, fsync)", work / f"c1-{run}", lambda d: import_bundle(b, LocalStore(d, fsync=True))),
                ("import (hubpin, no fsync)", work / f"c2-{run}",
                 lambda d: import_bundle(b, LocalStore(d, fsync=False))),
                ("tar xf", work / f"x-{run}", lambda d: (d.mkdir(), subprocess.run([tar_bin, "xf", str(t), "-C", str(d)],
                                                                                  check=True))),
            ]
            for name, dest, step in imports if run % 2 == 0 else imports[::-1]:
                os.sync()  # untimed: every step starts with nothing dirty
                rec(name, timed(lambda step=step, dest=dest: step(dest)))
                if args.delete_between:
                    shutil.rmtree(dest)
            b.unlink()
            t.unlink()
        print(f"load after: {os.getloadavg()}")
        med = {k: statistics.median(v) for k, v in results.items()}
        print("\n| step | median s (runs) | MB/s | vs tar |\n|---|---|---|---|")
        for name, s in med.items():
            peer = med["tar cf"] if name.startswith("export") else med["tar xf"]
            runs = ", ".join(f"{x:.2f}" for x in results[name])
            ratio = "1.00× (peer)" if name.startswith("tar") else f"{peer / s:.2f}× tar's throughput"
            print(f"| {name} | {s:.2f} ({runs}) | {nbytes / s / 1e6:.0f} | {ratio} |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
