"""What the benchmark scripts share: ports, server processes with peak-RSS sampling, readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

REPO, FILE = "bench/big", "big.bin"
URL_PATH = f"/{REPO}/resolve/main/{FILE}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants (threads' children included)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def status_kib(pid: int, key: str) -> int:
    """A `/proc/<pid>/status` field in KiB (e.g. VmHWM, the peak RSS); 0 once the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Proc:
    """A server process in its own session; tracks peak RSS (VmHWM) over its process tree."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.f = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(argv, stdout=self.f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                  start_new_session=True)
        self.hwm: dict[int, int] = {}

    def sample(self) -> None:
        for pid in tree_pids(self.p.pid):
            self.hwm[pid] = max(self.hwm.get(pid, 0), status_kib(pid, "VmHWM"))

    @property
    def rss_mib(self) -> float:
        return sum(self.hwm.values()) / 1024

    @property
    def rss_max_mib(self) -> float:
        return max(self.hwm.values(), default=0) / 1024

    def stop(self) -> None:
        self.sample()
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.f.close()


def wait_ready(url: str, proc: Proc, timeout: float = 60) -> None:
    """Until `HEAD url` answers 200; fails early with the log if the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"server exited: {proc.log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.head(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready; log: {proc.log.read_text(errors='replace')[-2000:]}")


def wait_healthz(url: str, timeout: float = 30) -> None:
    """Until `GET url/healthz` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("server did not start")
