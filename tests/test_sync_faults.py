"""Faults during `sync` (security.md §5): a clear one-line error, a non-zero exit, nothing lost.

"Nothing lost": the cache a previous sync left is unchanged (refs, snapshots, blobs), no file
sits under a final name unverified, temp files are gone. The only thing a failed run may leave
is a resumable `blobs/<etag>.hubpin-partial`, which is not a final name (and `gc` removes it).
The faults come from tests/faults.py wrapped around the real mirror on 127.0.0.1.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults import FaultyHub, cache_state, lock_for
from hostile_names import UNSAFE_FILENAMES  # huggingface_hub's vectors (PR #4540 shapes)
from hubpin import _download
from hubpin.errors import DriftError, HashMismatchError, LockfileError, RemoteError, UnsafePathError
from hubpin.lockfile import read_lock, write_lock
from hubpin.objects import RepoKey
from hubpin.sync import InsufficientSpaceError, sync
from hubpin.verify import verify

SIZE = 300_000
FLIP = 123_457


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
    """`prev`: a commit already in the user's cache; `next`: the one being synced (300 kB LFS file)."""
    from harness import unique_repo

    src = tmp_path_factory.mktemp("faults-src")
    (src / "config.json").write_text('{"v": 1}')
    (src / "weights.safetensors").write_bytes(os.urandom(1000))
    repo_id = unique_repo("org/faults")
    prev = hub.publish(src, repo_id)
    (src / "config.json").write_text('{"v": 2}')
    (src / "weights.safetensors").write_bytes(os.urandom(SIZE))
    nxt = hub.publish(src, repo_id)
    return repo_id, prev, nxt


@pytest.fixture(scope="module")
def warm_cache(hub, server, repo, tmp_path_factory):  # noqa: ANN001, ANN201
    """An HF cache holding `prev`, as a previous sync left it."""
    _app, url = server
    repo_id, prev, _ = repo
    d = tmp_path_factory.mktemp("warm") / "cache"
    sync(lock_for(hub.store, repo_id, prev), cache_dir=d, endpoint=url, fsync=False)
    return d


@pytest.fixture
def cache(warm_cache, tmp_path):  # noqa: ANN001, ANN201
    d = tmp_path / "cache"
    shutil.copytree(warm_cache, d, symlinks=True)
    return d


@pytest.fixture
def app(server):  # noqa: ANN001, ANN201
    app, _url = server
    app.reset()
    yield app
    app.reset()


@pytest.fixture(params=["http.client", "httpx", "httpx+hash-thread"])
def transport(request, monkeypatch):  # noqa: ANN001, ANN201
    """Small files from an http:// endpoint go through http.client, the rest through httpx, and
    big ones are hashed on a helper thread: test all three with the same small files."""
    if request.param != "http.client":
        from hubpin._rawhttp import RawPool

        monkeypatch.setattr(RawPool, "usable", lambda self, url: False)
    if request.param == "httpx+hash-thread":
        monkeypatch.setattr(_download, "BACKGROUND_HASH_MIN", 0)
    return request.param


def _lock(hub, repo):  # noqa: ANN001, ANN202
    repo_id, _prev, nxt = repo
    return lock_for(hub.store, repo_id, nxt)


def _weights(lock):  # noqa: ANN001, ANN202
    return lock.repos[0].as_commit().file("weights.safetensors")


def _sync(lock, cache: Path, url: str, **kw):  # noqa: ANN001, ANN202
    kw.setdefault("backoff", 0.01)
    kw.setdefault("retries", 2)
    return sync(lock, cache_dir=cache, endpoint=url, fsync=False, **kw)


def _assert_nothing_lost(before: dict[str, str], cache: Path, *, partial_ok: bool = False) -> None:
    after = cache_state(cache)
    extra = {k: v for k, v in after.items() if k not in before}
    for path in extra:
        name = path.rsplit("/", 1)[-1]
        allowed = path.startswith(".locks/") or "/blobs/" in path and not name.endswith((".hubpin-tmp", ".incomplete"))
        if name.endswith(".hubpin-partial"):
            assert partial_ok, f"partial left behind: {path}"
            assert "@" not in name, f"in-flight temp file left behind: {path}"
        elif "/blobs/" in path:
            # a new blob under its final name is fine only if it is a complete, verified one (not the faulty file)
            assert allowed
        else:
            assert allowed, f"unexpected new file {path}"
    assert {k: v for k, v in after.items() if k in before} == before, "the previous cache changed"


