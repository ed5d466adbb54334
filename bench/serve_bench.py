"""Mirror throughput: one big file to `curl -o /dev/null` on loopback, plus HEAD requests/s.

Servers, all on 127.0.0.1, all serving the same bytes:
  hubpin serve --server granian     (pathsend: the file leaves through granian's Rust core)
  hubpin serve --server uvicorn     (64 KiB chunks through Python)
  nginx (Debian nginx-light)        static file; variants sendfile on / off + large output_buffers, best kept
  olah 0.5.4 (own venv)             warmed through its proxy mode in front of hubpin, then restarted
                                    with `offline = true`, so it serves from its own cache only

All servers run at once and are measured round-robin (one download from each per round), so load
changes on the shared machine hit all of them alike. Figures: median of --repeats rounds; peak RSS = VmHWM summed over the server's process tree
(and the largest single process); HEAD/s with ApacheBench `ab -i -k -c 8` (same client for every server).

    python bench/serve_bench.py [--size-mib 1024] [--repeats 3] [--olah /tmp/olah-venv/bin/olah-cli]

Needs: nginx and ab (`apt-get install -y nginx-light apache2-utils`), olah in its own venv
(`python3 -m venv /tmp/olah-venv && /tmp/olah-venv/bin/pip install olah==0.5.4`). Missing peers
are skipped with a note. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import FILE, REPO, URL_PATH, Proc, free_port, wait_ready


@dataclass
class Result:
    name: str
    mb_s: list[float] = field(default_factory=list)
    head_rps: list[float] = field(default_factory=list)
    rss_total_mib: float = 0.0
    rss_max_mib: float = 0.0
    note: str = ""

    @property
    def mb_s_median(self) -> float:
        return statistics.median(self.mb_s) if self.mb_s else 0.0

    @property
    def head_median(self) -> float:
        return statistics.median(self.head_rps) if self.head_rps else 0.0


def curl_mb_s(url: str, size: int) -> float:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}", url],
                         check=True, capture_output=True, text=True).stdout.split()
    if out[0] != "200" or int(out[1]) != size:
        raise RuntimeError(f"bad download from {url}: {out}")
    return float(out[2]) / 1e6


def head_rps(url: str, seconds: int) -> float:
    """HEAD requests/s from ApacheBench, 8 concurrent keep-alive clients (wrk 4.1 hangs on HEAD bodies)."""
    if shutil.which("ab") is None:
        return 0.0
    out = subprocess.run(["ab", "-q", "-i", "-k", "-c", "8", "-t", str(seconds), "-n", "10000000", url],
                         check=True, capture_output=True, text=True).stdout
    failed = next((int(line.split()[2]) for line in out.splitlines() if line.startswith("Failed requests:")), 0)
    if failed:
        raise RuntimeError(f"{failed} failed HEAD requests against {url}")
    for line in out.splitlines():
        if line.startswith("Requests per second:"):
            return float(line.split()[3])
    raise RuntimeError(out)


def make_store(work: Path, size: int) -> tuple[Path, Path]:
    from hubpin.objects import RepoKey
    from hubpin.publish import publish
    from hubpin.store import LocalStore

    store_dir = work / "store"
    src = work / "src"
    big = src / FILE
    if not big.exists() or big.stat().st_size != size:
        shutil.rmtree(work, ignore_errors=True)  # another size: start over (store, nginx root, olah cache)
        work.mkdir(parents=True)
        src.mkdir(parents=True, exist_ok=True)
        with open(big, "wb") as f:
            left = size
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
    store = LocalStore(store_dir, fsync=False)
    commit = publish(src, RepoKey("model", REPO), store).commit
    blob = store.local_blob_path(RepoKey("model", REPO), commit.files[0].etag)
    assert blob is not None
    return store_dir, blob


def nginx_conf(work: Path, port: int, blob: Path, variant: str) -> Path:
    root = work / "nginx-root" / REPO / "resolve" / "main"
    root.mkdir(parents=True, exist_ok=True)
    link = root / FILE
    if not link.exists():
        link.symlink_to(blob)
    directives = {
        "sendfile": "sendfile on; tcp_nopush on;",
        "buffers-1m": "sendfile off; output_buffers 2 1m;",
        "buffers-8m": "sendfile off; output_buffers 4 8m;",
    }[variant]
    conf = work / f"nginx-{variant}.conf"
    conf.write_text(f"""
