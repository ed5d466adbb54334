"""Slow and greedy clients (security.md §5 cases 21, 22): slowloris, per-IP caps, slow readers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _ops_helpers import mirror_app, new_store, publish_files, serve

from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.server._limits import Limits
from hubpin.server.runner import free_port


def _open_slow(port: int, n: int, source: str) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(source, 0))
        s.setblocking(False)
        socks.append(s)
    return socks


def _alive(s: socket.socket) -> bool:
    """False once the server closed or reset the connection."""
    try:
        s.send(b"X")  # one more header byte, trickled
        return s.recv(1) == b"" and False
    except BlockingIOError:
        return True  # nothing to read: still open
    except OSError:
        return False


def test_slowloris_is_cut_by_the_header_deadline_and_the_ip_cap(tmp_path):
    store = new_store(tmp_path / "store")
    publish_files(store, tmp_path, "org/m", {"config.json": b"{}"})
    limits = Limits(header_timeout=2.0, max_conns_per_ip=50)
    with serve(mirror_app(store), limits=limits) as url:
        port = int(url.rsplit(":", 1)[1])
        t0 = time.monotonic()
        slow = _open_slow(port, 200, "127.0.0.2")  # an attacker on another loopback address
        for s in slow:
            with contextlib.suppress(OSError):
                s.send(b"GET /org/m/resolve/main/config.json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        alive_counts = []
        ok = 0
        with httpx.Client(base_url=url, timeout=5) as legit:  # legitimate clients on 127.0.0.1
            while time.monotonic() - t0 < 3.5:  # bounded: the deadline is 2 s
                r = legit.get("/org/m/resolve/main/config.json")
                assert r.status_code == 200 and r.content == b"{}"
                ok += 1
                alive_counts.append((time.monotonic() - t0, sum(_alive(s) for s in slow)))
                time.sleep(0.25)
        for s in slow:
            s.close()
    assert ok >= 10
    early = [n for t, n in alive_counts if t < 1.5]
    late = [n for t, n in alive_counts if t > 3.0]
    assert early and max(early) <= 50  # the per-IP cap refused the other 150 at once
    assert max(early) >= 40  # ... and the capped ones stayed open until the deadline
    assert late and max(late) == 0  # every trickling connection was closed by the header deadline


def test_request_body_deadline_answers_408(tmp_path):
    store = new_store(tmp_path / "store")
    publish_files(store, tmp_path, "org/m", {"config.json": b"{}"})
    with serve(mirror_app(store, limits=Limits(request_timeout=1.0))) as url:
        port = int(url.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        t0 = time.monotonic()
        # paths-info reads its form body; this one promises 100 bytes and sends 6
        s.sendall(b"POST /api/models/org/m/paths-info/main HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\npaths=")
        reply = s.recv(4096)
        elapsed = time.monotonic() - t0
        s.close()
    assert reply.startswith(b"HTTP/1.1 408") and b"x-error-code: RequestTimeout" in reply.lower().replace(
        b"requesttimeout", b"RequestTimeout")
    assert 0.9 < elapsed < 3


_SERVER = """
import sys, uvicorn
from hubpin.store import LocalStore
from hubpin.server.app import create_app
from hubpin.server._ops import production_config
from hubpin.server._limits import Limits, uvicorn_config
store = LocalStore(sys.argv[1], fsync=False)
limits = Limits(send_timeout=float(sys.argv[3]))
app = create_app(store, production_config(store, limits=limits, access_log=False))
uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=int(sys.argv[2]), limits=limits, log_level="warning",
                              lifespan="off")).run()
"""


def _active(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("hubpin_active_requests ")))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_slow_reader_keeps_server_memory_flat_and_is_cut_by_the_send_deadline(tmp_path):
    size = 96 * 1024 * 1024
    src = tmp_path / "big"
    src.mkdir()
    with open(src / "big.bin", "wb") as f:
        f.truncate(size)
    store = new_store(tmp_path / "store")
    sha = publish(src, RepoKey("model", "org/big"), store).commit.sha
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(tmp_path / "store"), str(port), "2"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.1)
        base = _rss_kib(proc.pid)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET /org/big/resolve/{sha}/big.bin HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got, peak, served_at, cut_at = 0, base, None, None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:  # crawl: 1 KiB every 0.25 s
            try:
                chunk = s.recv(1024)
            except OSError:
                chunk = b""
            if not chunk:
                break
            got += len(chunk)
            peak = max(peak, _rss_kib(proc.pid))
            active = _active(port)
            if active and served_at is None:
                served_at = time.monotonic() - t0
            if not active and served_at is not None and cut_at is None:
                cut_at = time.monotonic() - t0  # the server dropped the response: send deadline
                break
            time.sleep(0.25)
        s.close()
        assert got < size // 4
        assert peak - base < 24 * 1024, f"server RSS grew by {(peak - base) // 1024} MiB for a slow reader"
        # the send deadline (2 s without progress) ended the response while the client still crawled
        assert served_at is not None and cut_at is not None and cut_at < 7
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_per_ip_limit_option_reaches_both_layers(tmp_path):
    from hubpin.server._limits import LimitsMiddleware, uvicorn_config
    from hubpin.server._ops import production_config
    from hubpin.server.app import create_app

    store = new_store(tmp_path / "store")
    app = create_app(store, production_config(store, per_ip=0, access_log=False))
    proto = uvicorn_config(app, host="127.0.0.1", port=1).http
    assert proto.limits.max_conns_per_ip == 0 and proto.limits.max_requests_per_ip == 0
    mw = next(m for m in app.state.config.middleware if m.cls is LimitsMiddleware)
    assert mw.kwargs["limits"].max_requests_per_ip == 0
    res = __import__("harness").run_cli("serve", "--store", str(tmp_path / "store"), "--per-ip-limit", "-1")
    assert res.returncode == 2 and "--per-ip-limit" in res.stderr