def _final_blob(cache: Path, repo_id: str, etag: str) -> Path:
    return cache / RepoKey("model", repo_id).folder / "blobs" / etag


def test_case1_wrong_commit_refused_before_any_blob_is_written(hub, server, repo, cache, app, transport) -> None:
    _app, url = server
    app.faults.wrong_commit = "f" * 40
    lock = _lock(hub, repo)
    before = cache_state(cache)
    with pytest.raises(DriftError, match=r"server answered commit f{40}, expected locked [0-9a-f]{40}"):
        _sync(lock, cache, url)
    _assert_nothing_lost(before, cache)
    assert not _final_blob(cache, repo[0], _weights(lock).etag).exists()
    assert not [p for p in cache_state(cache) if p not in before and "/blobs/" in p]


def test_case4_same_size_byte_flip_is_rejected_and_not_published(hub, server, repo, cache, app, transport) -> None:
    _app, url = server
    app.faults.flip_at = FLIP
    app.faults.only = "weights"
    lock = _lock(hub, repo)
    before = cache_state(cache)
    with pytest.raises(HashMismatchError, match=r"weights.safetensors: sha256: expected [0-9a-f]{64}, got [0-9a-f]{64}"):
        _sync(lock, cache, url)
    _assert_nothing_lost(before, cache)
    assert not _final_blob(cache, repo[0], _weights(lock).etag).exists()


def test_case5_truncated_body_bounded_retries_then_resume_on_next_run(hub, server, repo, cache, app, transport) -> None:
    _app, url = server
    app.faults.truncate_at = SIZE // 2
    app.faults.only = "weights"
    lock = _lock(hub, repo)
    before = cache_state(cache)
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match=r"download failed after \d+ attempts .*150000 of 300000 bytes kept"):
        _sync(lock, cache, url)
    assert time.monotonic() - t0 < 10
    assert 2 <= len(app.resolve_gets()) <= 6  # bounded
    _assert_nothing_lost(before, cache, partial_ok=True)
    etag = _weights(lock).etag
    partial = _final_blob(cache, repo[0], etag).with_name(etag + ".hubpin-partial")
    assert partial.stat().st_size == SIZE // 2

    app.reset()  # the network recovers: the next run asks only for the rest
    report = _sync(lock, cache, url)
    ranges = [r.range for r in app.resolve_gets() if "weights" in r.path]
    assert ranges == [f"bytes={SIZE // 2}-"]
    assert report.reused_bytes == SIZE // 2
    assert not partial.exists()
    assert verify(lock, cache_dir=cache).ok


def test_truncation_per_response_resumes_within_the_run(hub, server, repo, cache, app, transport) -> None:
    _app, url = server
    app.faults.truncate_after = 70_000
    app.faults.only = "weights"
    lock = _lock(hub, repo)
    _sync(lock, cache, url)
    ranges = [r.range for r in app.resolve_gets() if "weights" in r.path]
    assert ranges == [None, "bytes=70000-", "bytes=140000-", "bytes=210000-", "bytes=280000-"]
    assert verify(lock, cache_dir=cache).ok


def test_case6_endless_data_stops_at_the_locked_size(hub, server, repo, cache, app, transport) -> None:
    _app, url = server
    app.faults.extra = 1_000_000
    app.faults.only = "weights"
    lock = _lock(hub, repo)
    before = cache_state(cache)
    with pytest.raises(HashMismatchError, match=r"size: expected 300000 bytes, got more than 300000 bytes"):
        _sync(lock, cache, url)
    _assert_nothing_lost(before, cache)


