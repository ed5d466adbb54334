"""Hostile request paths (security.md §5 case 20): 400/404 with X-Error-Code, never outside bytes."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
from _server_helpers import write_folder

from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.server.app import create_app
from hubpin.server.runner import serve_in_thread
from hubpin.store import LocalStore

SECRET = b"TOP-SECRET-7f3a9c"


def raw_request(base: str, target: str, method: str = "GET", body: bytes = b"", headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """Send `target` byte for byte (no client-side normalisation of `..` or `%2e`)."""
    u = urlsplit(base)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, hdrs, payload


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "secret.txt").write_bytes(SECRET)
    store_dir = root / "store"
    store = LocalStore(store_dir, fsync=False)
    sha = publish(write_folder(root / "src", {"config.json": b"{}", "d/f.txt": b"ok"}), RepoKey("model", "org/victim"), store).commit.sha
    (store_dir / "models--org--victim" / "secret.txt").write_bytes(SECRET)  # inside the repo folder, outside blobs
    # a planted link in a plain-HF-cache repo (no .hubpin record, no trees/): must not be followed out
    plain = store_dir / "models--org--plain"
    snap = plain / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (plain / "refs").mkdir()
    (plain / "refs" / "main").write_text("a" * 40)
    (snap / "evil.txt").symlink_to("../../../../secret.txt")
    (snap / "abs.txt").symlink_to(root / "secret.txt")
    with serve_in_thread(create_app(store)) as url:
        yield url, sha, root


HOSTILE = [
    "/org/victim/resolve/main/../../secret.txt",
    "/org/victim/resolve/main/../../../secret.txt",
    "/org/victim/resolve/main/%2e%2e/%2e%2e/secret.txt",
    "/org/victim/resolve/main/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "/org/victim/resolve/main/%252e%252e%252f%252e%252e%252fsecret.txt",
    "/org/victim/resolve/main/config.json%2f..%2f..%2f..%2fsecret.txt",
    "/org/victim/resolve/main/config.json%00",
    "/org/victim/resolve/main/%00",
    "/org/victim/resolve/main/..%5c..%5csecret.txt",
    "/org/victim/resolve/main/\\..\\..\\secret.txt",
    "/org/victim/resolve/main//etc/passwd",
    "/org/victim/resolve/main/%2fetc%2fpasswd",
    "/org/victim/resolve/main/C:%5csecret.txt",
    "/org/victim/resolve/main/d/./f.txt",
    "/org/victim/resolve/..%2f..%2fsecret.txt/config.json",
    "/org/victim/resolve/%2e%2e/config.json",
    "/org/victim/resolve/refs/../../config.json",
    "/org/%2e%2e/resolve/main/secret.txt",
    "/org/..%2fvictim/resolve/main/config.json",
    "/..%2f..%2fsecret.txt/resolve/main/x",
    "/datasets/../org/victim/resolve/main/config.json",
    "/../../secret.txt",
    "/org/victim/resolve/main/" + "a/" * 700 + "x",
    "/org/victim/resolve/main/" + "x" * 300,
    "/org/victim/resolve/main/" + "%2e%2e%2f" * 1200 + "secret.txt",
    "/api/models/org/victim/tree/main/..%2f..",
    "/api/models/org/victim/tree/..%2f../x",
    "/api/models/..%2f..%2fsecret/tree/main",
    "/api/models/org/victim/revision/..%2f..%2fsecret.txt",
    "/api/models/org/plain/tree/" + "a" * 40 + "/..%2f..",
    "/org/plain/resolve/main/evil.txt",
    "/org/plain/resolve/main/abs.txt",
]


@pytest.mark.parametrize("target", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_paths_never_leave_the_store(victim, target):
    url, _sha, _root = victim
    status, headers, body = raw_request(url, target)
    assert status in (400, 404), (target, status)
    assert headers.get("x-error-code"), target
    assert SECRET not in body and b"root:" not in body


def test_hostile_paths_info_and_valid_requests_still_work(victim):
    url, sha, _root = victim
    form = b"paths=..%2F..%2Fsecret.txt&paths=config.json"
    status, headers, body = raw_request(
        url, "/api/models/org/victim/paths-info/main", "POST", form, "Content-Type: application/x-www-form-urlencoded\r\n"
    )
    assert status == 400 and headers["x-error-code"] == "BadRequest" and SECRET not in body
    status, headers, body = raw_request(url, "/org/victim/resolve/main/d/f.txt")
    assert status == 200 and body == b"ok" and headers["x-repo-commit"] == sha
    # the plain-cache repo lists nothing that points outside blobs/
    status, _, body = raw_request(url, "/api/models/org/plain/tree/main?recursive=true")
    assert status == 200 and body == b"[]"


def test_the_secrets_really_sit_around_the_store(victim):
    """Guard against a vacuous pass: the planted files exist and the links do resolve to them."""
    _url, _sha, root = victim
    assert (root / "secret.txt").read_bytes() == SECRET
    snap = root / "store" / "models--org--plain" / "snapshots" / ("a" * 40)
    assert (snap / "evil.txt").read_bytes() == SECRET and (snap / "abs.txt").read_bytes() == SECRET
