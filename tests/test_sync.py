"""`hubpin sync`: exactly the locked files land in the HF cache, verified, with refs and trees.

Real server (the hubpin mirror, wrapped by tests/faults.py only to count requests) on 127.0.0.1,
real huggingface_hub reading the result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from faults import FaultyHub, cache_state, lock_for
from hubpin.lockfile import write_lock
from hubpin.objects import RepoKey
from hubpin.sync import sync
from hubpin.verify import verify


@pytest.fixture(scope="module")
def server(hub):  # noqa: ANN001, ANN201
    from hubpin.server.app import create_app
    from hubpin.server.runner import serve_in_thread
    from hubpin.store import LocalStore

    app = FaultyHub(create_app(LocalStore(hub.store_dir, fsync=False)))
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def repo(hub, tmp_path_factory):  # noqa: ANN001, ANN201
    """A model with a nested path, an LFS file and two files with identical bytes; two commits."""
    from harness import unique_repo

    src = tmp_path_factory.mktemp("src")
    (src / "sub" / "dir").mkdir(parents=True)
    (src / "config.json").write_text('{"model_type": "bert"}')
    (src / "sub" / "dir" / "nested file.txt").write_text("nested")
    (src / "copy.txt").write_text("nested")  # same blob as the nested file
    (src / "weights.safetensors").write_bytes(os.urandom(200_000))
    repo_id = unique_repo("org/sync")
    first = hub.publish(src, repo_id)
    (src / "config.json").write_text('{"model_type": "bert", "v": 2}')
    second = hub.publish(src, repo_id)
    return repo_id, first, second


def _sync(lock, cache: Path, url: str, **kw):  # noqa: ANN001, ANN202
    return sync(lock, cache_dir=cache, endpoint=url, backoff=0.01, fsync=False, **kw)


def test_sync_materializes_cache_layout_and_second_run_makes_no_request(hub, server, repo, cache_dir) -> None:
    app, url = server
    repo_id, first, _second = repo
    lock = lock_for(hub.store, repo_id, first)
    app.reset()
    report = _sync(lock, cache_dir, url)
    gets = app.resolve_gets()
    # 4 files, 3 distinct blobs: one GET per missing blob, no HEAD, nothing else but the drift probe
    assert len(gets) == 3
    assert [r.method for r in app.log].count("HEAD") == 0
    assert report.downloaded_files == 4 and report.present_files == 0
    folder = cache_dir / RepoKey("model", repo_id).folder
    assert (folder / "refs" / "main").read_bytes() == first.encode()  # 40 hex, no newline
    link = folder / "snapshots" / first / "sub" / "dir" / "nested file.txt"
    assert os.readlink(link) == "../../../../blobs/" + lock.repos[0].as_commit().file("sub/dir/nested file.txt").etag
    assert link.read_text() == "nested"
    tree = json.loads((folder / "trees" / f"{first}.json").read_text())
    assert set(tree["files"]) == {f.path for f in lock.repos[0].files}
    assert "xet_hash" not in json.dumps(tree)
    assert not [p for p in folder.rglob("*") if ".hubpin-" in p.name or p.name.endswith(".incomplete")]
    assert verify(lock, cache_dir=cache_dir).ok

    before = cache_state(cache_dir)
    app.reset()
    again = _sync(lock, cache_dir, url)
    assert app.log == []  # warm: no network at all
    assert again.downloaded_files == 0 and again.present_files == 4
    assert cache_state(cache_dir) == before


def test_huggingface_hub_reads_the_synced_cache_without_network(hub, server, repo, cache_dir) -> None:
    from huggingface_hub import try_to_load_from_cache

    _app, url = server
    repo_id, first, _ = repo
    _sync(lock_for(hub.store, repo_id, first), cache_dir, url)
    path = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    assert isinstance(path, str) and Path(path).read_text() == '{"model_type": "bert"}'
    assert f"/snapshots/{first}/" in path


def test_only_missing_blobs_are_fetched_and_links_repaired_locally(hub, server, repo, cache_dir) -> None:
    app, url = server
    repo_id, first, _ = repo
    lock = lock_for(hub.store, repo_id, first)
    _sync(lock, cache_dir, url)
    folder = cache_dir / RepoKey("model", repo_id).folder
    weights = lock.repos[0].as_commit().file("weights.safetensors")
    (folder / "blobs" / weights.etag).unlink()
    (folder / "snapshots" / first / "config.json").unlink()  # blob still there: relink without network
    app.reset()
    report = _sync(lock, cache_dir, url)
    assert [r.path.rsplit("/", 1)[-1] for r in app.resolve_gets()] == ["weights.safetensors"]
    assert report.downloaded_files == 1 and report.linked == 1
    assert verify(lock, cache_dir=cache_dir).ok


def test_ref_pointing_elsewhere_is_moved_to_the_locked_commit_and_reported(hub, server, repo, cache_dir) -> None:
    """The lock is the authority for the declared revision (security.md case 24, sync analogue)."""
    _app, url = server
    repo_id, first, second = repo
    _sync(lock_for(hub.store, repo_id, second), cache_dir, url)  # the user loaded a newer main
    report = _sync(lock_for(hub.store, repo_id, first), cache_dir, url)
    ref = cache_dir / RepoKey("model", repo_id).folder / "refs" / "main"
    assert ref.read_bytes() == first.encode()
    assert [(r.name, r.old, r.new) for r in report.refs_moved] == [("main", second, first)]
    assert "moved back to the locked commit" in report.summary()
    # the newer snapshot is left in place for whoever uses it by sha
    assert (ref.parent.parent / "snapshots" / second / "config.json").exists()


def test_tag_moved_on_server_sync_fetches_pinned_commit_and_reports_drift(hub, server, cache_dir, tmp_path) -> None:
    """security.md case 3: the tag is retargeted between lock and sync."""
    from harness import unique_repo

    _app, url = server
    repo_id = unique_repo("org/tagmove")
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"v": 1}')
    pinned = hub.publish(src, repo_id, revision="v1")
    lock = lock_for(hub.store, repo_id, pinned, revision="v1")
    (src / "config.json").write_text('{"v": "evil"}')
    moved = hub.publish(src, repo_id, revision="v1")
    report = _sync(lock, cache_dir, url)
    folder = cache_dir / RepoKey("model", repo_id).folder
    assert (folder / "snapshots" / pinned / "config.json").read_text() == '{"v": 1}'
    assert (folder / "refs" / "v1").read_bytes() == pinned.encode()
    assert [(d.revision, d.locked, d.remote) for d in report.drift] == [("v1", pinned, moved)]


def test_dataset_repo_and_partial_lock_entry_write_no_tree_cache(hub, server, cache_dir, tmp_path) -> None:
    from harness import unique_repo

    app, url = server
    repo_id = unique_repo("org/ds")
    src = tmp_path / "ds"
    src.mkdir()
    (src / "a.csv").write_text("x\n1\n")
    (src / "b.csv").write_text("x\n2\n")
    sha = hub.publish(src, repo_id, dataset=True)
    lock = lock_for(hub.store, repo_id, sha, dataset=True, complete=False)  # include-filtered: a.csv only
    app.reset()
    _sync(lock, cache_dir, url)
    assert all(r.path.startswith(f"/datasets/{repo_id}/resolve/{sha}/") for r in app.resolve_gets())
    folder = cache_dir / f"datasets--{repo_id.replace('/', '--')}"
    assert (folder / "snapshots" / sha / "a.csv").read_text() == "x\n1\n"
    assert not (folder / "snapshots" / sha / "b.csv").exists()
    # a partial listing would make a later full snapshot_download raise offline (hub-protocol 3.4)
    assert not (folder / "trees").exists()


def test_cli_sync_verify_gc_roundtrip(hub, server, repo, tmp_path) -> None:
    from harness import run_cli

    _app, url = server
    repo_id, first, second = repo
    cache = tmp_path / "cache"
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock_for(hub.store, repo_id, second), lock_path)
    r = run_cli("sync", "--lock", str(lock_path), "--cache-dir", str(cache), "--endpoint", url, "--jobs", "4")
    assert r.returncode == 0, r.stderr
    assert "synced 1 repo, 4 files" in r.stdout and "all verified" in r.stdout
    r = run_cli("verify", "--lock", str(lock_path), "--cache-dir", str(cache), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True and json.loads(r.stdout)["files"] == 4
    r = run_cli("verify", "--lock", str(lock_path), "--cache-dir", str(cache))
    assert r.returncode == 0 and r.stdout.startswith("ok: 4 files")

    # an older commit synced too, then gc with the lock keeps only what the lock pins
    old_lock = tmp_path / "old.lock"
    write_lock(lock_for(hub.store, repo_id, first), old_lock)
    assert run_cli("sync", "--lock", str(old_lock), "--cache-dir", str(cache), "--endpoint", url).returncode == 0
    assert run_cli("sync", "--lock", str(lock_path), "--cache-dir", str(cache), "--endpoint", url).returncode == 0
    folder = cache / RepoKey("model", repo_id).folder
    assert (folder / "snapshots" / first).is_dir()
    r = run_cli("gc", "--lock", str(lock_path), "--cache-dir", str(cache), "--dry-run")
    assert r.returncode == 0 and "would remove snapshot" in r.stdout and (folder / "snapshots" / first).is_dir()
    r = run_cli("gc", "--lock", str(lock_path), "--cache-dir", str(cache), "--json")
    assert r.returncode == 0, r.stderr
    freed = json.loads(r.stdout)["bytes_freed"]
    assert freed == len('{"model_type": "bert"}')  # only the old config.json blob was unique to the old commit
    assert not (folder / "snapshots" / first).exists()
    assert run_cli("verify", "--lock", str(lock_path), "--cache-dir", str(cache)).returncode == 0


def test_cli_sync_honours_hf_hub_cache_and_hf_home(hub, server, repo, tmp_path) -> None:
    from harness import run_cli

    _app, url = server
    repo_id, first, _ = repo
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock_for(hub.store, repo_id, first), lock_path)
    folder = RepoKey("model", repo_id).folder
    r = run_cli("sync", "--lock", str(lock_path), "--endpoint", url, env={"HF_HUB_CACHE": str(tmp_path / "hc")})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hc" / folder / "refs" / "main").read_bytes() == first.encode()
    env = {"HF_HUB_CACHE": "", "HF_HOME": str(tmp_path / "home")}
    r = run_cli("verify", "--lock", str(lock_path), env=env)
    assert r.returncode == 1 and "missing" in r.stderr  # $HF_HOME/hub is another, empty cache
    r = run_cli("sync", "--lock", str(lock_path), "--endpoint", url, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "home" / "hub" / folder / "snapshots" / first / "config.json").is_file()


def test_cli_sync_from_bundle_needs_no_network(hub, repo, tmp_path) -> None:
    from harness import run_cli
    from hubpin.bundle import export_bundle

    repo_id, first, _ = repo
    lock = lock_for(hub.store, repo_id, first)
    bundle = tmp_path / "models.hubpin"
    export_bundle(bundle, hub.store, list(lock.repos))
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock, lock_path)
    cache = tmp_path / "cache"
    r = run_cli("sync", "--lock", str(lock_path), "--cache-dir", str(cache), "--from", str(bundle),
                "--endpoint", "http://127.0.0.1:9")
    assert r.returncode == 0, r.stderr
    assert verify(lock, cache_dir=cache).ok


def test_cli_sync_no_fsync_still_verifies(hub, server, repo, tmp_path) -> None:
    from harness import run_cli

    _app, url = server
    repo_id, first, _ = repo
    lock_path = tmp_path / "hubpin.lock"
    lock = lock_for(hub.store, repo_id, first)
    write_lock(lock, lock_path)
    r = run_cli("sync", "--lock", str(lock_path), "--cache-dir", str(tmp_path / "c"), "--endpoint", url, "--no-fsync")
    assert r.returncode == 0, r.stderr
    assert verify(lock, cache_dir=tmp_path / "c").ok