@pytest.mark.parametrize("knob", ["ignore_range", "bad_content_range"])
def test_case7_range_ignored_or_wrong_content_range_restarts_from_zero(hub, server, repo, cache, app, knob, transport) -> None:
    _app, url = server
    lock = _lock(hub, repo)
    etag = _weights(lock).etag
    # a kept partial from an earlier run whose tail is garbage-free but must not be trusted blindly
    blob = _final_blob(cache, repo[0], etag)
    good = hub.store.blob_path(RepoKey("model", repo[0]), etag).read_bytes()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.with_name(etag + ".hubpin-partial").write_bytes(good[:100_000])
    setattr(app.faults, knob, True)
    app.faults.only = "weights"
    _sync(lock, cache, url)
    assert blob.read_bytes() == good
    assert verify(lock, cache_dir=cache).ok
    ranges = [r.range for r in app.resolve_gets() if "weights" in r.path]
    assert ranges[0] == "bytes=100000-"
    if knob == "bad_content_range":
        assert ranges[-1] is None  # asked again from 0 without Range


def test_corrupt_kept_partial_is_detected_and_redone(hub, server, repo, cache, app, transport) -> None:
    _app, url = server
    lock = _lock(hub, repo)
    etag = _weights(lock).etag
    blob = _final_blob(cache, repo[0], etag)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.with_name(etag + ".hubpin-partial").write_bytes(b"\0" * 50_000)  # e.g. lost to a power cut
    _sync(lock, cache, url)
    assert verify(lock, cache_dir=cache).ok
    assert [r.range for r in app.resolve_gets() if "weights" in r.path] == ["bytes=50000-", None]


def test_case8_sigkill_mid_download_then_rerun_completes(hub, server, repo, cache, app, tmp_path) -> None:
    from harness import run_cli  # noqa: F401  (same console script)

    _app, url = server
    app.faults.trickle = (8192, 0.05)
    app.faults.only = "weights"
    lock = _lock(hub, repo)
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock, lock_path)
    exe = shutil.which("hubpin", path=str(Path(sys.executable).parent))
    assert exe
    proc = subprocess.Popen([exe, "sync", "--lock", str(lock_path), "--cache-dir", str(cache), "--endpoint", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blobs = cache / RepoKey("model", repo[0]).folder / "blobs"
    deadline = time.monotonic() + 30
    inflight: list[Path] = []
    while time.monotonic() < deadline:
        inflight = [p for p in blobs.glob("*.hubpin-partial") if p.stat().st_size > 40_000]
        if inflight:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert inflight and "@" in inflight[0].name  # the in-flight name of the killed process
    kept = inflight[0].stat().st_size
    assert not _final_blob(cache, repo[0], _weights(lock).etag).exists()  # never visible unverified

    app.reset()
    report = _sync(read_lock(lock_path), cache, url)
    (rng,) = [r.range for r in app.resolve_gets() if "weights" in r.path]
    assert rng is not None and int(rng[6:-1]) >= kept
    assert report.reused_bytes >= kept
    assert not list(blobs.glob("*.hubpin-partial"))  # the orphan was taken over, nothing left
    assert verify(lock, cache_dir=cache).ok


_CONCURRENT = """
import fcntl, sys, threading
if sys.argv[4] == "noop":
    fcntl.flock = lambda *a, **k: None   # Lustre/NFS: flock "succeeds" for everyone (PR #4306)
from hubpin.sync import sync
errors = []
def run():
    try:
        sync(sys.argv[1], cache_dir=sys.argv[2], endpoint=sys.argv[3], fsync=False, backoff=0.05)
    except BaseException as e:
        errors.append(repr(e))
threads = [threading.Thread(target=run) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors)
sys.exit(1 if errors else 0)
"""


@pytest.mark.parametrize("flock", ["real", "noop"])
def test_case9_two_processes_times_threads_one_cache(hub, server, repo, app, tmp_path, flock) -> None:
    _app, url = server
    app.faults.trickle = (32768, 0.02)
    lock = _lock(hub, repo)
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock, lock_path)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(lock_path), str(cache), url, flock],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert verify(lock, cache_dir=cache).ok
    blobs = cache / RepoKey("model", repo[0]).folder / "blobs"
    assert sorted(p.name for p in blobs.iterdir()) == sorted({f.etag for f in lock.repos[0].files})
    if flock == "real":  # the lock deduplicates: each blob fetched once across 8 callers
        assert len([r for r in app.resolve_gets() if "weights" in r.path]) == 1


