"""`hubpin.snapshot()` / `hubpin.commit()`: the locked folder, no network, clear errors, fast."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

import hubpin
from faults import lock_for
from hubpin.errors import ConfigError, LockfileError, NotSyncedError
from hubpin.lockfile import write_lock
from hubpin.objects import RepoKey
from hubpin.sync import sync


@pytest.fixture(scope="module")
def project(hub, tmp_path_factory):  # noqa: ANN001, ANN201
    """A project folder (hubpin.toml + hubpin.lock) and a synced cache."""
    from harness import unique_repo

    src = tmp_path_factory.mktemp("asrc")
    (src / "config.json").write_text("{}")
    for i in range(200):
        (src / "shards" / f"{i:03d}.txt").parent.mkdir(exist_ok=True)
        (src / "shards" / f"{i:03d}.txt").write_text(str(i))
    repo_id = unique_repo("org/api")
    sha = hub.publish(src, repo_id)
    lock = lock_for(hub.store, repo_id, sha)
    root = tmp_path_factory.mktemp("proj")
    (root / "hubpin.toml").write_text(f'[settings]\nallow-pickle = false\n\n[models."{repo_id}"]\nrevision = "main"\n')
    write_lock(lock, root / "hubpin.lock")
    (root / "sub" / "dir").mkdir(parents=True)
    cache = tmp_path_factory.mktemp("acache")
    sync(lock, cache_dir=cache, endpoint=hub.url, fsync=False)
    return root, cache, repo_id, sha


def test_snapshot_and_commit_found_from_the_cwd_like_the_cli(project, monkeypatch) -> None:
    root, cache, repo_id, sha = project
    monkeypatch.chdir(root / "sub" / "dir")  # found upwards, as `hubpin sync` would
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    path = hubpin.snapshot(repo_id)
    assert path == cache / RepoKey("model", repo_id).folder / "snapshots" / sha
    assert (path / "shards" / "007.txt").read_text() == "7"
    assert hubpin.commit(repo_id) == sha
    assert hubpin.snapshot(repo_id, lock=root / "hubpin.lock", cache_dir=cache) == path


def test_warm_call_is_fast(project) -> None:
    root, cache, repo_id, _sha = project
    lock_path = root / "hubpin.lock"
    hubpin.snapshot(repo_id, lock=lock_path, cache_dir=cache)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        hubpin.snapshot(repo_id, lock=lock_path, cache_dir=cache)
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.005  # 201 files checked


def test_not_synced_and_not_locked_errors(project, tmp_path: Path) -> None:
    root, cache, repo_id, sha = project
    empty = tmp_path / "empty-cache"
    with pytest.raises(NotSyncedError, match=r"201 of 201 locked files missing from .* \(first: config.json\)") as e:
        hubpin.snapshot(repo_id, lock=root / "hubpin.lock", cache_dir=empty)
    assert "hubpin sync" in (e.value.hint or "")
    assert isinstance(e.value, FileNotFoundError)  # callers' `except FileNotFoundError` still works
    assert not empty.exists()  # no side effects
    with pytest.raises(LockfileError, match="org/not-there is not in") as e2:
        hubpin.snapshot("org/not-there", lock=root / "hubpin.lock", cache_dir=cache)
    assert "hubpin add org/not-there" in (e2.value.hint or "")
    with pytest.raises(LockfileError, match="dataset"):
        hubpin.snapshot(repo_id, lock=root / "hubpin.lock", cache_dir=cache, repo_type="dataset")


def test_lock_edits_are_seen_and_no_project_is_a_config_error(project, tmp_path: Path, monkeypatch) -> None:
    root, cache, repo_id, sha = project
    lock_path = tmp_path / "hubpin.lock"
    lock_path.write_bytes((root / "hubpin.lock").read_bytes())
    assert hubpin.commit(repo_id, lock=lock_path) == sha
    lock_path.write_text(lock_path.read_text().replace(sha, "0" * 40))
    assert hubpin.commit(repo_id, lock=lock_path) == "0" * 40  # cached by mtime/size/inode, not forever
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no hubpin.toml"):
        hubpin.snapshot(repo_id)


def test_warm_cache_still_sees_a_removed_link_or_blob(hub, project, tmp_path: Path) -> None:
    import os
    import shutil

    root, cache, repo_id, sha = project
    mine = tmp_path / "cache"
    shutil.copytree(cache, mine, symlinks=True)
    folder = mine / RepoKey("model", repo_id).folder
    old = time.time() - 60
    for d in (folder / "blobs", folder / "snapshots" / sha, folder / "snapshots" / sha / "shards"):
        os.utime(d, (old, old))  # quiet folders: the positive check is now cached
    lock_path = root / "hubpin.lock"
    assert hubpin.snapshot(repo_id, lock=lock_path, cache_dir=mine)
    assert folder / "snapshots" / sha in hubpin.api._checked  # the next call takes the cached path
    assert hubpin.snapshot(repo_id, lock=lock_path, cache_dir=mine)
    (folder / "snapshots" / sha / "shards" / "042.txt").unlink()
    with pytest.raises(NotSyncedError, match=r"1 of 201 .*first: shards/042.txt"):
        hubpin.snapshot(repo_id, lock=lock_path, cache_dir=mine)
    os.symlink(os.readlink(folder / "snapshots" / sha / "shards" / "041.txt"), folder / "snapshots" / sha / "shards" / "042.txt")
    for d in (folder / "snapshots" / sha / "shards",):
        os.utime(d, (old, old))
    assert hubpin.snapshot(repo_id, lock=lock_path, cache_dir=mine)  # repaired (same bytes, for the test)
    blob = next(p for p in (folder / "blobs").iterdir())
    blob.unlink()
    with pytest.raises(NotSyncedError):
        hubpin.snapshot(repo_id, lock=lock_path, cache_dir=mine)
