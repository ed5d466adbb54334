"""Real huggingface_hub downloads through the mirror: every revision form, errors, updates."""

from __future__ import annotations

from pathlib import Path

import pytest
from _server_helpers import tiny_fixture, unique_repo, write_folder  # noqa: F401 (the `tiny` fixture)
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError


def _files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("rev_kind", ["branch", "tag", "full_sha", "short_sha"])
def test_hf_hub_download_every_revision_form(hub, tiny, cache_dir, rev_kind):
    revision = {"branch": "main", "tag": "v1.0", "full_sha": tiny.sha, "short_sha": tiny.sha[:7]}[rev_kind]
    for path in ("config.json", "sub dir/nested file.txt", "model.safetensors"):
        local = Path(hf_hub_download(tiny.repo_id, path, revision=revision, cache_dir=cache_dir))
        assert local.read_bytes() == tiny.files[path]
        # X-Repo-Commit made the client file it under the resolved commit
        assert local.parent.name == tiny.sha or tiny.sha in local.parts
    folder = cache_dir / f"models--{tiny.repo_id.replace('/', '--')}"
    # the LFS file is cached under its sha256 (X-Linked-Etag), the others under git blob ids
    blobs = {p.name for p in (folder / "blobs").iterdir()}
    assert any(len(b) == 64 for b in blobs) and any(len(b) == 40 for b in blobs)
    if rev_kind in ("branch", "tag"):
        assert (folder / "refs" / revision).read_text() == tiny.sha


def test_hf_hub_download_pull_request_ref(hub, tiny, cache_dir):
    local = Path(hf_hub_download(tiny.repo_id, "pr.txt", revision="refs/pr/1", cache_dir=cache_dir))
    assert local.read_bytes() == tiny.pr_files["pr.txt"]
    assert tiny.pr_sha in local.parts
    folder = cache_dir / f"models--{tiny.repo_id.replace('/', '--')}"
    assert (folder / "refs" / "refs" / "pr" / "1").read_text() == tiny.pr_sha
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(tiny.repo_id, "pr.txt", revision="main", cache_dir=cache_dir)


@pytest.mark.parametrize("rev_kind", ["branch", "tag", "full_sha", "short_sha"])
def test_snapshot_download_every_revision_form(hub, tiny, cache_dir, rev_kind):
    revision = {"branch": "main", "tag": "v1.0", "full_sha": tiny.sha, "short_sha": tiny.sha[:8]}[rev_kind]
    folder = Path(snapshot_download(tiny.repo_id, revision=revision, cache_dir=cache_dir))
    assert folder.name == tiny.sha
    assert _files_of(folder) == tiny.files


def test_snapshot_download_allow_patterns(hub, tiny, cache_dir):
    folder = Path(snapshot_download(tiny.repo_id, allow_patterns=["data/**", "*.json"], cache_dir=cache_dir))
    assert _files_of(folder) == {k: v for k, v in tiny.files.items() if k.startswith("data/") or k.endswith(".json")}


def test_missing_repo_revision_file_raise_the_hub_errors(hub, tiny, cache_dir):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("srv/does-not-exist", "config.json", cache_dir=cache_dir)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("srv/does-not-exist", cache_dir=cache_dir)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(tiny.repo_id, "config.json", revision="no-such-branch", cache_dir=cache_dir)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(tiny.repo_id, revision="abcdef0", cache_dir=cache_dir)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(tiny.repo_id, "no/such/file.txt", cache_dir=cache_dir)
    # the 404 carried X-Repo-Commit, so the client recorded the absence under the commit
    no_exist = cache_dir / f"models--{tiny.repo_id.replace('/', '--')}" / ".no_exist" / tiny.sha / "no/such/file.txt"
    assert no_exist.exists()


def test_republish_identical_is_same_commit_and_old_commits_stay_served(hub, tmp_path, cache_dir):
    repo_id = unique_repo("srv/update")
    v1 = {"config.json": b'{"v": 1}', "weights.safetensors": b"\x01" * 500}
    sha1 = hub.publish(write_folder(tmp_path / "v1", v1), repo_id)
    assert hub.publish(write_folder(tmp_path / "v1-again", v1), repo_id) == sha1
    v2 = {**v1, "config.json": b'{"v": 2}'}
    sha2 = hub.publish(write_folder(tmp_path / "v2", v2), repo_id)
    assert sha2 != sha1
    latest = Path(hf_hub_download(repo_id, "config.json", cache_dir=cache_dir))
    assert latest.read_bytes() == b'{"v": 2}' and sha2 in latest.parts
    old = Path(hf_hub_download(repo_id, "config.json", revision=sha1, cache_dir=cache_dir / "other"))
    assert old.read_bytes() == b'{"v": 1}'
    assert _files_of(Path(snapshot_download(repo_id, revision=sha1, cache_dir=cache_dir / "third"))) == v1


def test_dataset_repo(hub, tmp_path, cache_dir):
    repo_id = unique_repo("srv/ds")
    files = {"README.md": b"---\nlicense: mit\n---\n# tiny\n", "data/train.csv": b"text,label\nhi,1\n"}
    sha = hub.publish(write_folder(tmp_path / "ds", files), repo_id, dataset=True)
    local = Path(hf_hub_download(repo_id, "data/train.csv", repo_type="dataset", cache_dir=cache_dir))
    assert local.read_bytes() == files["data/train.csv"]
    assert f"datasets--{repo_id.replace('/', '--')}" in local.parts
    folder = Path(snapshot_download(repo_id, repo_type="dataset", cache_dir=cache_dir))
    assert folder.name == sha and _files_of(folder) == files
    # a dataset is not a model: the model URL of the same id is a missing repo
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "README.md", cache_dir=cache_dir)