def test_case10_enospc_mid_write_and_preflight(hub, server, repo, cache, app, monkeypatch) -> None:
    _app, url = server
    lock = _lock(hub, repo)
    before = cache_state(cache)
    written = [0]
    real = _download._write_all

    def full_disk(fd: int, data: bytes) -> None:
        if written[0] + len(data) > SIZE // 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(data)
        real(fd, data)

    monkeypatch.setattr(_download, "_write_all", full_disk)
    with pytest.raises(InsufficientSpaceError, match=r"no space left on device writing .*weights.safetensors.*needed 300000 bytes, free \d+ bytes"):
        _sync(lock, cache, url, jobs=1)
    _assert_nothing_lost(before, cache)  # in-flight bytes removed: the user needs the space back
    monkeypatch.setattr(_download, "_write_all", real)

    monkeypatch.setattr("hubpin.sync.disk_free", lambda path: 1000)
    app.reset()
    with pytest.raises(InsufficientSpaceError, match=r"no space for sync into .*: needed 3000(00|08) bytes .* free 1000 bytes"):
        _sync(lock, cache, url)
    assert app.log == []  # refused before any request
    _assert_nothing_lost(before, cache)


@pytest.mark.parametrize("name", UNSAFE_FILENAMES)
def test_case11_hostile_names_in_lock_rejected_before_any_filesystem_call(hub, repo, tmp_path, name) -> None:
    from harness import run_cli

    lock = _lock(hub, repo)
    text = lock.to_toml().replace('path = "config.json"', f"path = {json.dumps(name)}")
    lock_path = tmp_path / "hubpin.lock"
    lock_path.write_text(text)
    cache = tmp_path / "never-created"
    with pytest.raises(LockfileError):
        sync(lock_path, cache_dir=cache, endpoint="http://127.0.0.1:9")
    r = run_cli("sync", "--lock", str(lock_path), "--cache-dir", str(cache), "--endpoint", "http://127.0.0.1:9")
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "unsafe file name" in r.stderr
    assert not cache.exists()


