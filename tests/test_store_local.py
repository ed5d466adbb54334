"""LocalStore is a valid HF cache: huggingface_hub reads what it writes, offline."""

import os
import threading
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download

from hubpin.errors import HashMismatchError, UnsafePathError
from hubpin.hashing import hash_file
from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.store import LocalStore

REPO = RepoKey("model", "org/tiny")


def _folder(root: Path) -> Path:
    (root / "sub" / "dir").mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 8}')
    (root / "sub" / "dir" / "nested file.txt").write_text("nested")
    (root / "model.safetensors").write_bytes(b"\0" * 1000)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_huggingface_hub_loads_a_published_commit_offline(tmp_path: Path, store: LocalStore) -> None:
    sha = publish(_folder(tmp_path / "src"), REPO, store).commit.sha
    folder = snapshot_download(REPO.id, cache_dir=store.root, local_files_only=True)
    assert Path(folder).name == sha
    assert (Path(folder) / "sub/dir/nested file.txt").read_text() == "nested"
    path = hf_hub_download(REPO.id, "config.json", cache_dir=store.root, local_files_only=True)
    assert Path(path).read_text() == '{"hidden_size": 8}'
    info = scan_cache_dir(store.root)  # raises CorruptedCacheException on a malformed cache
    assert [r.repo_id for r in info.repos] == ["org/tiny"]


def test_cache_layout_follows_the_hub_rules(tmp_path: Path, store: LocalStore) -> None:
    sha = publish(_folder(tmp_path / "src"), REPO, store).commit.sha
    repo_dir = store.root / "models--org--tiny"
    assert (repo_dir / "refs" / "main").read_bytes() == sha.encode()  # 40 hex, no newline
    link = repo_dir / "snapshots" / sha / "sub" / "dir" / "nested file.txt"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve().parent == (repo_dir / "blobs").resolve()
    lfs = hash_file(tmp_path / "src" / "model.safetensors")
    assert (repo_dir / "blobs" / lfs.sha256).is_file()  # LFS blob named by sha256
    tree = (repo_dir / "trees" / f"{sha}.json").read_text()
    assert "xet" not in tree and '"lfs_sha256"' in tree


def test_a_blob_with_wrong_bytes_is_never_published(store: LocalStore) -> None:
    data = b"hello"
    good = hash_file_bytes(data)
    with pytest.raises(HashMismatchError, match="sha256"), store.blob_writer(REPO, good.git_sha1, len(data), "0" * 64) as w:
        w.write(data)
    assert not store.has_blob(REPO, good.git_sha1)
    assert list((store.root / REPO.folder / "blobs").iterdir()) == []  # no temp file left


def test_extra_bytes_are_refused_while_streaming(store: LocalStore) -> None:
    data = b"hello"
    d = hash_file_bytes(data)
    with pytest.raises(HashMismatchError, match="more than 5 bytes"), store.blob_writer(REPO, d.git_sha1, 5, d.sha256) as w:
        w.write(data + b"!")
    assert list((store.root / REPO.folder / "blobs").iterdir()) == []


def test_concurrent_writers_of_one_blob_leave_one_valid_blob(store: LocalStore) -> None:
    data = os.urandom(300_000)
    d = hash_file_bytes(data)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with store.blob_writer(REPO, d.sha256, len(data), d.sha256) as w:
                for i in range(0, len(data), 4096):
                    w.write(data[i : i + 4096])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    blobs = list((store.root / REPO.folder / "blobs").iterdir())
    assert [b.name for b in blobs] == [d.sha256]
    assert blobs[0].read_bytes() == data


def test_refuses_to_write_through_a_planted_symlink(tmp_path: Path, store: LocalStore) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    repo_dir = store.root / REPO.folder
    repo_dir.mkdir(parents=True)
    (repo_dir / "blobs").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        publish(_folder(tmp_path / "src"), REPO, store)
    assert list(victim.iterdir()) == []


def test_a_plain_hf_cache_commit_is_read_from_its_snapshot(tmp_path: Path, store: LocalStore) -> None:
    sha = publish(_folder(tmp_path / "src"), REPO, store).commit.sha
    # what huggingface_hub alone leaves behind: no .hubpin records, no tree cache
    for p in (store.root / ".hubpin").rglob("*.json"):
        p.unlink()
    (store.root / REPO.folder / "trees" / f"{sha}.json").unlink()
    (store.root / REPO.folder / "snapshots" / sha / "config.json").unlink()  # a partial snapshot
    commit = store.get_commit(REPO, sha)
    assert commit is not None and not commit.complete
    assert [f.path for f in commit.files] == ["model.safetensors", "sub/dir/nested file.txt"]


def test_revisions_resolve_like_the_hub(tmp_path: Path, store: LocalStore) -> None:
    sha = publish(_folder(tmp_path / "src"), REPO, store, revision="v1.0").commit.sha
    store.set_ref(REPO, "refs/pr/1", sha)
    assert store.resolve(REPO, "v1.0") == sha
    assert store.resolve(REPO, "refs/pr/1") == sha
    assert store.resolve(REPO, sha) == sha
    assert store.resolve(REPO, sha[:7]) == sha
    assert store.resolve(REPO, "main") is None
    assert store.resolve(REPO, "0" * 40) is None
    assert store.list_refs(REPO) == {"refs/pr/1": sha, "v1.0": sha}


def test_refs_with_a_newline_from_older_tools_still_resolve(tmp_path: Path, store: LocalStore) -> None:
    sha = publish(_folder(tmp_path / "src"), REPO, store).commit.sha
    (store.root / REPO.folder / "refs" / "main").write_text(sha + "\n")
    assert store.get_ref(REPO, "main") == sha


def hash_file_bytes(data: bytes):  # noqa: ANN201
    from hubpin.hashing import Hasher

    h = Hasher(len(data))
    h.update(data)
    return h.digest()
