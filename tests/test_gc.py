"""`hubpin gc`: drop what no ref or lock references, and stale partials; `--dry-run` changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from faults import cache_state, lock_for
from hubpin.gc import gc
from hubpin.objects import RepoKey
from hubpin.sync import sync
from hubpin.verify import verify


@pytest.fixture(scope="module")
def repos(hub, tmp_path_factory):  # noqa: ANN001, ANN201
    """Repo A with commits a1 (old) and a2 (locked); repo B (not in the lock) with one commit."""
    from harness import unique_repo

    src = tmp_path_factory.mktemp("gsrc")
    (src / "config.json").write_text('{"v": 1}')
    (src / "shared.txt").write_text("same in both commits")
    a_id = unique_repo("org/gc-a")
    a1 = hub.publish(src, a_id)
    (src / "config.json").write_text('{"v": 2, "pad": "xxxxxxxx"}')
    a2 = hub.publish(src, a_id)
    b_src = tmp_path_factory.mktemp("gsrc-b")
    (b_src / "w.bin").write_bytes(os.urandom(10_000))
    b_id = unique_repo("org/gc-b")
    b1 = hub.publish(b_src, b_id)
    return a_id, a1, a2, b_id, b1


@pytest.fixture
def cache(hub, repos, tmp_path):  # noqa: ANN001, ANN201
    a_id, a1, a2, b_id, b1 = repos
    d = tmp_path / "cache"
    for lock in (lock_for(hub.store, a_id, a1), lock_for(hub.store, b_id, b1), lock_for(hub.store, a_id, a2)):
        sync(lock, cache_dir=d, endpoint=hub.url, fsync=False)
    return d


def test_dry_run_changes_nothing_then_gc_keeps_exactly_the_locked_and_referenced(hub, repos, cache) -> None:
    a_id, a1, a2, b_id, b1 = repos
    lock = lock_for(hub.store, a_id, a2)
    a = cache / RepoKey("model", a_id).folder
    b = cache / RepoKey("model", b_id).folder
    orphan = b / "blobs" / ("0" * 40)  # a blob nothing links to
    orphan.write_bytes(b"x" * 123)
    before = cache_state(cache)
    dry = gc([lock], cache_dir=cache, dry_run=True)
    assert cache_state(cache) == before
    kinds = sorted((r.kind, r.path.relative_to(cache).as_posix()) for r in dry.removed)
    old_config = next(f for f in lock_for(hub.store, a_id, a1).repos[0].files if f.path == "config.json").etag
    assert kinds == [
        ("blob", f"{a.name}/blobs/{old_config}"),
        ("blob", f"{b.name}/blobs/{'0' * 40}"),
        ("snapshot", f"{a.name}/snapshots/{a1}"),
        ("snapshot", f"{a.name}/trees/{a1}.json"),
    ]
    assert dry.bytes_freed == len('{"v": 1}') + 123
    assert "would free" in dry.summary()

    done = gc([lock], cache_dir=cache)
    assert done.bytes_freed == dry.bytes_freed
    assert not (a / "snapshots" / a1).exists() and (a / "snapshots" / a2).is_dir()
    assert (b / "snapshots" / b1).is_dir()  # repo B is referenced by its refs/main
    assert verify(lock, cache_dir=cache).ok
    assert verify(lock_for(hub.store, b_id, b1), cache_dir=cache).ok
    assert gc([lock], cache_dir=cache).removed == []  # idempotent


def test_no_keep_locked_only_refs_count(hub, repos, cache) -> None:
    a_id, a1, a2, _b_id, _b1 = repos
    a = cache / RepoKey("model", a_id).folder
    (a / "refs" / "main").unlink()  # now nothing but the lock references a2
    kept = gc([lock_for(hub.store, a_id, a2)], cache_dir=cache, dry_run=True)
    assert all(a2 not in str(r.path) for r in kept.removed)
    report = gc([lock_for(hub.store, a_id, a2)], cache_dir=cache, keep_locked=False)
    assert not (a / "snapshots" / a2).exists() and not (a / "snapshots" / a1).exists()
    assert not [p for p in (a / "blobs").iterdir()]
    assert report.bytes_freed > 0


def test_stale_partials_removed_live_ones_kept(hub, repos, cache) -> None:
    a_id, *_ = repos
    blobs = cache / RepoKey("model", a_id).folder / "blobs"
    etag = "a" * 64
    resting = blobs / f"{etag}.hubpin-partial"
    resting.write_bytes(b"r" * 100)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from hubpin._partials import _HOST

    orphan = blobs / f"{etag}.{dead.stdout.strip()}@{_HOST}.0123abcd.hubpin-partial"  # a SIGKILLed writer
    orphan.write_bytes(b"o" * 50)
    live = blobs / f"{etag}.{os.getpid()}@{_HOST}.89abcdef.hubpin-partial"  # a download in flight now
    live.write_bytes(b"l" * 10)
    report = gc([], cache_dir=cache)
    partials = sorted(r.path.name for r in report.removed if r.kind == "partial")
    assert partials == sorted([resting.name, orphan.name])
    assert live.exists() and not resting.exists() and not orphan.exists()


def test_cli_gc_dry_run_lists_and_keeps(hub, repos, cache, tmp_path) -> None:
    from harness import run_cli
    from hubpin.lockfile import write_lock

    a_id, a1, a2, *_ = repos
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock_for(hub.store, a_id, a2), lock_path)
    before = cache_state(cache)
    r = run_cli("gc", "--cache-dir", str(cache), "--lock", str(lock_path), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"would remove snapshot {cache / RepoKey('model', a_id).folder / 'snapshots' / a1}" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == f"gc {cache}: 1 blob, 2 snapshots; would free 8 bytes"
    assert cache_state(cache) == before
