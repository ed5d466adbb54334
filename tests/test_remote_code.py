"""Remote code (security.md §5 case 18): auto_map detection and cross-repo code pinned in the lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import unique_repo
from hubpin.config import load_project
from hubpin.errors import ConfigError, PolicyError
from hubpin.hub import HubClient
from hubpin.lock import lock_project
from hubpin.objects import RepoKey
from hubpin.policy import Policy, lock_hook
from hubpin.remote_code import auto_map_refs, code_repos, python_files


def _write(folder: Path, files: dict[str, str | dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(content) if isinstance(content, dict) else content)
    return folder


def test_auto_map_refs_strings_lists_and_cross_repo(tmp_path: Path) -> None:
    d = _write(tmp_path / "m", {
        "config.json": {"auto_map": {"AutoConfig": "configuration_x.XConfig",
                                     "AutoModel": "other/code--modeling_x.XModel"}},
        "tokenizer_config.json": {"auto_map": {"AutoTokenizer": ["tok/repo--tokenization_x.XTok", None]}},
        "sub/config.json": {"auto_map": {"AutoModel": ("third/one--pkg.mod.Cls",)}},
        "other.json": {"auto_map": {"AutoModel": "ignored/repo--a.B"}},
        "modeling_x.py": "X = 1\n",
    })
    files = [(p.relative_to(d).as_posix(), p) for p in sorted(d.rglob("*")) if p.is_file()]
    refs = auto_map_refs(files)
    assert {(r.file, r.key, r.repo_id, r.module) for r in refs} == {
        ("config.json", "AutoConfig", None, "configuration_x"),
        ("config.json", "AutoModel", "other/code", "modeling_x"),
        ("tokenizer_config.json", "AutoTokenizer", "tok/repo", "tokenization_x"),
        ("sub/config.json", "AutoModel", "third/one", "pkg.mod"),
    }
    assert code_repos(files) == {"other/code", "tok/repo", "third/one"}
    assert python_files(p for p, _ in files) == ["modeling_x.py"]


def test_policy_settings_and_overrides() -> None:
    base = Policy.from_settings({"allow-pickle": False, "licenses": ["MIT", "apache-2.0"]},
                                {"allow_remote_code": True})
    assert base == Policy(False, True, ("apache-2.0", "mit"))
    with pytest.raises(ConfigError, match="allow-remote-code: expected true or false"):
        Policy.from_settings({"allow-remote-code": "yes"})
    with pytest.raises(ConfigError, match="licenses: expected a list"):
        Policy.from_settings({"licenses": [1]})


def _project(tmp_path: Path, body: str):  # noqa: ANN202 - Project
    (tmp_path / "hubpin.toml").write_text(body)
    return load_project(tmp_path / "hubpin.toml")


@pytest.fixture
def code_and_model(hub, tmp_path: Path) -> tuple[str, str, str]:  # noqa: ANN001
    code = unique_repo("org/code")
    model = unique_repo("org/model")
    code_sha = hub.publish(_write(tmp_path / "code", {
        "modeling_x.py": "VERSION = 1\n", "configuration_x.py": "C = 1\n", "README.md": "code\n",
    }), code)
    hub.publish(_write(tmp_path / "model", {
        "config.json": {"model_type": "x", "auto_map": {"AutoModel": f"{code}--modeling_x.XModel"}},
        "model.safetensors": "",  # content does not matter here; not a pickle
    }), model)
    return code, model, code_sha


def test_lock_refuses_remote_code_by_default_naming_the_files(hub, tmp_path: Path, code_and_model) -> None:  # noqa: ANN001
    code, model, _ = code_and_model
    project = _project(tmp_path, f'[models."{model}"]\nexclude = ["model.safetensors"]\n')
    with HubClient(hub.url) as client, pytest.raises(PolicyError) as e:
        lock_project(project, client, hooks=[lock_hook])
    assert f"remote code not allowed: {model}/config.json" in e.value.message
    assert f"{code}--modeling_x.XModel" in e.value.message
    assert "allow-remote-code" in (e.value.hint or "")
    assert not (tmp_path / "hubpin.lock").exists()


def test_cross_repo_code_is_locked_at_a_pinned_commit_and_sync_keeps_it(
    hub, tmp_path: Path, code_and_model  # noqa: ANN001
) -> None:
    from hubpin.lockfile import write_lock
    from hubpin.sync import sync

    code, model, code_sha = code_and_model
    project = _project(tmp_path, f'[models."{model}"]\nallow-remote-code = true\nexclude = ["model.safetensors"]\n')
    with HubClient(hub.url) as client:
        lock = lock_project(project, client, hooks=[lock_hook])
    entry = lock.get(RepoKey("model", code))
    assert entry is not None and entry.commit == code_sha
    assert entry.required_by == (model,) and entry.revision == "main"
    assert [f.path for f in entry.files] == ["configuration_x.py", "modeling_x.py"]
    assert all(f.sha256 and len(f.sha256) == 64 for f in entry.files)
    write_lock(lock, project.lock_path)
    assert f'required_by = [\n    "{model}",\n]' in project.lock_path.read_text() or \
        f'required_by = ["{model}"]' in project.lock_path.read_text()

    # the code repo's main moves on: re-locking keeps the pin, sync brings the pinned code
    new_sha = hub.publish(_write(tmp_path / "code", {"modeling_x.py": "VERSION = 2  # evil\n"}), code)
    assert new_sha != code_sha
    with HubClient(hub.url) as client:
        relocked = lock_project(project, client, hooks=[lock_hook], previous=lock)
    assert relocked.get(RepoKey("model", code)).commit == code_sha
    cache = tmp_path / "cache"
    sync(lock, cache_dir=cache, endpoint=hub.url, fsync=False, progress=False)
    code_dir = cache / RepoKey("model", code).folder
    assert (code_dir / "refs" / "main").read_text() == code_sha
    assert (code_dir / "snapshots" / code_sha / "modeling_x.py").read_text() == "VERSION = 1\n"

    # doctor: both entries ready offline; a lock that lost the code entry is explained
    from hubpin.doctor import diagnose

    assert [r.ready for r in diagnose(lock, cache_dir=cache).repos] == [True, True]
    (broken,) = diagnose(lock.without(RepoKey("model", code)), cache_dir=cache).repos
    assert not broken.ready
    assert any(f"auto_map points into {code}, which is not in the lock" in i.problem for i in broken.issues)
