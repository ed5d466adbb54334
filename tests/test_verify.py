"""`hubpin verify`: offline, every problem reported (missing, link, size, sha256, ref), exit 1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from faults import lock_for
from hubpin.lockfile import write_lock
from hubpin.objects import RepoKey
from hubpin.sync import sync
from hubpin.verify import verify


@pytest.fixture(scope="module")
def synced(hub, tmp_path_factory):  # noqa: ANN001, ANN201
    from harness import unique_repo

    src = tmp_path_factory.mktemp("vsrc")
    (src / "sub").mkdir()
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub" / "vocab.txt").write_text("a\nb\nc\n")
    (src / "model.safetensors").write_bytes(os.urandom(50_000))
    repo_id = unique_repo("org/verify")
    sha = hub.publish(src, repo_id)
    lock = lock_for(hub.store, repo_id, sha)
    cache = tmp_path_factory.mktemp("vcache") / "cache"
    sync(lock, cache_dir=cache, endpoint=hub.url, fsync=False)
    return lock, cache, RepoKey("model", repo_id), sha


@pytest.fixture
def case(synced, tmp_path):  # noqa: ANN001, ANN201
    lock, cache, repo, sha = synced
    d = tmp_path / "cache"
    shutil.copytree(cache, d, symlinks=True)
    return lock, d, d / repo.folder, sha


def test_clean_cache_verifies_and_problems_are_each_reported(case) -> None:
    lock, cache, folder, sha = case
    report = verify(lock, cache_dir=cache)
    assert report.ok and report.files == 3 and report.bytes == 50_000 + 8 + 6
    files = {f.path: f for f in lock.repos[0].files}
    blob = folder / "blobs" / files["model.safetensors"].etag
    data = bytearray(blob.read_bytes())
    data[1000] ^= 1  # same size, one bit
    blob.write_bytes(bytes(data))
    (folder / "blobs" / files["sub/vocab.txt"].etag).write_text("a\n")  # truncated
    (folder / "snapshots" / sha / "config.json").unlink()
    (folder / "refs" / "main").write_text(sha + "\n")  # the newline that breaks offline hf_hub_download
    report = verify(lock, cache_dir=cache, jobs=2)
    got = [(p.path, p.kind) for p in report.problems]
    assert got == [("config.json", "missing"), ("model.safetensors", "sha256"), ("refs/main", "ref"),
                   ("sub/vocab.txt", "size")]
    size = next(p for p in report.problems if p.kind == "size")
    assert size.line().endswith("sub/vocab.txt: size expected 6 bytes, got 2 bytes")
    sha_problem = next(p for p in report.problems if p.kind == "sha256")
    assert sha_problem.expected == files["model.safetensors"].sha256 and len(sha_problem.actual) == 64


def test_dangling_link_and_symlink_free_cache(case) -> None:
    lock, cache, folder, sha = case
    files = {f.path: f for f in lock.repos[0].files}
    # HF_HUB_DISABLE_SYMLINKS caches keep real files in snapshots/: fine when the bytes are right
    link = folder / "snapshots" / sha / "config.json"
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data)
    (folder / "blobs" / files["sub/vocab.txt"].etag).unlink()  # the link now dangles
    report = verify(lock, cache_dir=cache)
    assert [(p.path, p.kind) for p in report.problems] == [("sub/vocab.txt", "missing")]


def test_cli_verify_lines_json_and_exit_codes(case, tmp_path: Path) -> None:
    from harness import run_cli

    lock, cache, folder, sha = case
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock, lock_path)
    files = {f.path: f for f in lock.repos[0].files}
    (folder / "blobs" / files["config.json"].etag).write_text('{"a": 2}')  # same size, other bytes
    r = run_cli("verify", "--lock", str(lock_path), "--cache-dir", str(cache))
    assert r.returncode == 1
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    actual = hashlib.sha256(b'{"a": 2}').hexdigest()
    assert errors == [f"error: {lock.repos[0].repo}: config.json: sha256 expected {files['config.json'].sha256}, "
                      f"got {actual}"]
    assert r.stderr.splitlines()[-1].startswith("hint: run `hubpin sync`")
    r = run_cli("verify", "--lock", str(lock_path), "--cache-dir", str(cache), "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and [p["kind"] for p in doc["problems"]] == ["sha256"]
    # a dangling link (the blob is gone) is reported as missing
    (folder / "blobs" / files["config.json"].etag).unlink()
    r = run_cli("verify", "--lock", str(lock_path), "--cache-dir", str(cache))
    assert r.returncode == 1 and "config.json: missing expected blobs/" in r.stderr
