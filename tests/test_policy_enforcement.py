"""Policy enforced where bytes move: lock, sync, import, publish, and serve with a policy.

Each refusal is a PolicyError (exit 1) naming repo/path and format, and nothing is lost: the
lock, the cache, the store stay as they were.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
from pathlib import Path

import pytest

from harness import run_cli, unique_repo
from hubpin.errors import PolicyError
from hubpin.objects import RepoKey
from hubpin.policy import Policy


class Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo PWNED",))


def _tree(root: Path) -> dict[str, bytes | str]:
    """Everything under `root`: file bytes and link targets, to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def _model(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _torch_bytes(tmp_path: Path) -> bytes:
    torch = pytest.importorskip("torch")
    p = tmp_path / "sd.bin"
    torch.save(collections.OrderedDict(w=torch.zeros(2, 2)), p)
    return p.read_bytes()


# -- publish ---------------------------------------------------------------------------------


def test_publish_with_a_policy_refuses_pickle_and_writes_nothing(tmp_path: Path) -> None:
    from hubpin.publish import publish
    from hubpin.store import LocalStore

    store = LocalStore(tmp_path / "store", fsync=False)
    src = _model(tmp_path / "src", {"pytorch_model.bin": pickle.dumps(Evil(), 4)})
    with pytest.raises(PolicyError, match=r"pickle not allowed: org/p/pytorch_model.bin \(pickle protocol 4\)"):
        publish(src, RepoKey("model", "org/p"), store, policy=Policy())
    assert _tree(tmp_path / "store") == {}
    cli = run_cli("publish", str(src), "org/p", "--store", str(tmp_path / "store"))
    assert cli.returncode == 1 and cli.stderr.startswith("error: pickle not allowed: org/p/pytorch_model.bin")
    assert _tree(tmp_path / "store") == {}
    ok = run_cli("publish", str(src), "org/p", "--store", str(tmp_path / "store"), "--allow-pickle")
    assert ok.returncode == 1 and "posix.system" in ok.stderr  # allowed, but the scan refuses it


# -- serve -----------------------------------------------------------------------------------


def test_serve_with_a_policy_answers_403_for_pickles(hub, tmp_path: Path) -> None:  # noqa: ANN001
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    from hubpin._policy_serve import PolicySource
    from hubpin.server._source import Source
    from hubpin.server.app import create_app
    from hubpin.server.config import ServerConfig
    from hubpin.server.runner import serve_in_thread

    repo = unique_repo("org/served")
    benign = _torch_bytes(tmp_path)
    hub.publish(_model(tmp_path / "src", {"evil.bin": pickle.dumps(Evil(), 2), "ok.bin": benign}), repo)
    allowed = unique_repo("org/allowed")
    hub.publish(_model(tmp_path / "src2", {"ok.bin": benign}), allowed)
    store = hub.store

    def policy_of(r: RepoKey) -> Policy:
        return Policy(allow_pickle=r.id == allowed)

    app = create_app(store, ServerConfig(source=PolicySource(Source(store), policy_of)))
    with serve_in_thread(app) as url:
        cache = tmp_path / "cache"
        assert Path(hf_hub_download(repo, "config.json", cache_dir=cache, endpoint=url)).is_file()
        with pytest.raises(HfHubHTTPError) as e:
            hf_hub_download(repo, "evil.bin", cache_dir=cache, endpoint=url)
        assert e.value.response.status_code == 403
        assert f"pickle not allowed: {repo}/evil.bin (pickle protocol 2)" in str(e.value)
        with pytest.raises(HfHubHTTPError):
            hf_hub_download(repo, "ok.bin", cache_dir=cache, endpoint=url)  # default policy: no pickle
        got = hf_hub_download(allowed, "ok.bin", cache_dir=cache, endpoint=url)
        assert Path(got).read_bytes() == benign


# -- lock ------------------------------------------------------------------------------------


def _big_evil_torch_zip() -> bytes:
    """A torch-shaped zip, > 1 MiB, so `lock` sees only its first bytes (Range)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evil(), 2))
        z.writestr("archive/data/0", os.urandom(2 * 1024 * 1024))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_lock_refuses_pickles_small_and_big_and_writes_no_lock(hub, tmp_path: Path) -> None:  # noqa: ANN001
    repo = unique_repo("org/pickled")
    hub.publish(_model(tmp_path / "src", {"small.bin": pickle.dumps(Evil(), 4), "big.pt": _big_evil_torch_zip()}),
                repo)
    work = tmp_path / "proj"
    work.mkdir()
    (work / "hubpin.toml").write_text(f'[models."{repo}"]\n')
    proc = run_cli("lock", cwd=work)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: pickle not allowed: {repo}/big.pt (torch zip archive)")
    assert f"{repo}/small.bin (pickle protocol 4)" in proc.stderr
    assert "hint: set allow-pickle = true" in proc.stderr
    assert not (work / "hubpin.lock").exists()


# -- sync ------------------------------------------------------------------------------------


def test_sync_deep_checks_allowed_pickles_before_linking(hub, tmp_path: Path) -> None:  # noqa: ANN001
    from hubpin.config import load_project
    from hubpin.hub import HubClient
    from hubpin.lock import lock_project
    from hubpin.lockfile import write_lock
    from hubpin.sync import sync

    repo = unique_repo("org/bigpickle")
    hub.publish(_model(tmp_path / "src", {"model.pt": _big_evil_torch_zip()}), repo)
    work = tmp_path / "proj"
    work.mkdir()
    (work / "hubpin.toml").write_text(f'[models."{repo}"]\nallow-pickle = true\n')
    project = load_project(work / "hubpin.toml")
    with HubClient(hub.url) as client:
        lock = lock_project(project, client)  # the registered hooks: prefix says "torch zip", allowed
    write_lock(lock, project.lock_path)
    cache = tmp_path / "cache"
    with pytest.raises(PolicyError, match=rf"pickle not allowed: {repo}/model.pt \(torch zip archive, refused by scan"):
        sync(project.lock_path, cache_dir=cache, endpoint=hub.url, fsync=False, progress=False)
    repo_dir = cache / RepoKey("model", repo).folder
    assert not (repo_dir / "refs").exists() and not (repo_dir / "snapshots").exists()
    cli = run_cli("sync", "--cache-dir", str(cache), "--endpoint", hub.url, cwd=work)
    assert cli.returncode == 1 and "refused by scan" in cli.stderr and "posix.system" in cli.stderr


# -- import ----------------------------------------------------------------------------------


def test_import_refuses_pickles_unless_the_project_allows_them(hub, tmp_path: Path) -> None:  # noqa: ANN001
    from hubpin.bundle import export_bundle
    from hubpin.config import load_project
    from hubpin.hub import HubClient
    from hubpin.lock import lock_project

    repo = unique_repo("org/bundled")
    hub.publish(_model(tmp_path / "src", {"pytorch_model.bin": _torch_bytes(tmp_path)}), repo)
    work = tmp_path / "proj"
    work.mkdir()
    (work / "hubpin.toml").write_text(f'[models."{repo}"]\nallow-pickle = true\n')
    with HubClient(hub.url) as client:
        lock = lock_project(load_project(work / "hubpin.toml"), client)
    bundle = tmp_path / "b.hubpin"
    export_bundle(bundle, hub.store, list(lock.repos))

    elsewhere = tmp_path / "airgap"
    elsewhere.mkdir()
    cache = tmp_path / "cache"
    denied = run_cli("import", str(bundle), "--cache-dir", str(cache), cwd=elsewhere)
    assert denied.returncode == 1
    assert f"error: pickle not allowed: {repo}/pytorch_model.bin (torch zip archive)" in denied.stderr
    assert [p for p in _tree(cache) if not p.startswith(".hubpin")] == []
    ok = run_cli("import", str(bundle), "--cache-dir", str(cache), cwd=work)
    assert ok.returncode == 0, ok.stderr
    assert (cache / RepoKey("model", repo).folder / "refs" / "main").read_text() == lock.repos[0].commit


def test_serve_policy_option_wires_the_project_policy(hub, tmp_path: Path) -> None:  # noqa: ANN001
    """`hubpin serve --policy hubpin.toml` → production_config(policy=...) → 403 on GET, with the reason."""
    import httpx

    from hubpin.server._ops import production_config
    from hubpin.server.app import create_app
    from hubpin.server.runner import serve_in_thread

    repo, ok_repo = unique_repo("org/opspol"), unique_repo("org/opsok")
    hub.publish(_model(tmp_path / "src", {"model.bin": pickle.dumps(Evil(), 4)}), repo)
    hub.publish(_model(tmp_path / "src2", {"model.bin": pickle.dumps({"a": 1}, 2)}), ok_repo)
    config = tmp_path / "hubpin.toml"
    config.write_text(f'[models."{ok_repo}"]\nallow-pickle = true\n')
    app = create_app(hub.store, production_config(hub.store, policy=config, access_log=False))
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as http:
        head = http.head(f"/{repo}/resolve/main/model.bin")
        assert head.status_code == 200 and "pickle not allowed" in head.headers["X-HF-Warning"]
        got = http.get(f"/{repo}/resolve/main/model.bin")
        assert got.status_code == 403 and got.headers["X-Error-Code"] == "PolicyRefused"
        assert got.headers["X-Error-Message"] == f"pickle not allowed: {repo}/model.bin (pickle protocol 4)"
        assert http.get(f"/{repo}/resolve/main/config.json").status_code == 200
        assert http.get(f"/{ok_repo}/resolve/main/model.bin").content == pickle.dumps({"a": 1}, 2)
    assert "--policy FILE" in run_cli("serve", "--help").stdout
