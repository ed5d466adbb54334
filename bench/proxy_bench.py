"""Pull-through, cold and warm: hubpin serve --upstream vs olah 0.5.4 in proxy mode, same upstream.

    python bench/proxy_bench.py [--size-mib 256] [--repeats 3] [--olah /tmp/olah-venv/bin/olah-cli]

Upstream: `hubpin serve` (granian) over a store holding one incompressible file. In front of it,
each in its best configuration:
  hubpin serve --upstream URL --allow '*'           (granian; verified single-flight fetch)
  olah-cli -c proxy.toml                            (hf-netloc = the upstream; its own cache)
Per repeat both proxies start with an empty cache. Figures, by `curl -o /dev/null` on loopback:
cold = first download through the proxy (time to first byte, MB/s), warm = the second one.
Median of --repeats; peak RSS = VmHWM summed over the proxy's process tree. olah in its own venv:
`python3 -m venv /tmp/olah-venv && /tmp/olah-venv/bin/pip install olah==0.5.4`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from _common import URL_PATH, Proc, free_port, wait_ready
from concurrent_bench import hubpin_argv, make_store


@dataclass
class Result:
    name: str
    cold_mb_s: list[float] = field(default_factory=list)
    cold_ttfb: list[float] = field(default_factory=list)
    warm_mb_s: list[float] = field(default_factory=list)
    rss_mib: float = 0.0


def curl(url: str, size: int) -> tuple[float, float]:
    """(MB/s, seconds to first byte) of one full download."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download} %{time_starttransfer}",
         url], check=True, capture_output=True, text=True).stdout.split()
    if out[0] != "200" or int(out[1]) != size:
        raise RuntimeError(f"bad download from {url}: {out}")
    return float(out[2]) / 1e6, float(out[3])


def olah_conf(work: Path, port: int, upstream_netloc: str, repos: Path) -> Path:
    p = work / f"olah-{port}.toml"
    p.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nhf-scheme = "http"\nhf-netloc = "{upstream_netloc}"\n'
                 f'hf-lfs-netloc = "{upstream_netloc}"\nrepos-path = "{repos}"\n\n[accessibility]\noffline = false\n')
    return p


def run(args: argparse.Namespace) -> list[Result]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mib << 20
    store = make_store(work, size)
    up_port = free_port()
    upstream = Proc(hubpin_argv("granian", store, up_port), work / "upstream.log")
    up_netloc = f"127.0.0.1:{up_port}"
    wait_ready(f"http://{up_netloc}{URL_PATH}", upstream)
    olah = Path(args.olah)
    peers = ["hubpin"] + (["olah"] if olah.exists() else [])
    if not olah.exists():
        print(f"olah not found at {olah}: skipped", file=sys.stderr)
    results = {p: Result("hubpin serve --upstream (granian)" if p == "hubpin" else "olah 0.5.4 (proxy mode)")
               for p in peers}
    try:
        for i in range(args.repeats):
            for peer in peers:
                cache = work / f"{peer}-cache-{i}"
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir()
                port = free_port()
                if peer == "hubpin":
                    proc = Proc(hubpin_argv("granian", cache, port, "--upstream", f"http://{up_netloc}",
                                            "--allow", "*"), work / "hubpin-proxy.log")
                else:
                    proc = Proc([str(olah), "-c", str(olah_conf(work, port, up_netloc, cache))], work / "olah.log")
                url = f"http://127.0.0.1:{port}{URL_PATH}"
                try:
                    wait_ready(f"http://127.0.0.1:{port}/api/models/bench/big", proc, timeout=60) \
                        if peer == "olah" else wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
                    r = results[peer]
                    mb_s, ttfb = curl(url, size)
                    r.cold_mb_s.append(mb_s)
                    r.cold_ttfb.append(ttfb)
                    r.warm_mb_s.append(curl(url, size)[0])
                finally:
                    proc.stop()
                results[peer].rss_mib = max(results[peer].rss_mib, proc.rss_mib)
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        upstream.stop()
    return list(results.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--olah", default="/tmp/olah-venv/bin/olah-cli")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "hubpin-proxy-bench"))
    args = ap.parse_args()
    load = os.getloadavg()
    results = run(args)
    med = statistics.median
    base = results[0]
    print(f"\n{args.size_mib} MiB file, median of {args.repeats}; load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| proxy | cold MB/s | cold first byte (s) | warm MB/s | peak RSS (MiB) | cold / hubpin | warm / hubpin |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {med(r.cold_mb_s):.0f} | {med(r.cold_ttfb):.3f} | {med(r.warm_mb_s):.0f} | "
              f"{r.rss_mib:.0f} | {med(r.cold_mb_s) / med(base.cold_mb_s):.2f}x | "
              f"{med(r.warm_mb_s) / med(base.warm_mb_s):.2f}x |")
    print("\nraw: " + "; ".join(f"{r.name}: cold {r.cold_mb_s} warm {r.warm_mb_s}" for r in results))


if __name__ == "__main__":
    main()
