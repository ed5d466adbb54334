"""16 concurrent clients each fetching one 256 MiB file: hubpin serve vs nginx, same run, loopback.

    python bench/concurrent_bench.py [--size-mib 256] [--clients 16] [--repeats 3]

Servers (each over the same bytes, the file in the page cache):
  hubpin serve --server granian   (the default; zero-copy pathsend)
  hubpin serve --server uvicorn   (guarded h11 protocol)
  nginx (Debian) in its best config: sendfile on, and sendfile off + output_buffers 4 1m
Clients: N parallel `curl -o /dev/null` processes started together. Figure: aggregate MB/s =
N × size / wall time of the slowest; median of --repeats, servers measured round-robin. RSS = VmHWM summed over the server's
process tree. Needs nginx and curl. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import FILE, REPO, URL_PATH, Proc, free_port, wait_ready


def make_store(work: Path, size: int) -> Path:
    """A hubpin store holding REPO with one incompressible file of `size` bytes."""
    src = work / "src"
    src.mkdir(parents=True, exist_ok=True)
    data = src / FILE
    if not data.exists() or data.stat().st_size != size:
        with open(data, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(size >> 20):
                f.write(block)
    store = work / f"store-{size >> 20}mib"  # one store per size: a rerun with another size never mixes them
    if not (store / "models--bench--big").exists():
        exe = shutil.which("hubpin", path=str(Path(sys.executable).parent)) or "hubpin"
        subprocess.run([exe, "publish", str(src), REPO, "--store", str(store)], check=True, capture_output=True)
    return store


def hubpin_argv(server: str, store: Path, port: int, *extra: str) -> list[str]:
    exe = shutil.which("hubpin", path=str(Path(sys.executable).parent)) or "hubpin"
    return [exe, "serve", "--store", str(store), "--port", str(port), "--server", server, *extra]


def parallel_curl(url: str, clients: int, size: int, proc: Proc) -> float:
    """Aggregate MB/s of `clients` simultaneous full downloads."""
    t0 = time.monotonic()
    ps = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
                           stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    while any(p.poll() is None for p in ps):
        proc.sample()
        time.sleep(0.05)
    wall = time.monotonic() - t0
    for p in ps:
        code, got = p.communicate()[0].split()
        if code != "200" or int(got) != size:
            raise RuntimeError(f"bad download from {url}: {code} {got}")
    return clients * size / wall / 1e6


@dataclass
class Result:
    name: str
    mb_s: list[float] = field(default_factory=list)
    rss_mib: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.mb_s)


def nginx_conf(work: Path, root: Path, port: int, sendfile: bool) -> Path:
    conf = work / f"nginx-{port}.conf"
    buffers = "" if sendfile else "output_buffers 4 1m;"
    conf.write_text(f"""
daemon off; worker_processes 2; pid {work}/nginx-{port}.pid; error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile {'on' if sendfile else 'off'}; tcp_nopush on; {buffers}
  client_body_temp_path {work}/nb; proxy_temp_path {work}/np; fastcgi_temp_path {work}/nf;
  uwsgi_temp_path {work}/nu; scgi_temp_path {work}/ns;
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ default_type application/octet-stream; }} }}
}}
""")
    return conf


def run(args: argparse.Namespace) -> list[Result]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mib << 20
    store = make_store(work, size)
    # nginx serves the very same blob, at the same URL path
    www = work / "www"
    target = www / REPO / "resolve" / "main"
    target.mkdir(parents=True, exist_ok=True)
    blob = next((store / "models--bench--big" / "blobs").iterdir())
    with contextlib.suppress(FileNotFoundError):
        (target / FILE).unlink()
    os.link(blob, target / FILE)

    servers: list[tuple[str, list[str]]] = []
    for server in ("granian", "uvicorn"):
        servers.append((f"hubpin serve ({server})", ["hubpin", server]))
    if shutil.which("nginx"):
        servers.append(("nginx (sendfile on)", ["nginx", "on"]))
        servers.append(("nginx (sendfile off, output_buffers 4 1m)", ["nginx", "off"]))
    else:
        print("nginx not found: skipped (apt-get install -y nginx-light)", file=sys.stderr)
    results = {name: Result(name) for name, _ in servers}
    for _ in range(args.repeats):  # round-robin, so a change in the machine's load hits every server alike
        for name, spec in servers:
            res = results[name]
            port = free_port()
            if spec[0] == "hubpin":
                proc = Proc(hubpin_argv(spec[1], store, port), work / "hubpin.log")
            else:
                conf = nginx_conf(work, www, port, spec[1] == "on")
                proc = Proc(["nginx", "-c", str(conf), "-e", str(work / "nginx-error.log")], work / "nginx.log")
            url = f"http://127.0.0.1:{port}{URL_PATH}"
            try:
                wait_ready(url, proc)
                subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True)  # warm the page cache
                res.mb_s.append(parallel_curl(url, args.clients, size, proc))
            finally:
                proc.stop()
            res.rss_mib = max(res.rss_mib, proc.rss_mib)
            print(f"  {name}: {res.mb_s[-1]:.0f} MB/s aggregate, peak RSS {proc.rss_mib:.0f} MiB", file=sys.stderr)
    return list(results.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "hubpin-concurrent-bench"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()
    results = run(args)
    best_nginx = max((r for r in results if r.name.startswith("nginx")), key=lambda r: r.median, default=None)
    print(f"\n{args.clients} clients x {args.size_mib} MiB, median of {args.repeats}; "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| server | aggregate MB/s | vs best nginx | peak RSS (MiB) |\n|---|---|---|---|")
    for r in results:
        ratio = f"{r.median / best_nginx.median:.2f}x" if best_nginx else "-"
        print(f"| {r.name} | {r.median:.0f} ({', '.join(f'{x:.0f}' for x in r.mb_s)}) | {ratio} | {r.rss_mib:.0f} |")
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=1))


if __name__ == "__main__":
    main()
