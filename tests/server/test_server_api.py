"""The `/api/` endpoints through HfApi, plus the raw wire details clients depend on."""

from __future__ import annotations

import json

import httpx
import pytest
from _server_helpers import tiny_fixture, unique_repo, write_folder  # noqa: F401 (the `tiny` fixture)
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile, RepoFolder

from hubpin.hashing import git_blob_id
from hubpin.server.app import create_app
from hubpin.server.config import ServerConfig
from hubpin.server.runner import serve_in_thread


def test_model_info_with_and_without_revision(hub, tiny):
    api = HfApi()
    info = api.model_info(tiny.repo_id, files_metadata=True)
    assert info.id == tiny.repo_id and info.sha == tiny.sha
    assert info.private is False and info.gated is False and info.disabled is False
    assert info.last_modified is not None
    sib = {s.rfilename: s for s in info.siblings}
    assert set(sib) == set(tiny.files)
    assert sib["config.json"].blob_id == git_blob_id(tiny.files["config.json"])
    assert sib["config.json"].lfs is None
    lfs = sib["model.safetensors"].lfs
    assert lfs is not None and lfs.size == 3000 and sib["model.safetensors"].size == 3000
    assert lfs.sha256 == __import__("hashlib").sha256(tiny.files["model.safetensors"]).hexdigest()
    assert api.model_info(tiny.repo_id, revision="refs/pr/1").sha == tiny.pr_sha
    assert api.model_info(tiny.repo_id, revision=tiny.sha[:10]).sha == tiny.sha
    # expand= repeated and expand[]= are accepted
    r = httpx.get(f"{hub.url}/api/models/{tiny.repo_id}?expand=sha&expand=siblings&expand[]=lastModified")
    assert r.status_code == 200 and r.json()["sha"] == tiny.sha
    with pytest.raises(RevisionNotFoundError):
        api.model_info(tiny.repo_id, revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("srv/missing-repo")
    assert api.repo_exists(tiny.repo_id) and not api.repo_exists("srv/missing-repo")
    assert not api.repo_exists(tiny.repo_id, repo_type="space")  # spaces are never mirrored


def test_list_files_refs_file_exists(hub, tiny):
    api = HfApi()
    assert sorted(api.list_repo_files(tiny.repo_id)) == sorted(tiny.files)
    assert "pr.txt" in api.list_repo_files(tiny.repo_id, revision="refs/pr/1")
    refs = api.list_repo_refs(tiny.repo_id, include_pull_requests=True)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": tiny.sha, "v1.0": tiny.sha}
    assert [(p.ref, p.target_commit) for p in refs.pull_requests] == [("refs/pr/1", tiny.pr_sha)]
    assert api.file_exists(tiny.repo_id, "sub dir/nested file.txt")
    assert not api.file_exists(tiny.repo_id, "nope.txt")
    assert api.file_exists(tiny.repo_id, "pr.txt", revision="refs/pr/1")


def test_list_repo_tree(hub, tiny):
    api = HfApi()
    entries = list(api.list_repo_tree(tiny.repo_id, recursive=True))
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    dirs = {e.path for e in entries if isinstance(e, RepoFolder)}
    assert set(files) == set(tiny.files)
    assert dirs == {"data", "data/part", "sub dir"}  # recursive listings include folders
    assert files["model.safetensors"].lfs.size == 3000
    top = {e.path for e in api.list_repo_tree(tiny.repo_id)}
    assert top == {"config.json", "model.safetensors", "data", "sub dir"}
    sub = {e.path for e in api.list_repo_tree(tiny.repo_id, path_in_repo="data")}
    assert sub == {"data/b.txt", "data/part"}
    expanded = list(api.list_repo_tree(tiny.repo_id, path_in_repo="data/part", expand=True))
    assert [e.path for e in expanded] == ["data/part/a.txt"] and expanded[0].last_commit is not None
    # a missing folder is EntryNotFound, never RepoNotFound (transformers' chat-template probe)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(tiny.repo_id, path_in_repo="additional_chat_templates"))


def test_tree_oids_are_git_tree_ids(hub, tiny, tmp_path):
    """Folder oids equal what git computes, so they are stable and comparable with the Hub."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    folder = write_folder(tmp_path / "g", {k: v for k, v in tiny.files.items() if not k.endswith(".safetensors")})
    repo_id = unique_repo("srv/gittree")
    hub.publish(folder, repo_id)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    subprocess.run(["git", "-C", str(folder), "add", "-A"], check=True)
    tree = subprocess.run(["git", "-C", str(folder), "write-tree"], check=True, capture_output=True, text=True).stdout
    sub = subprocess.run(["git", "-C", str(folder), "rev-parse", f"{tree.strip()}:data"], check=True,
                         capture_output=True, text=True).stdout.strip()
    dirs = {e.path: e.tree_id for e in HfApi().list_repo_tree(repo_id) if isinstance(e, RepoFolder)}
    assert dirs["data"] == sub


def test_paths_info(hub, tiny):
    infos = HfApi().get_paths_info(tiny.repo_id, ["config.json", "data", "missing.txt", "sub dir/nested file.txt"])
    by_path = {i.path: i for i in infos}
    assert set(by_path) == {"config.json", "data", "sub dir/nested file.txt"}  # missing silently omitted
    assert isinstance(by_path["data"], RepoFolder)
    assert by_path["config.json"].blob_id == git_blob_id(tiny.files["config.json"])


def test_list_repo_commits(hub, tmp_path):
    repo_id = unique_repo("srv/commits")
    sha1 = hub.publish(write_folder(tmp_path / "a", {"f.txt": b"1"}), repo_id)
    sha2 = hub.publish(write_folder(tmp_path / "b", {"f.txt": b"2"}), repo_id)
    commits = HfApi().list_repo_commits(repo_id)
    assert [c.commit_id for c in commits] == [sha2, sha1]


def test_pagination_link_is_absolute_and_complete(hub, tiny):
    """Page size 3 (injected) over 8 entries: 3 pages, absolute `next` links back to this server."""
    with serve_in_thread(create_app(hub.store, ServerConfig(page_size=3, expand_page_size=2))) as url:
        r = httpx.get(f"{url}/api/models/{tiny.repo_id}/tree/main?recursive=true")
        assert r.status_code == 200 and len(r.json()) == 3
        nxt = r.links["next"]["url"]
        assert nxt.startswith(f"{url}/api/models/{tiny.repo_id}/tree/main?") and "recursive=true" in nxt
        api = HfApi(endpoint=url)
        entries = list(api.list_repo_tree(tiny.repo_id, recursive=True))
        assert len(entries) == len(tiny.files) + 3 and len({e.path for e in entries}) == len(entries)
        assert len(list(api.list_repo_tree(tiny.repo_id, recursive=True, expand=True))) == len(entries)
        # behind a TLS proxy the link keeps the address the client used
        r = httpx.get(f"{url}/api/models/{tiny.repo_id}/tree/main?recursive=true",
                      headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hub.example:8443"})
        assert r.links["next"]["url"].startswith(f"https://hub.example:8443/api/models/{tiny.repo_id}/tree/main?")
        r = httpx.get(f"{url}/api/models/{tiny.repo_id}/tree/main?recursive=true",
                      headers={"X-Forwarded-Host": "evil/path"})  # not a host: ignored
        assert r.links["next"]["url"].startswith(url)
        # an encoded revision survives into the link verbatim
        r = httpx.get(f"{url}/api/models/{tiny.repo_id}/tree/refs%2Fpr%2F1?recursive=true")
        assert "/tree/refs%2Fpr%2F1?" in r.links["next"]["url"]


def test_whoami_harnesses_healthz(hub):
    with pytest.raises(Exception) as e:
        HfApi().whoami(token=False)  # noqa: S106 - no token
    assert "401" in str(e.value) or "token" in str(e.value).lower()
    assert HfApi().whoami(token="anything")["name"]
    r = httpx.get(f"{hub.url}/api/agent-harnesses")
    assert r.json() == {"standardEnvVars": [], "harnesses": {}}
    assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok"}


def test_every_4xx_has_error_code_and_json(hub, tiny):
    cases = {
        ("GET", f"/{tiny.repo_id}/resolve/main/nope"): 404,
        ("GET", f"/{tiny.repo_id}/resolve/nope/config.json"): 404,
        ("GET", "/srv/none/resolve/main/config.json"): 404,
        ("POST", f"/{tiny.repo_id}/resolve/main/config.json"): 405,
        ("GET", f"/api/models/{tiny.repo_id}/paths-info/main"): 405,
        ("GET", "/no/such/endpoint"): 404,
        ("GET", f"/api/models/{tiny.repo_id}/tree/main?cursor=x"): 400,
        ("GET", "/api/whoami-v2"): 401,
        ("GET", "/api/spaces/org/app"): 404,
        ("GET", "/spaces/org/app/resolve/main/app.py"): 404,
    }
    for (method, path), status in cases.items():
        r = httpx.request(method, hub.url + path, headers={"X-Amzn-Trace-Id": "trace-123"})
        assert r.headers.get("x-request-id") == "trace-123"  # quoted in the client's error message
        assert r.status_code == status, (method, path, r.status_code)
        assert r.headers.get("x-error-code"), (method, path)
        assert r.headers.get("x-error-message") and "error" in r.json()


def test_no_xet_signal_anywhere(hub, tiny):
    """A xetHash or X-Xet-* header would switch hf_xet clients onto the Xet path."""
    base = f"{hub.url}/api/models/{tiny.repo_id}"
    responses = [
        httpx.head(f"{hub.url}/{tiny.repo_id}/resolve/main/model.safetensors"),
        httpx.get(f"{hub.url}/{tiny.repo_id}/resolve/main/model.safetensors"),
        httpx.get(f"{base}/tree/main?recursive=true&expand=true"),
        httpx.get(f"{base}?blobs=true"),
        httpx.post(f"{base}/paths-info/main", data={"paths": ["model.safetensors"], "expand": "true"}),
    ]
    for r in responses:
        assert r.status_code == 200
        assert not [h for h in r.headers if h.lower().startswith("x-xet")]
        assert "xet" not in r.headers.get("link", "").lower()
    for r in responses[2:]:
        assert "xet" not in json.dumps(r.json()).lower()
    # and the resolve answer is plain identity bytes even when the client offers gzip
    r = httpx.get(f"{hub.url}/{tiny.repo_id}/resolve/main/config.json", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers and r.content == tiny.files["config.json"]


def test_resolve_headers(hub, tiny):
    r = httpx.head(f"{hub.url}/{tiny.repo_id}/resolve/main/model.safetensors")
    sha256 = __import__("hashlib").sha256(tiny.files["model.safetensors"]).hexdigest()
    assert r.headers["x-repo-commit"] == tiny.sha
    assert r.headers["etag"] == f'"{sha256}"' and r.headers["x-linked-etag"] == f'"{sha256}"'
    assert r.headers["x-linked-size"] == "3000" and r.headers["content-length"] == "3000"
    assert r.headers["accept-ranges"] == "bytes"
    r = httpx.head(f"{hub.url}/{tiny.repo_id}/resolve/main/config.json")
    assert r.headers["etag"] == f'"{git_blob_id(tiny.files["config.json"])}"'
    assert "x-linked-etag" not in r.headers
    assert r.headers["content-length"] == str(len(tiny.files["config.json"]))
    # revision as one encoded segment and in the legacy unencoded form
    for rev in ("refs%2Fpr%2F1", "refs/pr/1"):
        r = httpx.get(f"{hub.url}/{tiny.repo_id}/resolve/{rev}/pr.txt")
        assert r.status_code == 200 and r.headers["x-repo-commit"] == tiny.pr_sha
    # tree paths are one encoded segment too
    r = httpx.get(f"{hub.url}/api/models/{tiny.repo_id}/tree/main/data%2Fpart")
    assert [e["path"] for e in r.json()] == ["data/part/a.txt"]


class _DenyOne:
    """An access hook hiding one repo from everyone but token 'ok'."""

    def __init__(self, hidden: str) -> None:
        self.hidden = hidden

    def can_read(self, token, repo):
        return repo.id != self.hidden or token == "ok"

    def whoami(self, token):
        return {"name": "ok", "type": "user"} if token == "ok" else None


def test_unreadable_repo_answers_exactly_like_a_missing_one(hub, tiny):
    with serve_in_thread(create_app(hub.store, ServerConfig(access=_DenyOne(tiny.repo_id)))) as url:
        for suffix in ("/resolve/main/config.json", ""):
            paths = [f"/{tiny.repo_id}{suffix}", f"/srv/never-existed{suffix}"] if suffix else [
                f"/api/models/{tiny.repo_id}", "/api/models/srv/never-existed"]
            hidden, missing = (httpx.get(url + p) for p in paths)
            assert hidden.status_code == missing.status_code == 404
            assert hidden.headers["x-error-code"] == missing.headers["x-error-code"] == "RepoNotFound"
        ok = httpx.get(f"{url}/{tiny.repo_id}/resolve/main/config.json", headers={"Authorization": "Bearer ok"})
        assert ok.status_code == 200 and ok.content == tiny.files["config.json"]
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=url).model_info(tiny.repo_id)
        assert HfApi(endpoint=url).model_info(tiny.repo_id, token="ok").sha == tiny.sha


def test_source_subclass_lookups_run_off_the_event_loop(hub, tiny):
    """A pull-through Source may block on the network: its lookups must never run on the loop."""
    import threading

    from hubpin.server._source import Source

    seen: list[str] = []

    class Recording(Source):
        def resolve(self, repo, revision):
            seen.append(threading.current_thread().name)
            return super().resolve(repo, revision)

    source = Recording(hub.store)
    assert source.inline is False and Source(hub.store).inline is True
    with serve_in_thread(create_app(hub.store, ServerConfig(source=source))) as url:
        r = httpx.head(f"{url}/{tiny.repo_id}/resolve/main/config.json")
        assert r.status_code == 200 and r.headers["x-repo-commit"] == tiny.sha
        loop_thread = f"hubpin-serve-{url.rsplit(':', 1)[1]}"
    assert seen and loop_thread not in seen


def test_dataset_info_and_convert_refs(hub, tmp_path):
    repo_id = unique_repo("srv/dsinfo")
    files = {"README.md": b"# ds\n", "data/train.csv": b"a,b\n1,2\n"}
    sha = hub.publish(write_folder(tmp_path / "ds", files), repo_id, dataset=True)
    parquet = {"default/train/0000.parquet": b"PAR1fake"}
    conv = hub.publish(write_folder(tmp_path / "pq", parquet), repo_id, dataset=True, revision="refs/convert/parquet")
    api = HfApi()
    info = api.dataset_info(repo_id, files_metadata=True)
    assert info.id == repo_id and info.sha == sha and {s.rfilename for s in info.siblings} == set(files)
    assert api.dataset_info(repo_id, revision="refs/convert/parquet").sha == conv
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    assert [(c.ref, c.target_commit) for c in refs.converts] == [("refs/convert/parquet", conv)]
    for rev in ("refs%2Fconvert%2Fparquet", "refs/convert/parquet"):
        r = httpx.get(f"{hub.url}/datasets/{repo_id}/resolve/{rev}/default/train/0000.parquet")
        assert r.status_code == 200 and r.content == b"PAR1fake" and r.headers["x-repo-commit"] == conv
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset", revision="refs/convert/parquet")) == list(parquet)


def test_real_page_size_over_a_thousand_files(hub):
    """The Hub's own page size (1000): 2100 files + 3 folders need three pages, each entry listed once.

    The listing only needs metadata, so a Source serves a synthetic commit (no 2100 files on disk).
    """
    import hashlib

    from hubpin.objects import Commit, FileEntry, RepoKey
    from hubpin.server._source import Source

    files = tuple(FileEntry(f"d{i % 3}/f{i:04d}.txt", 1, hashlib.sha1(str(i).encode()).hexdigest()) for i in range(2100))
    commit = Commit(sha="c" * 40, files=files)
    repo = RepoKey("model", "srv/many")

    class Synthetic(Source):
        def has_repo(self, r):
            return r == repo

        def resolve(self, r, revision):
            return commit.sha if r == repo and revision in ("main", commit.sha) else None

        def get_commit(self, r, sha):
            return commit if r == repo and sha == commit.sha else None

    with serve_in_thread(create_app(hub.store, ServerConfig(source=Synthetic(hub.store)))) as url:
        r = httpx.get(f"{url}/api/models/srv/many/tree/main?recursive=true")
        assert len(r.json()) == 1000 and r.links["next"]["url"].startswith(url)
        entries = list(HfApi(endpoint=url).list_repo_tree("srv/many", recursive=True))
        assert len(entries) == 2103 and {e.path for e in entries if isinstance(e, RepoFile)} == {f.path for f in files}
        assert len(HfApi(endpoint=url).list_repo_files("srv/many")) == 2100


def test_resolve_by_commit_sha_reads_the_file_list_once(hub, tiny):
    """`hubpin sync` asks for every file by its commit: the file list is read from the store once,
    not once per request (a 1,000-file repo cost ~3 ms of JSON parsing per GET before)."""
    from hubpin.store import LocalStore

    reads: list[str] = []

    class Counting(LocalStore):
        def get_commit(self, repo, sha):
            reads.append(sha)
            return super().get_commit(repo, sha)

    store = Counting(hub.store.root)
    with serve_in_thread(create_app(store)) as url:
        for _ in range(3):
            for name in ("config.json", "model.safetensors"):
                r = httpx.get(f"{url}/{tiny.repo_id}/resolve/{tiny.sha}/{name}")
                assert r.status_code == 200 and r.content == tiny.files[name]
        missing = httpx.get(f"{url}/{tiny.repo_id}/resolve/{'0' * 40}/config.json")
        assert missing.headers["x-error-code"] == "RevisionNotFound"
    assert reads.count(tiny.sha) == 1