def test_case15_planted_links_and_edited_ref_detected_and_never_written_through(hub, server, repo, cache, tmp_path) -> None:
    from harness import run_cli

    _app, url = server
    lock = _lock(hub, repo)
    _sync(lock, cache, url)
    folder = cache / RepoKey("model", repo[0]).folder
    snap = folder / "snapshots" / repo[2]
    victim = tmp_path / "victim.txt"
    victim.write_text("not a blob")
    other = lock.repos[0].as_commit().file("config.json").etag
    (snap / "config.json").unlink()
    (snap / "config.json").symlink_to(victim)
    (snap / "weights.safetensors").unlink()
    (snap / "weights.safetensors").symlink_to(f"../../blobs/{other}")  # to another (valid) blob
    (folder / "refs" / "main").write_text(repo[1] + "\n")  # edited: the old commit, plus a newline
    report = verify(lock, cache_dir=cache)
    kinds = {(p.path, p.kind) for p in report.problems}
    assert kinds == {("config.json", "link"), ("weights.safetensors", "link"), ("refs/main", "ref")}
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock, lock_path)
    r = run_cli("verify", "--lock", str(lock_path), "--cache-dir", str(cache))
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 3 and any(f"expected blobs/{_weights(lock).etag}, got blobs/{other}" in x for x in lines)
    assert "hint: run `hubpin sync`" in r.stderr

    _sync(lock, cache, url)  # sync repairs links and ref, without touching the victim
    assert victim.read_text() == "not a blob"
    assert verify(lock, cache_dir=cache).ok

    # a symlinked blobs/ folder is refused, not written through
    shutil.rmtree(folder / "blobs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "blobs").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="symlink inside the cache"):
        _sync(lock, cache, url)
    assert list(elsewhere.iterdir()) == []


def test_case16_lock_path_planted_as_symlink_does_not_truncate_victim(hub, server, repo, cache, tmp_path) -> None:
    _app, url = server
    lock = _lock(hub, repo)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    locks = cache / ".locks" / RepoKey("model", repo[0]).folder
    locks.mkdir(parents=True, exist_ok=True)
    (locks / f"{_weights(lock).etag}.lock").symlink_to(victim)
    _sync(lock, cache, url)
    assert victim.read_text() == "precious"
    assert verify(lock, cache_dir=cache).ok


def test_case23_429_retry_after_is_honoured(hub, server, repo, cache, app, transport) -> None:
    _app, url = server
    app.faults.status_429 = 2
    app.faults.retry_after = "1"
    app.faults.only = "weights"
    lock = _lock(hub, repo)
    t0 = time.monotonic()
    _sync(lock, cache, url)
    assert time.monotonic() - t0 >= 1.9  # two waits of Retry-After: 1, not the 0.01 s backoff
    assert [r.status for r in app.resolve_gets() if "weights" in r.path] == [429, 429, 200]
    assert verify(lock, cache_dir=cache).ok


def test_case23_many_small_files_bounded_concurrency(hub, server, app, tmp_path) -> None:
    from harness import unique_repo

    _app, url = server
    src = tmp_path / "many"
    src.mkdir()
    for i in range(300):
        (src / f"f{i:03d}.txt").write_text(f"file {i}\n" * 20)
    repo_id = unique_repo("org/many")
    sha = hub.publish(src, repo_id)
    lock = lock_for(hub.store, repo_id, sha)
    app.reset()
    report = _sync(lock, tmp_path / "cache", url, jobs=8)
    assert report.downloaded_files == 300 and len(app.resolve_gets()) == 300
    assert verify(lock, cache_dir=tmp_path / "cache").ok


def test_case25_html_with_200_is_rejected(hub, server, repo, cache, app, transport) -> None:
    from harness import run_cli

    _app, url = server
    app.faults.html = True
    app.faults.only = "weights"
    lock = _lock(hub, repo)
    before = cache_state(cache)
    with pytest.raises(HashMismatchError, match=r"size: expected 300000 bytes, got \d+ bytes \(text/html answer"):
        _sync(lock, cache, url)
    _assert_nothing_lost(before, cache)
    lock_path = cache.parent / "hubpin.lock"
    write_lock(lock, lock_path)
    r = run_cli("sync", "--lock", str(lock_path), "--cache-dir", str(cache), "--endpoint", url)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0].startswith("error: ") and "text/html" in r.stderr
    assert "hint: " in r.stderr


def test_case2_lock_pinning_a_branch_instead_of_a_commit_is_refused(hub, repo, tmp_path) -> None:
    from harness import run_cli

    lock = _lock(hub, repo)
    lock_path = tmp_path / "hubpin.lock"
    lock_path.write_text(lock.to_toml().replace(f'commit = "{repo[2]}"', 'commit = "main"'))
    cache = tmp_path / "never-created"
    r = run_cli("sync", "--lock", str(lock_path), "--cache-dir", str(cache), "--endpoint", "http://127.0.0.1:9")
    assert r.returncode == 2
    assert "commit expected 40 lowercase hex, got 'main'" in r.stderr.splitlines()[0]
    assert not cache.exists()


def test_case23_small_fd_limit(hub, server, app, tmp_path) -> None:
    """Bounded concurrency: 300 files with `ulimit -n 64` (connections and files are not leaked)."""
    import resource

    from harness import unique_repo

    _app, url = server
    src = tmp_path / "many"
    src.mkdir()
    for i in range(300):
        (src / f"f{i:03d}.txt").write_text(f"fd {i}\n")
    repo_id = unique_repo("org/fds")
    lock = lock_for(hub.store, repo_id, hub.publish(src, repo_id))
    lock_path = tmp_path / "hubpin.lock"
    write_lock(lock, lock_path)
    exe = shutil.which("hubpin", path=str(Path(sys.executable).parent))
    r = subprocess.run([exe, "sync", "--lock", str(lock_path), "--cache-dir", str(tmp_path / "c"), "--endpoint", url],
                       capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
    assert r.returncode == 0, r.stderr
    assert verify(lock, cache_dir=tmp_path / "c").ok
