"""Tokens (security.md §5 case 19): CLI, scopes, private == missing, whoami, nothing leaked."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
import pytest
from _ops_helpers import mirror_app, new_store, publish_files, serve
from click.testing import CliRunner
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError

from hubpin.cli import main
from hubpin.tokens import create_token, revoke_token


@pytest.fixture
def mirror(tmp_path):
    store = new_store(tmp_path / "store")
    publish_files(store, tmp_path, "team/model", {"config.json": b'{"team": 1}'})
    publish_files(store, tmp_path, "secret/model", {"config.json": b'{"secret": 1}'})
    publish_files(store, tmp_path, "team/data", {"data.csv": b"a,b\n1,2\n"}, dataset=True)
    reader, _ = create_token(store, "reader", read=["team/*"])
    writer, _ = create_token(store, "writer", read=["datasets/team/*"], write=["team/*"])
    with serve(mirror_app(store, public=["public/*"])) as url:
        yield store, url, reader, writer


def _get(url, path, token=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + path, headers=headers)


def test_token_cli_shows_secret_once_and_stores_only_a_hash(tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "s")
    res = runner.invoke(main, ["token", "create", "ci", "--read", "org/*", "--write", "org/x", "--store", store])
    assert res.exit_code == 0, res.output
    secret = res.stdout.strip().splitlines()[0]
    assert secret.startswith("hp_") and len(secret) > 40
    raw = (tmp_path / "s" / ".hubpin" / "tokens.json").read_text()
    assert secret not in raw and json.loads(raw)["tokens"][0]["name"] == "ci"
    listed = runner.invoke(main, ["token", "list", "--json", "--store", store])
    assert listed.exit_code == 0 and secret not in listed.output
    assert json.loads(listed.stdout) == [{"name": "ci", "read": ["org/*"], "write": ["org/x"], "expires": None,
                                          "created": json.loads(listed.stdout)[0]["created"]}]
    timed = runner.invoke(main, ["token", "create", "tmp", "--read", "*", "--expires-days", "1", "--json",
                                 "--store", store])
    assert timed.exit_code == 0 and json.loads(timed.stdout)["expires"] > json.loads(timed.stdout)["created"]
    assert runner.invoke(main, ["token", "create", "t0", "--read", "*", "--expires-days", "0",
                                "--store", store]).exit_code == 2
    dup = runner.invoke(main, ["token", "create", "ci", "--read", "*", "--store", store])
    assert dup.exit_code == 2 and "already exists" in dup.stderr
    assert runner.invoke(main, ["token", "revoke", "ci", "--store", store]).exit_code == 0
    gone = runner.invoke(main, ["token", "revoke", "ci", "--store", store])
    assert gone.exit_code == 2 and "error: token ci not found" in gone.stderr and "hint:" in gone.stderr
    none = runner.invoke(main, ["token", "create", "x", "--store", store])
    assert none.exit_code == 2 and "no scope" in none.stderr


def test_missing_wrong_and_revoked_tokens(mirror):
    store, url, reader, _writer = mirror
    assert _get(url, "/api/models/team/model", reader).status_code == 200
    for token in (None, "hp_wrong", reader + "x"):
        r = _get(url, "/api/models/team/model", token)
        assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    revoke_token(store, "reader")
    r = _get(url, "/api/models/team/model", reader)
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    # expired: same answer as unknown, and whoami refuses it
    old, _ = create_token(store, "old", read=["*"], expires_in=timedelta(seconds=-1))
    live, _ = create_token(store, "live", read=["*"], expires_in=timedelta(hours=1))
    assert _get(url, "/api/models/team/model", live).status_code == 200
    r = _get(url, "/api/models/team/model", old)
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    assert _get(url, "/api/whoami-v2", old).status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("team/model", "config.json", endpoint=url, token=reader, cache_dir=store.root / "c")


def test_read_scope_globs_and_datasets_prefix(mirror):
    _store, url, reader, writer = mirror
    assert _get(url, "/team/model/resolve/main/config.json", reader).content == b'{"team": 1}'
    assert _get(url, "/api/models/secret/model", reader).status_code == 404
    # "team/*" does not reach datasets: they are matched as datasets/team/...
    assert _get(url, "/api/datasets/team/data", reader).status_code == 404
    assert _get(url, "/api/datasets/team/data", writer).status_code == 200
    # write scope implies read
    assert _get(url, "/api/models/team/model", writer).status_code == 200
    api = HfApi(endpoint=url, token=reader)
    assert api.model_info("team/model").id == "team/model"


def test_private_repo_answers_exactly_like_a_missing_one(mirror):
    _store, url, reader, _ = mirror
    for path in ("/api/models/{}", "/api/models/{}/revision/main", "/{}/resolve/main/config.json",
                 "/api/models/{}/tree/main", "/api/models/{}/refs"):
        hidden = _get(url, path.format("secret/model"), reader)
        missing = _get(url, path.format("secret/nothing"), reader)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.headers["x-error-code"] == missing.headers["x-error-code"] == "RepoNotFound"
        strip = {"date", "content-length", "x-error-message"}
        assert {k: v for k, v in hidden.headers.items() if k not in strip} == \
               {k: v for k, v in missing.headers.items() if k not in strip}
        assert hidden.text.replace("secret/model", "X") == missing.text.replace("secret/nothing", "X")
    h = httpx.head(f"{url}/secret/model/resolve/main/config.json", headers={"authorization": f"Bearer {reader}"})
    assert h.status_code == 404 and h.headers["x-error-code"] == "RepoNotFound"


def test_whoami_names_the_token(mirror):
    _store, url, reader, writer = mirror
    assert HfApi(endpoint=url).whoami(token=reader)["name"] == "reader"
    me = _get(url, "/api/whoami-v2", writer).json()
    assert me["name"] == "writer" and me["auth"]["accessToken"]["role"] == "write"
    bad = _get(url, "/api/whoami-v2", "hp_nope")
    assert bad.status_code == 401 and "Invalid user token" in bad.text
    assert _get(url, "/api/whoami-v2").status_code == 401


def test_anonymous_reads_only_public_globs(tmp_path):
    store = new_store(tmp_path / "store")
    publish_files(store, tmp_path, "public/m", {"a.txt": b"pub"})
    publish_files(store, tmp_path, "team/m", {"a.txt": b"team"})
    with serve(mirror_app(store, public=["public/*"])) as url:
        assert _get(url, "/public/m/resolve/main/a.txt").content == b"pub"
        assert _get(url, "/team/m/resolve/main/a.txt").status_code == 404


def test_open_by_default_until_the_first_token(tmp_path):
    store = new_store(tmp_path / "store")
    publish_files(store, tmp_path, "team/m", {"a.txt": b"x"})
    with serve(mirror_app(store)) as url:
        assert _get(url, "/team/m/resolve/main/a.txt").status_code == 200  # no tokens: open mirror
        secret, _ = create_token(store, "first", read=["team/*"])
        assert _get(url, "/team/m/resolve/main/a.txt").status_code == 404  # closed now
        assert _get(url, "/team/m/resolve/main/a.txt", secret).status_code == 200


def test_tokens_never_in_logs_or_bodies(mirror, caplog):
    _store, url, reader, _ = mirror
    caplog.set_level(logging.INFO, logger="hubpin")
    bodies = []
    for token in (reader, "hp_leaky_wrong_token"):
        for path in ("/api/models/team/model", "/api/models/secret/model", "/team/model/resolve/main/nope",
                     "/api/whoami-v2", f"/api/models/team/model?token={token}"):
            bodies.append(_get(url, path, token))
    text = caplog.text
    assert "reader" in text and "invalid-token" in text  # the log names the token, never shows it
    assert '"GET /api/models/team/model" 200' in text
    for token in (reader, "hp_leaky_wrong_token"):
        assert token not in text
        assert all(token not in r.text and token not in str(r.headers) for r in bodies)


def test_concurrent_token_creation_keeps_every_token(tmp_path):
    """Two admins (processes) creating tokens at once on one store: none is lost."""
    import subprocess
    import sys

    from hubpin.store import LocalStore
    from hubpin.tokens import list_tokens

    store_dir = tmp_path / "store"
    store_dir.mkdir()
    code = (
        "import sys\nfrom hubpin.store import LocalStore\nfrom hubpin.tokens import create_token\n"
        "s = LocalStore(sys.argv[1])\n"
        "for i in range(25):\n    create_token(s, f'{sys.argv[2]}-{i}', read=['org/*'])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store_dir), who]) for who in ("alice", "bob", "carol")]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    names = {t.name for t in list_tokens(LocalStore(store_dir))}
    assert names == {f"{who}-{i}" for who in ("alice", "bob", "carol") for i in range(25)}
