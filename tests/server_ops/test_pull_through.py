"""Pull-through (`serve --upstream URL --allow G…`), policy and `--lock`, against a second
in-process hubpin server on another port as the upstream."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from _ops_helpers import Faulty, mirror_app, new_store, publish_files, serve, store_files
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from hubpin.lockfile import LockedRepo, Lockfile, write_lock
from hubpin.objects import RepoKey
from hubpin.server.app import create_app
from hubpin.tokens import create_token

FILES = {
    "config.json": b'{"hidden_size": 8}',
    "tokenizer/vocab.txt": "[PAD]\n[UNK]\n東京\n".encode(),
    "model.safetensors": os.urandom(300_000),
}


@pytest.fixture
def upstream(tmp_path):
    store = new_store(tmp_path / "upstream")
    sha = publish_files(store, tmp_path, "org/tiny", FILES)
    publish_files(store, tmp_path, "other/tiny", {"a.txt": b"other"})
    faulty = Faulty(create_app(store))
    return store, sha, faulty


def _blobs(root):
    return [p for p in store_files(root) if "/blobs/" in p]


def test_cold_fill_then_served_with_the_upstream_gone(tmp_path, upstream):
    up_store, sha, faulty = upstream
    down = new_store(tmp_path / "down")
    with serve(mirror_app(down, ref_ttl=0.0)) as _plain:  # (the same app without upstream, for contrast)
        assert httpx.get(f"{_plain}/api/models/org/tiny").status_code == 404
    srv = serve(faulty)
    up_url = srv.__enter__()
    try:
        with serve(mirror_app(down, upstream=up_url, allow=["org/*"], ref_ttl=0.0)) as url:
            folder = snapshot_download("org/tiny", endpoint=url, cache_dir=tmp_path / "c1")
            for name, data in FILES.items():
                with open(os.path.join(folder, name), "rb") as f:
                    assert f.read() == data
            assert os.path.basename(folder) == sha
            # the store now holds the verified commit, its ref and every blob
            assert (tmp_path / "down" / "models--org--tiny" / "refs" / "main").read_text() == sha
            assert len(_blobs(tmp_path / "down")) == len(FILES)
            assert down.get_commit(RepoKey("model", "org/tiny"), sha).complete
            fetched = faulty.count(lambda m, p: m == "GET" and "/resolve/" in p)
            assert fetched == len(FILES)
            srv.__exit__(None, None, None)  # the upstream goes away
            srv = None
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{up_url}/healthz")
            again = snapshot_download("org/tiny", endpoint=url, cache_dir=tmp_path / "c2")
            assert Path(again, "model.safetensors").read_bytes() == FILES["model.safetensors"]
            one = hf_hub_download("org/tiny", "tokenizer/vocab.txt", revision="main", endpoint=url,
                                  cache_dir=tmp_path / "c3")
            assert Path(one).read_bytes() == FILES["tokenizer/vocab.txt"]
            metrics = httpx.get(f"{url}/metrics").text
            assert 'hubpin_upstream_fetches_total{result="ok"} ' in metrics
            assert 'hubpin_store_lookups_total{result="hit"}' in metrics
    finally:
        if srv is not None:
            srv.__exit__(None, None, None)


def _hash_failures(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("hubpin_hash_failures_total")))


def _cut_short(url: str, path: str, size: int) -> int:
    got = 0
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", url + path) as r:
        assert r.status_code == 200 and int(r.headers["content-length"]) == size
        for chunk in r.iter_raw():
            got += len(chunk)
    return got


def test_flipped_byte_is_cut_short_and_nothing_is_stored(tmp_path, upstream):
    _up, sha, faulty = upstream
    faulty.flip_byte = True
    down = new_store(tmp_path / "down")
    size = len(FILES["model.safetensors"])
    with serve(faulty) as up_url, serve(mirror_app(down, upstream=up_url, allow=["org/*"])) as url:
        failures = _hash_failures(url)
        got = _cut_short(url, f"/org/tiny/resolve/{sha}/model.safetensors", size)
        assert got < size
        # huggingface_hub gives up after its resume attempts: every attempt is one byte short
        with pytest.raises(Exception, match="complete message body|Consistency check"):
            hf_hub_download("org/tiny", "model.safetensors", revision=sha, endpoint=url, cache_dir=tmp_path / "c")
        time.sleep(0.2)
        assert _blobs(tmp_path / "down") == []
        assert [p for p in store_files(tmp_path / "down") if "spool" in p or "tmp" in p] == []
        assert _hash_failures(url) > failures
        assert not list((tmp_path / "c").rglob("model.safetensors"))


def test_denied_and_unallowed_repos_are_not_found(tmp_path, upstream):
    _up, _sha, faulty = upstream
    down = new_store(tmp_path / "down")
    with serve(faulty) as up_url:
        with serve(mirror_app(down, upstream=up_url, allow=["org/*"])) as url:
            with pytest.raises(RepositoryNotFoundError):
                HfApi(endpoint=url).model_info("other/tiny")
            with pytest.raises(RepositoryNotFoundError):
                hf_hub_download("other/tiny", "a.txt", endpoint=url, cache_dir=tmp_path / "c")
        n = len(faulty.requests)
        with serve(mirror_app(down, upstream=up_url, allow=["*"], deny=["org/tiny"])) as url:
            with pytest.raises(RepositoryNotFoundError):
                hf_hub_download("org/tiny", "config.json", endpoint=url, cache_dir=tmp_path / "c")
            assert faulty.requests[n:] == []  # never asked upstream for a denied repo
            assert HfApi(endpoint=url).model_info("other/tiny").id == "other/tiny"


def test_upstream_429_is_honoured_and_the_store_still_serves(tmp_path, upstream):
    _up, sha, faulty = upstream
    down = new_store(tmp_path / "down")
    with serve(faulty) as up_url, serve(mirror_app(down, upstream=up_url, allow=["org/*"], ref_ttl=0.0)) as url:
        faulty.fail_429, faulty.retry_after = 1, "1"
        t0 = time.monotonic()
        assert HfApi(endpoint=url).model_info("org/tiny").sha == sha
        assert time.monotonic() - t0 >= 1.0  # waited out Retry-After, then retried once
        snapshot_download("org/tiny", endpoint=url, cache_dir=tmp_path / "c1")
        # a long Retry-After: no more upstream calls in the window; the stored copy is served
        faulty.fail_429, faulty.retry_after = 1, "30"
        assert HfApi(endpoint=url).model_info("org/tiny", revision="main").sha == sha  # 429 → store fallback
        n = len(faulty.requests)
        for _ in range(3):
            assert HfApi(endpoint=url).model_info("org/tiny", revision="main").sha == sha
        assert faulty.requests[n:] == []


def test_tokens_stay_on_their_side(tmp_path, upstream):
    _up, _sha, faulty = upstream
    down = new_store(tmp_path / "down")
    client_token, _ = create_token(down, "client", read=["*"])
    (tmp_path / "up-token").write_text("hf_upstream_secret\n")
    with serve(faulty) as up_url, serve(mirror_app(down, upstream=up_url, allow=["org/*"],
                                                  upstream_token_file=tmp_path / "up-token")) as url:
        path = hf_hub_download("org/tiny", "config.json", endpoint=url, token=client_token, cache_dir=tmp_path / "c")
        assert Path(path).read_bytes() == FILES["config.json"]
    assert faulty.auth_headers and set(faulty.auth_headers) == {"Bearer hf_upstream_secret"}


def test_lock_serves_only_the_locked_commits(tmp_path, upstream):
    up_store, old_sha, faulty = upstream
    repo = RepoKey("model", "org/tiny")
    old = up_store.get_commit(repo, old_sha)
    new_sha = publish_files(up_store, tmp_path, "org/tiny", {**FILES, "config.json": b'{"hidden_size": 16}'})
    lock = tmp_path / "hubpin.lock"
    write_lock(Lockfile((LockedRepo(repo, "main", old_sha, old.files),)), lock)
    down = new_store(tmp_path / "down")
    with serve(faulty) as up_url, serve(mirror_app(down, upstream=up_url, allow=["*"], lock=lock)) as url:
        api = HfApi(endpoint=url)
        assert api.model_info("org/tiny").sha == old_sha  # main is pinned to the lock
        assert api.model_info("org/tiny", revision=old_sha[:8]).sha == old_sha
        got = hf_hub_download("org/tiny", "config.json", endpoint=url, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == FILES["config.json"]
        with pytest.raises(RevisionNotFoundError):
            api.model_info("org/tiny", revision=new_sha)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info("other/tiny")


@pytest.mark.slow
def test_sixteen_clients_share_one_upstream_fetch(tmp_path):
    size = 200 * 1024 * 1024
    up = new_store(tmp_path / "upstream")
    src = tmp_path / "big"
    src.mkdir()
    with open(src / "big.bin", "wb") as f:  # sparse: quick to make
        f.truncate(size)
    from hubpin.publish import publish

    sha = publish(src, RepoKey("model", "org/big"), up).commit.sha
    faulty = Faulty(create_app(up))
    faulty.body_delay = 0.002  # ~ a slow upstream: the 16 requests arrive while it is still streaming
    down = new_store(tmp_path / "down")
    results: list[int] = []
    errors: list[BaseException] = []

    def client(url: str, check: bool) -> None:
        try:
            n = 0
            h = hashlib.sha256()
            with httpx.stream("GET", f"{url}/org/big/resolve/{sha}/big.bin", timeout=60) as r:
                assert r.status_code == 200
                for chunk in r.iter_raw(1 << 20):
                    n += len(chunk)
                    if check:
                        h.update(chunk)
            if check:
                assert h.hexdigest() == up.get_commit(RepoKey("model", "org/big"), sha).files[0].sha256
            results.append(n)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with serve(faulty) as up_url, serve(mirror_app(down, upstream=up_url, allow=["org/*"])) as url:
        threads = [threading.Thread(target=client, args=(url, i == 0)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
    assert not errors, errors
    assert results == [size] * 16
    assert faulty.count(lambda m, p: m == "GET" and "/resolve/" in p) == 1
    assert (tmp_path / "down" / "models--org--big" / "blobs").is_dir()
    assert len(_blobs(tmp_path / "down")) == 1
