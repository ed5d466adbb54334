"""Range requests: 206 with the right bytes, 416 past the end, and HfFileSystem reads."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from _server_helpers import unique_repo, write_folder
from huggingface_hub import HfFileSystem


@pytest.fixture(scope="module")
def blob_repo(hub, tmp_path_factory):
    data = os.urandom(2 * 1024 * 1024 + 123)  # several server chunks, odd size
    repo_id = unique_repo("srv/ranges")
    hub.publish(write_folder(tmp_path_factory.mktemp("r"), {"blob.bin": data, "small.txt": b"0123456789"}), repo_id)
    return repo_id, data


def test_range_206_and_416(hub, blob_repo):
    repo_id, data = blob_repo
    url = f"{hub.url}/{repo_id}/resolve/main/blob.bin"
    size = len(data)
    for header, (start, end) in {
        "bytes=0-0": (0, 1),
        "bytes=100-199": (100, 200),
        f"bytes={size - 10}-": (size - 10, size),
        "bytes=-7": (size - 7, size),
        f"bytes=1000-{size + 50}": (1000, size),  # an end past EOF is clamped
    }.items():
        r = httpx.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert r.headers["content-length"] == str(end - start)
        assert r.content == data[start:end], header
        assert r.headers["x-repo-commit"] and r.headers["etag"]
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}"):
        r = httpx.get(url, headers={"Range": header})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
        assert r.headers["x-error-code"] == "RangeNotSatisfiable"
    r = httpx.get(url, headers={"Range": "bytes=abc"})
    assert r.status_code == 400 and r.headers["x-error-code"]
    full = httpx.get(url)
    assert full.status_code == 200 and hashlib.sha256(full.content).digest() == hashlib.sha256(data).digest()


def test_hf_filesystem_ranged_reads(hub, blob_repo):
    repo_id, data = blob_repo
    fs = HfFileSystem(block_size=64 * 1024)
    assert fs.info(f"{repo_id}/blob.bin")["size"] == len(data)
    with fs.open(f"{repo_id}/blob.bin", "rb") as f:
        f.seek(1_000_000)
        assert f.read(70_000) == data[1_000_000:1_070_000]
        f.seek(len(data) - 50)
        assert f.read() == data[-50:]
    assert fs.cat_file(f"{repo_id}/blob.bin", start=5, end=77) == data[5:77]
    assert fs.read_text(f"{repo_id}/small.txt") == "0123456789"
    # streaming mode (block_size=0) reads with open-ended ranges
    with fs.open(f"{repo_id}/blob.bin", "rb", block_size=0) as f:
        assert f.read(10) == data[:10]
    assert sorted(fs.ls(repo_id, detail=False)) == sorted([f"{repo_id}/blob.bin", f"{repo_id}/small.txt"])


def test_streamed_path_for_stores_without_local_files(hub, blob_repo):
    """Stores with no filesystem path (S3) stream `read_blob` chunks: same bytes, 206, 416, HEAD."""
    from hubpin.server._source import Source
    from hubpin.server.app import create_app
    from hubpin.server.config import ServerConfig
    from hubpin.server.runner import serve_in_thread

    class Remote(Source):
        def local_path(self, repo, commit, entry):
            return None  # force the streaming branch

    repo_id, data = blob_repo
    with serve_in_thread(create_app(hub.store, ServerConfig(source=Remote(hub.store)))) as url:
        u = f"{url}/{repo_id}/resolve/main/blob.bin"
        r = httpx.get(u)
        assert r.status_code == 200 and r.content == data and r.headers["content-length"] == str(len(data))
        r = httpx.get(u, headers={"Range": "bytes=1048570-1048590"})
        assert r.status_code == 206 and r.content == data[1048570:1048591]
        assert r.headers["content-range"] == f"bytes 1048570-1048590/{len(data)}"
        h = httpx.head(u)
        assert h.status_code == 200 and h.headers["content-length"] == str(len(data)) and h.content == b""
        assert httpx.get(u, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
