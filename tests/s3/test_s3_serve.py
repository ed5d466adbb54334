"""Unmodified huggingface_hub against `create_app(S3Store(...))` over a real SeaweedFS bucket.

The session HF_ENDPOINT points at the session hub, so every call here passes `endpoint=`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.server.app import create_app
from hubpin.server.runner import serve_in_thread
from hubpin.store.s3 import S3Store

pytestmark = pytest.mark.s3

REPO = "org/s3-tiny"
DS = "org/s3-ds"


def _write_folder(root: Path, version: int) -> Path:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(f'{{"model_type": "bert", "version": {version}}}\n')
    (root / "sub" / "vocab.txt").write_text("[PAD]\n[UNK]\n東京\n")
    (root / "model.safetensors").write_bytes(hashlib.sha256(b"weights").digest() * 4000)  # 128 KB, LFS
    return root


@dataclass
class Published:
    prefix: str
    first: str
    second: str
    ds: str
    folder: Path


@pytest.fixture(scope="module")
def published(s3_server, tmp_path_factory) -> Published:
    store = s3_server.store()
    root = tmp_path_factory.mktemp("s3-serve")
    folder = _write_folder(root / "src", 1)
    repo = RepoKey("model", REPO)
    first = publish(folder, repo, store).commit.sha
    store.set_ref(repo, "v1.0", first)
    (folder / "config.json").write_text('{"model_type": "bert", "version": 2}\n')
    second = publish(folder, repo, store).commit.sha
    ds_dir = root / "ds"
    ds_dir.mkdir()
    (ds_dir / "data.csv").write_text("text,label\nhello,1\n")
    ds = publish(ds_dir, RepoKey("dataset", DS), store).commit.sha
    return Published(store.prefix, first, second, ds, folder)


@pytest.fixture(scope="module")
def mirror(s3_server, published) -> Iterator[str]:
    store = S3Store(s3_server.bucket, published.prefix, client=s3_server.client)
    with serve_in_thread(create_app(store)) as url:
        yield url


def test_hf_hub_download_by_branch_tag_and_sha(mirror, published, cache_dir):
    p = hf_hub_download(REPO, "config.json", endpoint=mirror, cache_dir=cache_dir)
    assert '"version": 2' in Path(p).read_text()
    assert f"snapshots/{published.second}/" in p
    p1 = hf_hub_download(REPO, "config.json", revision="v1.0", endpoint=mirror, cache_dir=cache_dir)
    assert '"version": 1' in Path(p1).read_text()
    p2 = hf_hub_download(REPO, "sub/vocab.txt", revision=published.first, endpoint=mirror, cache_dir=cache_dir)
    assert Path(p2).read_text(encoding="utf-8") == "[PAD]\n[UNK]\n東京\n"
    lfs = hf_hub_download(REPO, "model.safetensors", endpoint=mirror, cache_dir=cache_dir)
    data = Path(lfs).read_bytes()
    # the cache blob is named by the sha256 (LFS etag), exactly as from the Hub
    assert Path(lfs).resolve().name == hashlib.sha256(data).hexdigest()
    assert data == (published.folder / "model.safetensors").read_bytes()
    refs = (cache_dir / "models--org--s3-tiny" / "refs" / "main").read_bytes()
    assert refs == published.second.encode()


def test_snapshot_download_and_dataset(mirror, published, cache_dir):
    snap = Path(snapshot_download(REPO, endpoint=mirror, cache_dir=cache_dir))
    assert sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()) == [
        "config.json", "model.safetensors", "sub/vocab.txt",
    ]  # fmt: skip
    assert snap.name == published.second
    d = hf_hub_download(DS, "data.csv", repo_type="dataset", endpoint=mirror, cache_dir=cache_dir)
    assert Path(d).read_text() == "text,label\nhello,1\n"


def test_hfapi_info_files_and_refs(mirror, published):
    api = HfApi(endpoint=mirror)
    assert api.model_info(REPO).sha == published.second
    assert api.model_info(REPO, revision="v1.0").sha == published.first
    assert sorted(api.list_repo_files(REPO)) == ["config.json", "model.safetensors", "sub/vocab.txt"]
    refs = api.list_repo_refs(REPO)
    # the store keeps refs as the HF cache does (refs/<name>), without branch/tag kinds
    named = {r.name: r.target_commit for r in [*refs.branches, *refs.tags]}
    assert named == {"main": published.second, "v1.0": published.first}
    assert api.dataset_info(DS).sha == published.ds


def test_hffilesystem_ranged_read(mirror, published):
    fs = HfFileSystem(endpoint=mirror, skip_instance_cache=True)
    want = (published.folder / "model.safetensors").read_bytes()
    with fs.open(f"{REPO}/model.safetensors", "rb", block_size=4096) as f:
        f.seek(50_000)
        assert f.read(1000) == want[50_000:51_000]
    assert fs.info(f"{REPO}/model.safetensors")["size"] == len(want)


def test_missing_repo_revision_and_file(mirror, cache_dir):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/absent", "config.json", endpoint=mirror, cache_dir=cache_dir)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch", endpoint=mirror, cache_dir=cache_dir)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "absent.bin", endpoint=mirror, cache_dir=cache_dir)
    r = httpx.get(f"{mirror}/{REPO}/resolve/main/absent.bin")
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"


def test_two_replicas_over_one_bucket_serve_a_publish_at_once(s3_server, tmp_path, cache_dir):
    prefix = "replicas-" + os.urandom(4).hex()
    a = S3Store(s3_server.bucket, prefix, client=s3_server.client)
    b = S3Store(s3_server.bucket, prefix, client=s3_server.client)
    publisher = S3Store(s3_server.bucket, prefix, client=s3_server.client)
    repo = RepoKey("model", "org/replicated")
    folder = _write_folder(tmp_path / "src", 1)
    with serve_in_thread(create_app(a)) as url_a, serve_in_thread(create_app(b)) as url_b:
        for url in (url_a, url_b):
            assert httpx.head(f"{url}/org/replicated/resolve/main/config.json").status_code == 404
        sha1 = publish(folder, repo, publisher).commit.sha
        for url in (url_a, url_b):  # no restart, no cache to expire
            r = httpx.head(f"{url}/org/replicated/resolve/main/config.json")
            assert r.status_code == 200 and r.headers["x-repo-commit"] == sha1
        (folder / "config.json").write_text('{"model_type": "bert", "version": 9}\n')
        sha2 = publish(folder, repo, publisher).commit.sha
        for url in (url_a, url_b):
            p = hf_hub_download("org/replicated", "config.json", endpoint=url, cache_dir=cache_dir / url[-5:])
            assert '"version": 9' in Path(p).read_text() and f"/{sha2}/" in p


def test_redirect_mode_sends_clients_to_s3_with_metadata_on_the_302(s3_server, published, cache_dir):
    from hubpin.server._source import Source
    from hubpin.server.config import ServerConfig

    store = S3Store(s3_server.bucket, published.prefix, client=s3_server.client)
    app = create_app(store, ServerConfig(source=Source(store, redirect_expires=600)))
    want = (published.folder / "model.safetensors").read_bytes()
    with serve_in_thread(app) as url:
        r = httpx.head(f"{url}/{REPO}/resolve/main/model.safetensors")
        assert r.status_code == 302
        assert r.headers["location"].startswith(f"{s3_server.endpoint}/{s3_server.bucket}/{published.prefix}/")
        assert r.headers["x-repo-commit"] == published.second
        assert r.headers["x-linked-size"] == str(len(want))
        assert r.headers["x-linked-etag"] == f'"{hashlib.sha256(want).hexdigest()}"'
        small = httpx.head(f"{url}/{REPO}/resolve/main/config.json")
        assert small.status_code == 302 and small.headers["x-linked-size"] == str(len(b'{"model_type": "bert", "version": 2}\n'))
        # a plain redirect-following GET (curl -L) gets the bytes, Range passed through to S3
        g = httpx.get(f"{url}/{REPO}/resolve/main/model.safetensors", headers={"Range": "bytes=10-19"},
                      follow_redirects=True)
        assert g.status_code == 206 and g.content == want[10:20]
        # unmodified huggingface_hub: HEAD stops at the cross-origin 302 (other port) and reads the
        # metadata there; the GET goes to S3 (the client drops the token; AWS would refuse two auths)
        p = hf_hub_download(REPO, "model.safetensors", endpoint=url, cache_dir=cache_dir, token="hf_not_for_s3")
        assert Path(p).read_bytes() == want and Path(p).resolve().name == hashlib.sha256(want).hexdigest()
        snap = Path(snapshot_download(REPO, revision="v1.0", endpoint=url, cache_dir=cache_dir))
        assert '"version": 1' in (snap / "config.json").read_text()
        assert (snap / "sub" / "vocab.txt").read_text(encoding="utf-8") == "[PAD]\n[UNK]\n東京\n"
        # missing things are still answered by the mirror itself, with X-Error-Code
        miss = httpx.head(f"{url}/{REPO}/resolve/main/absent.bin")
        assert miss.status_code == 404 and miss.headers["x-error-code"] == "EntryNotFound"


@pytest.mark.slow
def test_hubpin_serve_cli_over_s3_url_with_redirect(s3_server, published, cache_dir, tmp_path):
    import subprocess
    import sys
    import time

    from hubpin.server.runner import free_port

    url_store = f"s3://{s3_server.bucket}/{published.prefix}"
    r = s3_server.cli("serve", "--store", str(tmp_path), "--redirect", "--port", str(free_port()))
    assert r.returncode == 2 and r.stderr.startswith("error: --redirect needs")
    r = s3_server.cli("serve", "--store", f"s3://no-such-bucket-hubpin/{published.prefix}", "--port", str(free_port()))
    assert r.returncode == 3 and r.stderr.startswith("error: s3://no-such-bucket-hubpin/"), r.stderr
    assert "hint: create the bucket" in r.stderr
    port = free_port()
    exe = str(Path(sys.executable).parent / "hubpin")
    proc = subprocess.Popen([exe, "serve", "--store", url_store, "--redirect", "--port", str(port)],
                            env={**os.environ, **s3_server.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        head = httpx.head(f"{url}/{REPO}/resolve/main/model.safetensors")
        assert head.status_code == 302 and head.headers["location"].startswith(s3_server.endpoint)
        p = hf_hub_download(REPO, "model.safetensors", endpoint=url, cache_dir=cache_dir)
        assert Path(p).read_bytes() == (published.folder / "model.safetensors").read_bytes()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pull_through_fills_the_s3_store_for_every_replica(s3_server, hub, tmp_path, cache_dir):
    from hubpin.server.config import ServerConfig
    from hubpin.server.proxy import MirrorSource, Upstream

    repo_id = "org/s3-pull-" + os.urandom(4).hex()  # the session hub is shared
    folder = _write_folder(tmp_path / "src", 3)
    sha = hub.publish(folder, repo_id)
    prefix = "pull-" + os.urandom(4).hex()
    store = S3Store(s3_server.bucket, prefix, client=s3_server.client)
    upstream = Upstream(hub.url)
    source = MirrorSource(store, upstream=upstream, spool_dir=tmp_path / "spool")
    try:
        with serve_in_thread(create_app(store, ServerConfig(source=source))) as url:
            snap = Path(snapshot_download(repo_id, endpoint=url, cache_dir=cache_dir))
            assert snap.name == sha
            assert (snap / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    finally:
        upstream.close()
    # everything landed in the bucket, verified: a plain replica without upstream serves it
    repo = RepoKey("model", repo_id)
    assert store.get_ref(repo, "main") == sha
    assert all(store.has_blob(repo, f.etag) for f in store.get_commit(repo, sha).files)
    other = S3Store(s3_server.bucket, prefix, client=s3_server.client)
    with serve_in_thread(create_app(other)) as url:
        p = hf_hub_download(repo_id, "config.json", endpoint=url, cache_dir=cache_dir / "2")
        assert '"version": 3' in Path(p).read_text()
