"""S3Store against a real SeaweedFS on 127.0.0.1: layout, round trips, verified uploads, errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from hubpin.errors import BadInput, HashMismatchError, RemoteError, UnsafePathError
from hubpin.hashing import git_blob_id
from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.store import LocalStore, open_store
from hubpin.store.s3 import S3Store

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "bert"}\n')
    (d / "sub" / "notes.txt").write_text("hello\n")
    (d / "model.safetensors").write_bytes(os.urandom(3000))  # LFS by pattern: etag = sha256
    return d


def test_publish_writes_the_hf_cache_keys_and_the_same_records_as_the_local_store(s3_server, tmp_path):
    store = s3_server.store()
    local = LocalStore(tmp_path / "local", fsync=False)
    repo = RepoKey("model", "org/layout")
    folder = _folder(tmp_path)
    c = publish(folder, repo, store).commit
    assert publish(folder, repo, local).commit.sha == c.sha  # deterministic across stores

    keys = s3_server.keys(store.prefix + "/")
    rel = [k[len(store.prefix) + 1 :] for k in keys]
    f = "models--org--layout"
    assert sorted(rel) == sorted(
        [f"{f}/blobs/{e.etag}" for e in c.files]
        + [f"{f}/refs/main", f"{f}/trees/{c.sha}.json", f".hubpin/commits/{f}/{c.sha}.json"]
    )
    get = lambda k: s3_server.client.get_object(Bucket=s3_server.bucket, Key=f"{store.prefix}/{k}")["Body"].read()  # noqa: E731
    assert get(f"{f}/refs/main") == c.sha.encode()  # 40 hex, no newline
    assert get(f"{f}/trees/{c.sha}.json") == (local.root / f / "trees" / f"{c.sha}.json").read_bytes()
    s3_record = json.loads(get(f".hubpin/commits/{f}/{c.sha}.json"))
    local_record = json.loads((local.root / ".hubpin" / "commits" / f / f"{c.sha}.json").read_bytes())
    s3_record.pop("created"), local_record.pop("created")
    assert s3_record == local_record
    assert all(e["sha256"] for e in s3_record["files"])
    lfs = c.file("model.safetensors")
    assert lfs is not None and lfs.etag == hashlib.sha256(get(f"{f}/blobs/{lfs.etag}")).hexdigest()
    assert not any("snapshots/" in k for k in rel)


def test_refs_commits_repos_round_trip_across_list_pages(s3_server, tmp_path):
    store = s3_server.store(list_page_size=2)  # force ListObjectsV2 pagination
    folder = _folder(tmp_path)
    repos = [RepoKey("model", "org/a"), RepoKey("dataset", "org/b"), RepoKey("model", "solo")]
    shas = {r: publish(folder, r, store).commit.sha for r in repos}
    a = repos[0]
    (folder / "config.json").write_text('{"model_type": "bert", "v": 2}\n')
    second = publish(folder, a, store, revision="main").commit
    for name in ("v1.0", "refs/pr/1", "dev", "x/y"):
        store.set_ref(a, name, shas[a])

    assert store.list_repos() == sorted(repos)
    assert store.list_refs(a) == {"dev": shas[a], "main": second.sha, "refs/pr/1": shas[a], "v1.0": shas[a], "x/y": shas[a]}
    assert store.list_commits(a) == sorted([shas[a], second.sha])
    assert second.parent == shas[a]
    got = store.get_commit(a, second.sha)
    assert got == second and got.file("config.json").sha256 is not None
    assert store.resolve(a, "main") == second.sha
    assert store.resolve(a, shas[a][:8]) == shas[a]
    assert store.resolve(a, "nope") is None
    assert store.get_commit(a, "0" * 40) is None
    assert store.has_repo(repos[2]) and not store.has_repo(RepoKey("model", "org/absent"))
    # a second store object over the same prefix (another replica) sees all of it
    other = S3Store(store.bucket, store.prefix, client=s3_server.client)
    assert other.list_refs(a) == store.list_refs(a)


def test_read_blob_passes_ranges_and_sizes_through(s3_server):
    store = s3_server.store()
    repo = RepoKey("model", "org/ranges")
    data = os.urandom(3 * MiB + 17)
    etag = hashlib.sha256(data).hexdigest()
    with store.blob_writer(repo, etag, len(data), etag) as w:
        for i in range(0, len(data), 500_000):
            w.write(data[i : i + 500_000])
    assert store.blob_size(repo, etag) == len(data)
    assert store.has_blob(repo, etag)
    chunks = list(store.read_blob(repo, etag))
    assert b"".join(chunks) == data and max(len(c) for c in chunks) <= MiB
    assert b"".join(store.read_blob(repo, etag, 100, 200)) == data[100:200]
    assert b"".join(store.read_blob(repo, etag, len(data) - 5)) == data[-5:]
    assert b"".join(store.read_blob(repo, etag, 10, 10)) == b""
    assert b"".join(store.read_blob(repo, etag, len(data) + 10)) == b""
    with pytest.raises(FileNotFoundError):
        b"".join(store.read_blob(repo, "a" * 64))
    assert store.blob_size(repo, "a" * 64) is None and not store.has_blob(repo, "b" * 40)
    with pytest.raises(UnsafePathError):
        store.blob_size(repo, "../../etc/passwd")


def test_large_blob_goes_multipart_and_reads_back_verified(s3_server):
    store = s3_server.store(multipart_threshold=64 * MiB, part_size=16 * MiB)
    repo = RepoKey("model", "org/big")
    block = os.urandom(MiB)
    size = 80 * MiB
    h = hashlib.sha256()
    for _ in range(80):
        h.update(block)
    etag = h.hexdigest()
    with store.blob_writer(repo, etag, size, etag) as w:
        for _ in range(80):
            w.write(block)
    head = s3_server.client.head_object(Bucket=s3_server.bucket, Key=store.blob_key(repo, etag))
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-5")  # S3's multipart ETag: md5-of-md5s "-<parts>"
    back = hashlib.sha256()
    for chunk in store.read_blob(repo, etag):
        back.update(chunk)
    assert back.hexdigest() == etag
    assert s3_server.uploads(store.prefix + "/") == []


@pytest.mark.parametrize("threshold", [64 * MiB, 1], ids=["single-put", "multipart"])
def test_wrong_bytes_leave_nothing_under_blobs(s3_server, threshold):
    store = s3_server.store(multipart_threshold=threshold, part_size=5 * MiB)
    repo = RepoKey("model", "org/corrupt")
    good = os.urandom(11 * MiB)
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # same size, one flipped byte in the last part
    etag = hashlib.sha256(good).hexdigest()
    with pytest.raises(HashMismatchError) as exc, store.blob_writer(repo, etag, len(good), etag) as w:
        for i in range(0, len(bad), MiB):
            w.write(bytes(bad[i : i + MiB]))
    assert "sha256" in str(exc.value) and etag in str(exc.value)
    # a git-sha1 etag that does not match the content, right sha256 given
    sha1_etag = git_blob_id(b"something else")
    with pytest.raises(HashMismatchError, match="etag"), store.blob_writer(repo, sha1_etag, len(good), None) as w:
        w.write(good)
    # too many bytes, and a failure half way through
    with pytest.raises(HashMismatchError, match="size"), store.blob_writer(repo, etag, 10, etag) as w:
        w.write(good[:11])
    with pytest.raises(RuntimeError), store.blob_writer(repo, etag, len(good), etag) as w:
        w.write(good[: 6 * MiB])
        raise RuntimeError("source went away")
    assert s3_server.keys(store.prefix + "/") == []
    assert s3_server.uploads(store.prefix + "/") == []
    assert not store.has_blob(repo, etag)


def test_put_commit_refuses_missing_blobs_and_meta_round_trips(s3_server, tmp_path):
    from hubpin.objects import Commit, FileEntry

    store = s3_server.store()
    repo = RepoKey("model", "org/meta")
    commit = Commit("1" * 40, (FileEntry("a.txt", 3, git_blob_id(b"abc"), hashlib.sha256(b"abc").hexdigest()),))
    with pytest.raises(FileNotFoundError, match="a.txt"):
        store.put_commit(repo, commit)
    assert store.list_commits(repo) == []
    assert store.read_meta("tokens.json") is None
    store.write_meta("tokens.json", b'{"t": 1}')
    assert store.read_meta("tokens.json") == b'{"t": 1}'
    assert s3_server.keys(f"{store.prefix}/.hubpin/") == [f"{store.prefix}/.hubpin/tokens.json"]
    with pytest.raises(UnsafePathError):
        store.write_meta("../escape", b"x")
    with pytest.raises(UnsafePathError):
        store.set_ref(repo, "../main", "1" * 40)
    with pytest.raises(UnsafePathError):
        store.set_ref(repo, "main", "not-a-sha")


def test_bad_urls_and_unreachable_buckets_are_clear_errors(s3_server):
    for url in ("s3://", "s3:///prefix", "s3://bucket/../x", "s3://bu cket/p"):
        with pytest.raises(BadInput):
            S3Store.from_url(url)
    missing = S3Store("no-such-bucket-hubpin", "p", client=s3_server.client)
    with pytest.raises(RemoteError) as exc:
        missing.list_repos()
    assert exc.value.exit_code == 3 and "s3://no-such-bucket-hubpin/p/" in str(exc.value)
    assert "bucket" in (exc.value.hint or "")


def test_cli_publish_to_s3_url_reads_endpoint_and_credentials_from_env(s3_server, tmp_path):
    folder = _folder(tmp_path)
    prefix = "cli-" + os.urandom(4).hex()
    url = f"s3://{s3_server.bucket}/{prefix}"
    r = s3_server.cli("publish", str(folder), "org/cli", "--store", url, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["store"] == url and out["created"] is True
    store = s3_server.store(prefix)
    assert store.get_ref(RepoKey("model", "org/cli"), "main") == out["commit"]
    # open_store picks S3Store for s3:// URLs
    assert isinstance(open_store(url + "/"), S3Store)

    # a dead endpoint: exit 3, one error line naming the bucket, plus a hint
    dead = {**s3_server.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    r = s3_server.cli("publish", str(folder), "org/cli", "--store", url, env=dead)
    assert r.returncode == 3, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error: s3://") and s3_server.bucket in lines[0]
    assert lines[1].startswith("hint: ")


def test_multipart_upload_memory_stays_bounded(s3_server):
    import tracemalloc

    part = 5 * MiB
    store = s3_server.store(multipart_threshold=1, part_size=part, upload_concurrency=2)
    repo = RepoKey("model", "org/bounded")
    block = os.urandom(MiB)
    n = 40
    h = hashlib.sha256()
    for _ in range(n):
        h.update(block)
    etag = h.hexdigest()
    tracemalloc.start()
    try:
        with store.blob_writer(repo, etag, n * MiB, etag) as w:
            for _ in range(n):
                w.write(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.blob_size(repo, etag) == n * MiB
    # parts in flight + the one being filled (+ its copy), never the whole 40 MiB blob
    assert peak < (2 + 3) * part, f"peak {peak / MiB:.1f} MiB"


def test_hostile_keys_put_into_the_bucket_by_hand_are_skipped_or_refused(s3_server, tmp_path):
    store = s3_server.store()
    repo = RepoKey("model", "org/hostile")
    sha = publish(_folder(tmp_path), repo, store).commit.sha
    stored = []

    def put(key: str, body: bytes) -> None:
        try:  # AWS takes any key; SeaweedFS refuses some (e.g. `..` segments), which is fine too
            s3_server.client.put_object(Bucket=s3_server.bucket, Key=f"{store.prefix}/{key}", Body=body)
            stored.append(key)
        except s3_server.client.exceptions.ClientError:
            pass

    put("models--org--hostile/refs/a/../../b", sha.encode())
    put("models--org--hostile/refs/evil\nname", sha.encode())
    put("models--org--hostile/refs/notasha", b"../../etc/passwd")
    put("models--..--x/refs/main", sha.encode())
    put("models--org--bad name/refs/main", sha.encode())
    bad = "2" * 40
    record = {"format": 1, "commit": bad, "parent": None, "files": [
        {"path": "../../etc/passwd", "size": 1, "etag": "a" * 40, "sha256": None}]}
    put(f".hubpin/commits/models--org--hostile/{bad}.json", json.dumps(record).encode())

    assert len(stored) >= 4
    assert store.list_refs(repo) == {"main": sha}
    assert store.list_repos() == [repo]
    with pytest.raises(UnsafePathError):
        store.get_commit(repo, bad)