user root;
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type application/octet-stream;
    {directives}
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {work}/nginx-root;
    }}
}}
""")
    (work / "nginx-tmp").mkdir(exist_ok=True)
    return conf


@dataclass
class Server:
    result: Result
    proc: Proc
    url: str
    head: bool = True  # nginx variants other than the best skip the HEAD rounds


def run(args: argparse.Namespace) -> list[Result]:
    """Start every server at once, then measure them round-robin, so load changes hit all alike."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * 1024 * 1024
    store_dir, blob = make_store(work, size)
    hubpin = shutil.which("hubpin", path=str(Path(sys.executable).parent)) or "hubpin"
    servers: list[Server] = []

    def hubpin_server(server: str) -> Server:
        port = free_port()
        proc = Proc([hubpin, "serve", "--store", str(store_dir), "--port", str(port), "--server", server],
                    work / f"hubpin-{server}.log")
        return Server(Result(f"hubpin serve ({server})"), proc, f"http://127.0.0.1:{port}{URL_PATH}")

    try:
        for server in ("granian", "uvicorn"):
            servers.append(hubpin_server(server))
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx:
            for variant in ("sendfile", "buffers-1m", "buffers-8m"):
                port = free_port()
                conf = nginx_conf(work, port, blob, variant)
                proc = Proc([nginx, "-c", str(conf), "-p", str(work)], work / f"nginx-{variant}.log")
                servers.append(Server(Result(f"nginx 1.22 ({variant})"), proc, f"http://127.0.0.1:{port}{URL_PATH}"))
        else:
            print("  nginx not installed: skipped", file=sys.stderr)
        olah = Path(args.olah)
        if olah.exists():
            servers.append(start_olah(olah, work, servers[0], size))
        else:
            print(f"  olah not found at {olah}: skipped", file=sys.stderr)
        for s in servers:
            wait_ready(s.url, s.proc)
            curl_mb_s(s.url, size)  # warm the page cache and the server
        for i in range(args.repeats):
            for s in servers:
                s.result.mb_s.append(curl_mb_s(s.url, size))
                s.proc.sample()
            print(f"  round {i + 1}: " + ", ".join(f"{s.result.name} {s.result.mb_s[-1]:.0f}" for s in servers),
                  file=sys.stderr)
        variants = [s for s in servers if s.result.name.startswith("nginx")]
        if variants:
            best = max(variants, key=lambda s: s.result.mb_s_median)
            best.result.note = "best of: " + ", ".join(
                f"{v.result.name.split('(')[1].rstrip(')')} {v.result.mb_s_median:.0f} MB/s" for v in variants)
            for v in variants:
                v.head = v is best
        for _ in range(args.repeats):
            for s in servers:
                if s.head:
                    s.result.head_rps.append(head_rps(s.url, args.head_seconds))
                    s.proc.sample()
    finally:
        for s in servers:
            s.proc.stop()
    out = []
    for s in servers:
        if s.head:  # drop the slower nginx variants from the table (kept in the note)
            s.result.rss_total_mib = s.proc.rss_mib
            s.result.rss_max_mib = s.proc.rss_max_mib
            out.append(s.result)
    return out


def start_olah(olah: Path, work: Path, upstream: Server, size: int) -> Server:
    """olah in front of hubpin until its cache holds the file, then restarted offline on its cache alone."""
    wait_ready(upstream.url, upstream.proc)
    up_netloc = upstream.url.split("/")[2]
    repos = work / "olah-repos"
    shutil.rmtree(repos, ignore_errors=True)
    port = free_port()

    def conf(offline: bool) -> Path:
        p = work / f"olah-{'offline' if offline else 'proxy'}.toml"
        p.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nhf-scheme = "http"\nhf-netloc = "{up_netloc}"\n'
                     f'hf-lfs-netloc = "{up_netloc}"\nrepos-path = "{repos}"\n\n[accessibility]\n'
                     f"offline = {'true' if offline else 'false'}\n")
        return p

    url = f"http://127.0.0.1:{port}{URL_PATH}"
    warm = Proc([str(olah), "-c", str(conf(False))], work / "olah-proxy.log")
    wait_ready(url, warm)
    curl_mb_s(url, size)  # fills olah's cache from hubpin
    warm.stop()
    proc = Proc([str(olah), "-c", str(conf(True))], work / "olah-offline.log")
    r = Result("olah 0.5.4 (offline, own cache)",
               note="cache filled through its proxy mode in front of hubpin, then restarted with offline = true")
    return Server(r, proc, url)


def report(results: list[Result], args: argparse.Namespace) -> str:
    ref = next((r for r in results if r.name.startswith("nginx")), None)
    lines = [
        f"| server | MB/s (median of {args.repeats}) | runs | × nginx | HEAD req/s (ab -k -c8) | × nginx | peak RSS MiB (tree / largest proc) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.mb_s_median / ref.mb_s_median:.2f}" if ref and ref.mb_s_median else "-"
        hratio = f"{r.head_median / ref.head_median:.2f}" if ref and ref.head_median else "-"
        runs = ", ".join(f"{x:.0f}" for x in r.mb_s)
        lines.append(f"| {r.name} | {r.mb_s_median:.0f} | {runs} | {ratio} | {r.head_median:.0f} | {hratio} | "
                     f"{r.rss_total_mib:.0f} / {r.rss_max_mib:.0f} |")
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    return "\n".join(lines + [""] + notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--head-seconds", type=int, default=5)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "hubpin-serve-bench"))
    ap.add_argument("--olah", default="/tmp/olah-venv/bin/olah-cli")
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {os.cpu_count()} cores, "
          f"load before {load[0]:.2f}", file=sys.stderr)
    results = run(args)
    print(report(results, args))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=1))


if __name__ == "__main__":
    main()
