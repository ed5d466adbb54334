import pytest

from hostile_names import SAFE_FILENAMES, UNSAFE_FILENAMES
from hubpin.errors import UnsafePathError
from hubpin.paths import (
    is_commit_sha,
    repo_folder_name,
    safe_relpath,
    validate_repo_id,
    validate_revision,
)


@pytest.mark.parametrize("name", UNSAFE_FILENAMES)
def test_hostile_file_names_are_rejected(name: str) -> None:
    with pytest.raises(UnsafePathError) as exc:
        safe_relpath(name)
    assert exc.value.exit_code == 2
    assert "\n" not in str(exc.value).replace("\\n", "")  # one-line message


@pytest.mark.parametrize("name", SAFE_FILENAMES)
def test_ordinary_file_names_pass_unchanged(name: str) -> None:
    assert safe_relpath(name) == name


@pytest.mark.parametrize("bad", [None, 3, b"config.json"])
def test_non_strings_are_rejected(bad: object) -> None:
    with pytest.raises(UnsafePathError):
        safe_relpath(bad)


@pytest.mark.parametrize("repo_id", ["gpt2", "org/name", "cl-tohoku/bert-base-japanese-whole-word-masking", "a_b/c.d"])
def test_hub_repo_ids_are_accepted(repo_id: str) -> None:
    assert validate_repo_id(repo_id) == repo_id


@pytest.mark.parametrize(
    "repo_id", ["", "a/b/c", "../x", "org/..", "org/na--me", "org/x.git", "-org/x", "org/x y", "org/" + "x" * 97, "/x"]
)
def test_malformed_repo_ids_are_rejected(repo_id: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_repo_id(repo_id)


@pytest.mark.parametrize("rev", ["main", "v1.0", "refs/pr/1", "refs/convert/parquet", "a" * 40, "release-2024_01"])
def test_revisions_are_accepted(rev: str) -> None:
    assert validate_revision(rev) == rev


@pytest.mark.parametrize("rev", ["", "../main", "refs/../x", "/main", "a//b", "x.lock", "ma in", "main\n", ".hidden"])
def test_unsafe_revisions_are_rejected(rev: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_revision(rev)


def test_only_full_lowercase_hex_counts_as_a_commit() -> None:
    assert is_commit_sha("0123456789abcdef0123456789abcdef01234567")
    assert not is_commit_sha("0123456789ABCDEF0123456789abcdef01234567")
    assert not is_commit_sha("0123456")


def test_repo_folder_names_match_the_hf_cache() -> None:
    assert repo_folder_name("model", "org/name") == "models--org--name"
    assert repo_folder_name("dataset", "org/ds") == "datasets--org--ds"
    assert repo_folder_name("model", "gpt2") == "models--gpt2"
