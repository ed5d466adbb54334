"""`--store s3://…` through the other commands: bundle import/export and tokens shared by replicas."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.server._launch import build_app
from hubpin.server.runner import serve_in_thread
from hubpin.store import LocalStore
from hubpin.store.s3 import S3Store

pytestmark = pytest.mark.s3


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "bert"}\n')
    (root / "model.safetensors").write_bytes(os.urandom(5000))
    return root


def test_bundle_import_into_s3_then_export_from_s3(s3_server, tmp_path):
    local = LocalStore(tmp_path / "local", fsync=False)
    repo = RepoKey("model", "org/bundled")
    sha = publish(_folder(tmp_path / "src"), repo, local).commit.sha
    bundle = tmp_path / "a.bundle"
    r = s3_server.cli("export", str(bundle), "--repo", "org/bundled", "--store", str(local.root))
    assert r.returncode == 0, r.stderr

    prefix = "bundle-" + os.urandom(4).hex()
    url = f"s3://{s3_server.bucket}/{prefix}"
    r = s3_server.cli("import", str(bundle), "--store", url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"] == url
    s3 = S3Store(s3_server.bucket, prefix, client=s3_server.client)
    assert s3.get_ref(repo, "main") == sha
    assert s3.get_commit(repo, sha).files == local.get_commit(repo, sha).files  # sha256 of every file too
    assert not [k for k in s3_server.keys(prefix + "/") if "staging" in k]

    again = tmp_path / "b.bundle"
    r = s3_server.cli("export", str(again), "--repo", "org/bundled", "--store", url)
    assert r.returncode == 0, r.stderr
    back = LocalStore(tmp_path / "back", fsync=False)
    r = s3_server.cli("import", str(again), "--store", str(back.root))
    assert r.returncode == 0, r.stderr
    f = local.get_commit(repo, sha).file("model.safetensors")
    assert f is not None
    assert (back.blob_path(repo, f.etag)).read_bytes() == local.blob_path(repo, f.etag).read_bytes()


def test_tokens_created_on_s3_guard_every_replica(s3_server, tmp_path):
    prefix = "tokens-" + os.urandom(4).hex()
    url = f"s3://{s3_server.bucket}/{prefix}"
    store = S3Store(s3_server.bucket, prefix, client=s3_server.client)
    publish(_folder(tmp_path / "src"), RepoKey("model", "org/private"), store)
    r = s3_server.cli("token", "create", "ci", "--read", "org/*", "--store", url, "--json")
    assert r.returncode == 0, r.stderr
    secret = json.loads(r.stdout)["token"]
    assert s3_server.keys(f"{prefix}/.hubpin/tokens") == [f"{prefix}/.hubpin/tokens.json"]
    assert secret.encode() not in store.read_meta("tokens.json")  # only a hash is kept

    replicas = [S3Store(s3_server.bucket, prefix, client=s3_server.client) for _ in range(2)]
    with serve_in_thread(build_app(replicas[0])) as a, serve_in_thread(build_app(replicas[1])) as b:
        for base in (a, b):
            path = f"{base}/org/private/resolve/main/config.json"
            assert httpx.get(path).status_code in (401, 404)
            ok = httpx.get(path, headers={"Authorization": f"Bearer {secret}"})
            assert ok.status_code == 200 and ok.content == b'{"model_type": "bert"}\n'
