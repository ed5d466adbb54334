"""Serving an ordinary HF cache that huggingface_hub itself filled (no hubpin metadata)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _server_helpers import tiny_fixture  # noqa: F401 (the `tiny` fixture)
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError

from hubpin.server.app import create_app
from hubpin.server.runner import serve_in_thread
from hubpin.store import LocalStore


def _files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_serve_a_cache_filled_by_snapshot_download(hub, tiny, tmp_path):
    filled = tmp_path / "filled-by-hf"
    snapshot_download(tiny.repo_id, cache_dir=filled)  # from the session hub, by huggingface_hub itself
    assert not (filled / ".hubpin").exists()
    with serve_in_thread(create_app(LocalStore(filled))) as url:
        api = HfApi(endpoint=url)
        info = api.model_info(tiny.repo_id, files_metadata=True)
        assert info.sha == tiny.sha
        sib = {s.rfilename: s for s in info.siblings}
        assert set(sib) == set(tiny.files) and sib["model.safetensors"].lfs is not None
        out = Path(snapshot_download(tiny.repo_id, cache_dir=tmp_path / "second", endpoint=url))
        assert out.name == tiny.sha and _files_of(out) == tiny.files
        one = hf_hub_download(tiny.repo_id, "sub dir/nested file.txt", revision=tiny.sha[:7],
                              cache_dir=tmp_path / "third", endpoint=url)
        assert Path(one).read_bytes() == tiny.files["sub dir/nested file.txt"]


def test_serve_a_partial_cache_lists_what_is_there(hub, tiny, tmp_path):
    partial = tmp_path / "partial"
    hf_hub_download(tiny.repo_id, "config.json", cache_dir=partial)
    hf_hub_download(tiny.repo_id, "model.safetensors", cache_dir=partial)
    assert not (partial / f"models--{tiny.repo_id.replace('/', '--')}" / "trees").exists()
    with serve_in_thread(create_app(LocalStore(partial))) as url:
        api = HfApi(endpoint=url)
        assert sorted(api.list_repo_files(tiny.repo_id)) == ["config.json", "model.safetensors"]
        out = Path(snapshot_download(tiny.repo_id, cache_dir=tmp_path / "again", endpoint=url))
        assert _files_of(out) == {k: tiny.files[k] for k in ("config.json", "model.safetensors")}
        # the LFS file keeps its sha256 etag, so a cache built through us matches the Hub's
        blob = out / "model.safetensors"
        assert len(blob.resolve().name) == 64
        with pytest.raises(EntryNotFoundError):
            hf_hub_download(tiny.repo_id, "data/b.txt", cache_dir=tmp_path / "again", endpoint=url)


def test_a_blob_of_the_wrong_size_is_never_served(tmp_path):
    """A truncated blob (disk trouble, a hand-edited cache) answers 500, not short bytes."""
    import httpx
    from _server_helpers import write_folder

    from hubpin.objects import RepoKey
    from hubpin.publish import publish

    store = LocalStore(tmp_path / "store", fsync=False)
    commit = publish(write_folder(tmp_path / "src", {"w.safetensors": b"x" * 4096}), RepoKey("model", "org/c"), store).commit
    blob = store.local_blob_path(RepoKey("model", "org/c"), commit.files[0].etag)
    assert blob is not None
    blob.write_bytes(b"x" * 100)
    with serve_in_thread(create_app(store)) as url:
        for method in ("HEAD", "GET"):
            r = httpx.request(method, f"{url}/org/c/resolve/main/w.safetensors")
            assert r.status_code == 500 and r.headers["x-error-code"] == "StoreCorrupt"
            assert r.headers.get("content-length") != "4096"


def test_a_partial_snapshot_download_lists_only_what_is_there(hub, tiny, tmp_path):
    """snapshot_download(allow_patterns=…) still writes the FULL trees/<sha>.json: serving that
    cache must not list (and then fail to deliver) the files it never downloaded."""
    partial = tmp_path / "json-only"
    snapshot_download(tiny.repo_id, allow_patterns=["*.json"], cache_dir=partial)
    tree = partial / f"models--{tiny.repo_id.replace('/', '--')}" / "trees" / f"{tiny.sha}.json"
    assert tree.exists() and "model.safetensors" in tree.read_text()  # the full listing, as hf wrote it
    with serve_in_thread(create_app(LocalStore(partial))) as url:
        api = HfApi(endpoint=url)
        assert api.list_repo_files(tiny.repo_id) == ["config.json"]
        assert [s.rfilename for s in api.model_info(tiny.repo_id).siblings] == ["config.json"]
        assert api.model_info(tiny.repo_id).sha == tiny.sha
        assert not api.file_exists(tiny.repo_id, "model.safetensors")
        out = Path(snapshot_download(tiny.repo_id, cache_dir=tmp_path / "again", endpoint=url))
        assert _files_of(out) == {"config.json": tiny.files["config.json"]}


def test_a_symlink_free_cache_serves_its_real_files(tmp_path):
    """HF_HUB_DISABLE_SYMLINKS caches (Windows without Developer Mode) keep the bytes in snapshots/."""
    import httpx

    from hubpin.hashing import git_blob_id

    sha = "b" * 40
    repo = tmp_path / "cache" / "models--org--real"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha / "sub"
    snap.mkdir(parents=True)
    data = b'{"real": true}'
    (snap / "config.json").write_bytes(data)
    with serve_in_thread(create_app(LocalStore(tmp_path / "cache"))) as url:
        r = httpx.get(f"{url}/org/real/resolve/main/sub/config.json")
        assert r.status_code == 200 and r.content == data
        assert r.headers["x-repo-commit"] == sha and r.headers["etag"] == f'"{git_blob_id(data)}"'
        out = hf_hub_download("org/real", "sub/config.json", cache_dir=tmp_path / "client", endpoint=url)
        assert Path(out).read_bytes() == data
