import hashlib
from pathlib import Path

import pytest
from huggingface_hub.utils.sha import git_hash
from hypothesis import given
from hypothesis import strategies as st

from hubpin.hashing import Hasher, git_blob_id, hash_file, hash_files, lfs_pointer, lfs_pointer_blob_id


def test_git_blob_id_matches_the_hub_example() -> None:
    # hub-protocol.md §4: b"Hello, World!" -> b45ef6fe...
    assert git_blob_id(b"Hello, World!").startswith("b45ef6fe")


@given(st.binary(max_size=5000))
def test_one_pass_hasher_equals_separate_hashes(data: bytes) -> None:
    h = Hasher(len(data))
    for i in range(0, len(data), 777):
        h.update(data[i : i + 777])
    assert h.sha256 == hashlib.sha256(data).hexdigest()
    assert h.git_sha1 == git_hash(data)  # huggingface_hub's own implementation


def test_git_sha1_needs_the_exact_size_up_front() -> None:
    h = Hasher(10)
    h.update(b"short")
    with pytest.raises(ValueError):
        _ = h.git_sha1


def test_hash_files_on_all_cores_matches_hash_file(tmp_path: Path) -> None:
    paths = []
    for i in range(12):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * (i * 100_003))
        paths.append(p)
    assert hash_files(paths, jobs=4) == [hash_file(p) for p in paths]
    assert hash_file(paths[3]).sha256 == hashlib.sha256(paths[3].read_bytes()).hexdigest()


def test_lfs_pointer_blob_id_is_the_git_id_of_the_pointer() -> None:
    sha = "a" * 64
    pointer = lfs_pointer(sha, 1234)
    assert pointer == b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 1234\n"
    assert lfs_pointer_blob_id(sha, 1234) == git_hash(pointer)
