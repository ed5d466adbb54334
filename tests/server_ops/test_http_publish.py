"""`hubpin publish DIR REPO --to URL`: write-scoped tokens, verified blobs, deterministic commits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
from _ops_helpers import mirror_app, new_store, serve, store_files, write_folder
from huggingface_hub import hf_hub_download

from harness import run_cli
from hubpin.hashing import git_blob_id
from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.tokens import create_token


def test_publish_to_a_mirror_over_http(tmp_path):
    store = new_store(tmp_path / "store")
    writer, _ = create_token(store, "ci", read=["*"], write=["team/*"])
    reader, _ = create_token(store, "reader", read=["*"])
    folder = write_folder(tmp_path / "f", {"config.json": b'{"x": 1}', "w/model.safetensors": b"\0" * 20000})
    with serve(mirror_app(store)) as url:
        res = run_cli("publish", str(folder), "team/m", "--to", url, "--json", env={"HF_TOKEN": writer})
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["created"] and out["uploaded_blobs"] == 2 and out["files"] == 2
        # same id as a local publish of the same folder
        local = new_store(tmp_path / "local")
        assert publish(folder, RepoKey("model", "team/m"), local).commit.sha == out["commit"]
        got = hf_hub_download("team/m", "w/model.safetensors", endpoint=url, token=reader, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == b"\0" * 20000
        again = run_cli("publish", str(folder), "team/m", "--to", url, "--json", env={"HF_TOKEN": writer})
        assert json.loads(again.stdout)["created"] is False and json.loads(again.stdout)["uploaded_blobs"] == 0

        denied = run_cli("publish", str(folder), "other/m", "--to", url, env={"HF_TOKEN": writer})
        assert denied.returncode == 2 and "refused the token (HTTP 403" in denied.stderr and "hint:" in denied.stderr
        ro = run_cli("publish", str(folder), "team/m2", "--to", url, env={"HF_TOKEN": reader})
        assert ro.returncode == 2 and "HTTP 403" in ro.stderr
        none = run_cli("publish", str(folder), "team/m3", "--to", url, env={"HF_TOKEN": ""})
        assert none.returncode == 2 and "needs a token with write scope" in none.stderr
        assert not (tmp_path / "store" / "models--other--m").exists()
        assert not (tmp_path / "store" / "models--team--m2").exists()


def test_upload_verifies_every_blob_before_it_is_visible(tmp_path):
    store = new_store(tmp_path / "store")
    writer, _ = create_token(store, "ci", read=["*"], write=["team/*"])
    auth = {"authorization": f"Bearer {writer}"}
    data = b"hello world\n"
    etag, sha = git_blob_id(data), hashlib.sha256(data).hexdigest()
    with serve(mirror_app(store)) as url:
        base = f"{url}/api/hubpin/upload/models/team/m"
        before = store_files(tmp_path / "store")
        # wrong bytes for the declared hashes (same size): refused, nothing kept
        r = httpx.put(f"{base}/blobs/{etag}", params={"size": len(data), "sha256": sha}, content=b"hello WORLD\n",
                      headers=auth)
        assert r.status_code == 422 and r.headers["x-error-code"] == "HashMismatch"
        # too many bytes
        r = httpx.put(f"{base}/blobs/{etag}", params={"size": len(data), "sha256": sha}, content=data + b"x",
                      headers=auth)
        assert r.status_code == 422
        assert store_files(tmp_path / "store") == before
        # a commit naming a blob that never arrived is refused
        files = [{"path": "a.txt", "size": len(data), "etag": etag, "sha256": sha}]
        r = httpx.post(f"{base}/commit", json={"files": files}, headers=auth)
        assert r.status_code == 409 and r.headers["x-error-code"] == "MissingBlobs"
        # no token / bad token: 401, never written
        r = httpx.put(f"{base}/blobs/{etag}", params={"size": len(data), "sha256": sha}, content=data)
        assert r.status_code == 401 and r.headers["x-error-code"] == "Unauthorized"
        assert httpx.post(f"{base}/preupload", json={"files": files},
                          headers={"authorization": "Bearer hp_bad"}).status_code == 401
        # the right bytes: stored, then committed
        assert httpx.post(f"{base}/preupload", json={"files": files}, headers=auth).json() == {"missing": [etag]}
        r = httpx.put(f"{base}/blobs/{etag}", params={"size": len(data), "sha256": sha}, content=data, headers=auth)
        assert r.status_code == 201
        r = httpx.post(f"{base}/commit", json={"files": files, "revision": "v1"}, headers=auth)
        assert r.status_code == 200 and r.json()["created"]
        assert httpx.get(f"{url}/team/m/resolve/v1/a.txt", headers=auth).content == data
        # hostile names are refused
        bad = [{"path": "../x", "size": 1, "etag": etag, "sha256": sha}]
        assert httpx.post(f"{base}/preupload", json={"files": bad}, headers=auth).status_code == 400
