import os
from pathlib import Path

import pytest
from huggingface_hub.utils.sha import git_hash

from harness import run_cli
from hostile_names import UNSAFE_FILENAMES
from hubpin.errors import UnsafePathError
from hubpin.objects import RepoKey
from hubpin.publish import LFS_THRESHOLD, is_lfs, publish
from hubpin.store import LocalStore

REPO = RepoKey("model", "org/tiny")


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"a": 1}')
    (root / "model.safetensors").write_bytes(b"\1" * 2048)
    return root


def _store_files(store: LocalStore) -> list[str]:
    return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*")) if store.root.exists() else []


def test_same_folder_twice_gives_the_same_commit(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    src = _folder(tmp_path / "src")
    first = publish(src, REPO, store)
    second = publish(src, REPO, store)
    assert first.created and not second.created
    assert second.commit.sha == first.commit.sha
    assert second.new_blobs == 0


def test_commit_ids_are_deterministic_across_stores(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    a = publish(src, REPO, LocalStore(tmp_path / "a")).commit.sha
    b = publish(src, REPO, LocalStore(tmp_path / "b")).commit.sha
    assert a == b and len(a) == 40


def test_a_changed_file_makes_a_new_commit_and_keeps_the_old(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    src = _folder(tmp_path / "src")
    old = publish(src, REPO, store).commit
    (src / "config.json").write_text('{"a": 2}')
    new = publish(src, REPO, store).commit
    assert new.sha != old.sha and new.parent == old.sha
    assert store.resolve(REPO, "main") == new.sha
    kept = store.get_commit(REPO, old.sha)
    assert kept is not None and kept.file("config.json").etag == git_hash(b'{"a": 1}')


def test_tags_are_refs_too(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    sha = publish(_folder(tmp_path / "src"), REPO, store, revision="v1.0").commit.sha
    assert store.list_refs(REPO) == {"v1.0": sha}


def test_lfs_classification_follows_the_hub(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    (src / ".gitattributes").write_text("*.custom filter=lfs diff=lfs merge=lfs -text\n")
    (src / "weights.custom").write_bytes(b"x" * 10)
    (src / "big.txt").write_bytes(b"y" * (LFS_THRESHOLD + 1))
    commit = publish(src, REPO, LocalStore(tmp_path / "store")).commit
    lfs = {f.path: f.lfs for f in commit.files}
    assert lfs == {".gitattributes": False, "big.txt": True, "config.json": False,
                   "model.safetensors": True, "weights.custom": True}
    cfg = commit.file("config.json")
    assert cfg.etag == git_hash(b'{"a": 1}')
    st = commit.file("model.safetensors")
    assert st.etag == st.sha256


@pytest.mark.parametrize(
    ("path", "size", "expected"),
    [("a/b/model.bin", 1, True), ("tokenizer.json", 100, False), ("saved_model/variables/x", 1, True), ("x.tar.gz", 1, True)],
)
def test_default_lfs_patterns(path: str, size: int, expected: bool) -> None:
    from hubpin.publish import DEFAULT_LFS_PATTERNS

    assert is_lfs(path, size, DEFAULT_LFS_PATTERNS) is expected


def test_symlinks_inside_the_folder_are_published_as_files(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    (src / "alias.json").symlink_to("config.json")
    commit = publish(src, REPO, LocalStore(tmp_path / "store")).commit
    assert commit.file("alias.json").etag == commit.file("config.json").etag


def test_a_symlink_leaving_the_folder_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    src = _folder(tmp_path / "src")
    (src / "leak.txt").symlink_to(secret)
    store = LocalStore(tmp_path / "store")
    with pytest.raises(UnsafePathError, match="symlink leaves the folder"):
        publish(src, REPO, store)
    assert _store_files(store) == []


def test_special_files_are_refused(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    os.mkfifo(src / "pipe")
    store = LocalStore(tmp_path / "store")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        publish(src, REPO, store)
    assert _store_files(store) == []


@pytest.mark.parametrize("name", [n for n in UNSAFE_FILENAMES if "/" not in n and n not in ("", "..") and "\0" not in n and len(n) < 255])
def test_hostile_names_in_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    src = _folder(tmp_path / "src")
    (src / name).write_text("x")
    store = LocalStore(tmp_path / "store")
    with pytest.raises(UnsafePathError):
        publish(src, REPO, store)
    assert _store_files(store) == []


def test_cli_publish_reports_one_line_errors_with_exit_code_2(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    (src / "leak").symlink_to("/etc/passwd")
    result = run_cli("publish", str(src), "org/tiny", "--store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "/etc/passwd" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    ok = run_cli("publish", str(_folder(tmp_path / "ok")), "org/tiny", "--store", str(tmp_path / "store"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert '"created": true' in ok.stdout
