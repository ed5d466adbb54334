"""hubpin.toml / [tool.hubpin] parsing, discovery, bad input, and careful editing of the user's file."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubpin.config import (
    RepoDecl,
    add_repo,
    find_project,
    init_project,
    load_project,
    remove_repo,
    resolve_endpoint,
)
from hubpin.errors import ConfigError
from hubpin.objects import RepoKey

FULL = """\
# our models
[settings]
endpoint = "http://mirror.internal:8080/"
allow-pickle = false
licenses = ["apache-2.0", "mit"]

[models."org/bert"]
revision = "v1.0"
include = ["*.json", "*.safetensors"]
exclude = "*.bin"
allow-pickle = true          # this one is reviewed

[models.gpt2]

[datasets."org/eval-set"]
revision = "0123456789abcdef0123456789abcdef01234567"
"""


def test_hubpin_toml_is_parsed_with_defaults_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "hubpin.toml").write_text(FULL)
    p = find_project(tmp_path)
    assert p.config_path == tmp_path / "hubpin.toml"
    assert p.lock_path == tmp_path / "hubpin.lock"
    assert p.endpoint == "http://mirror.internal:8080"
    assert [str(d.repo) for d in p.repos] == ["datasets/org/eval-set", "gpt2", "org/bert"]
    bert = p.get(RepoKey("model", "org/bert"))
    assert bert is not None
    assert (bert.revision, bert.include, bert.exclude) == ("v1.0", ("*.json", "*.safetensors"), ("*.bin",))
    assert bert.wants("config.json") and bert.wants("sub/model.safetensors")
    assert not bert.wants("pytorch_model.bin") and not bert.wants("README.md")
    gpt2 = p.get(RepoKey("model", "gpt2"))
    assert gpt2 is not None and gpt2.revision == "main" and not gpt2.filtered and gpt2.wants("anything")
    # policy keys: per-repo override first, then [settings], then the default
    assert p.setting("allow-pickle", RepoKey("model", "org/bert")) is True
    assert p.setting("allow-pickle", RepoKey("model", "gpt2")) is False
    assert p.setting("licenses") == ["apache-2.0", "mit"]
    assert p.setting("allow-remote-code", default="nope") == "nope"


def test_pyproject_tool_hubpin_found_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.hubpin.models."org/a"]\nrevision = "main"\n'
    )
    sub = tmp_path / "src" / "app"
    sub.mkdir(parents=True)
    p = find_project(sub)
    assert p.config_path == tmp_path / "pyproject.toml" and p.in_pyproject
    assert [d.repo.id for d in p.repos] == ["org/a"]


def test_discovery_order(tmp_path: Path) -> None:
    # a pyproject without [tool.hubpin] is not ours: keep looking upwards
    (tmp_path / "hubpin.toml").write_text('[models."org/top"]\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_project(inner).config_path == tmp_path / "hubpin.toml"
    # hubpin.toml beats pyproject.toml in the same folder
    (inner / "pyproject.toml").write_text('[tool.hubpin.models."org/py"]\n')
    (inner / "hubpin.toml").write_text('[models."org/toml"]\n')
    assert [d.repo.id for d in find_project(inner).repos] == ["org/toml"]
    # --config wins over discovery
    assert [d.repo.id for d in find_project(inner, config=inner / "pyproject.toml").repos] == ["org/py"]


def test_no_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        find_project(tmp_path)
    assert e.value.exit_code == 2
    assert str(tmp_path) in e.value.message and "hubpin init" in (e.value.hint or "")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[models."../etc"]\n', 'models."../etc"'),
        ('[models."org/a--b"]\n', 'models."org/a--b"'),
        ('[models."org/a"]\nrevision = "a..b"\n', 'models."org/a".revision'),
        ('[models."org/a"]\nrevision = ""\n', 'models."org/a".revision'),
        ('[models."org/a"]\nrevision = 3\n', 'models."org/a".revision'),
        ('[models."org/a"]\ninclude = [1]\n', 'models."org/a".include'),
        ('[models."org/a"]\nexclude = {a = 1}\n', 'models."org/a".exclude'),
        ('[models."org/a"]\nallow-pickle = "yes"\n', 'models."org/a".allow-pickle'),
        ('[model."org/a"]\n', "unknown table 'model'"),
        ('models = ["org/a"]\n', "models: expected a table"),
        ('[models]\n"org/a" = "main"\n', 'models."org/a": expected a table'),
        ('[settings]\nendpoint = "ftp://x"\n', "settings.endpoint"),
        ('[settings]\nendpoint = "https://user:pw@hub"\n', "settings.endpoint"),
        ('[settings]\nallow-pickle = 1\n', "settings.allow-pickle"),
        ("settings = 1\n", "settings: expected a table"),
        ("[models.\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_config_error_naming_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "hubpin.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        find_project(tmp_path)
    msg = e.value.message
    assert "\n" not in msg
    assert str(tmp_path / "hubpin.toml") in msg and needle in msg, msg


def test_bad_pyproject_table_names_the_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.hubpin.models."org/a"]\nrevision = "x y"\n')
    with pytest.raises(ConfigError) as e:
        find_project(tmp_path)
    assert "[tool.hubpin]" in e.value.message and 'models."org/a".revision' in e.value.message
    with pytest.raises(ConfigError, match="no \\[tool.hubpin\\] table"):
        load_project(_write(tmp_path / "other" / "pyproject.toml", "[project]\n"))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_resolve_endpoint_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hubpin.toml").write_text('[settings]\nendpoint = "http://from-config/"\n')
    p = find_project(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://from-env/")
    assert resolve_endpoint("http://from-flag/", p) == "http://from-flag"
    assert resolve_endpoint(None, p) == "http://from-env"  # the environment overrides the project file
    monkeypatch.delenv("HF_ENDPOINT")
    assert resolve_endpoint(None, p) == "http://from-config"
    assert resolve_endpoint(None, None) == "https://huggingface.co"
    with pytest.raises(ConfigError):
        resolve_endpoint("mirror.internal", None)
    with pytest.raises(ConfigError) as e:
        resolve_endpoint("https://user:s3cret@mirror.internal", None)
    assert "s3cret" not in e.value.message and "HF_TOKEN" in (e.value.hint or "")


def test_init_writes_a_valid_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = init_project(tmp_path, endpoint="http://mirror:1/")
    p = load_project(path)
    assert p.endpoint == "http://mirror:1" and p.repos == () and p.setting("allow-pickle") is False
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        init_project(tmp_path)
    assert path.read_bytes() == before
    with pytest.raises(ConfigError, match="endpoint"):
        init_project(tmp_path / "x", endpoint="nope")
    assert not (tmp_path / "x" / "hubpin.toml").exists()


def test_add_and_remove_keep_the_rest_of_hubpin_toml(tmp_path: Path) -> None:
    path = tmp_path / "hubpin.toml"
    path.write_text(FULL)
    p = find_project(tmp_path)
    p2 = add_repo(p, RepoDecl(RepoKey("model", "org/new"), "v2", ("*.json",)))
    text = path.read_text()
    block = '[models."org/new"]\nrevision = "v2"\ninclude = [\n    "*.json",\n]\n\n'
    assert text.index(block) > text.index("[models.gpt2]")  # beside its siblings
    assert text.replace(block, "") == FULL  # every other byte, comments included, kept
    assert load_project(path).get(RepoKey("model", "org/new")) == RepoDecl(RepoKey("model", "org/new"), "v2", ("*.json",))
    # change one repo in place: the comment on another repo's override survives
    add_repo(p2, RepoDecl(RepoKey("model", "gpt2"), "v9"))
    text = path.read_text()
    assert "allow-pickle = true          # this one is reviewed" in text and "# our models" in text
    p3 = load_project(path)
    assert p3.get(RepoKey("model", "gpt2")).revision == "v9"  # type: ignore[union-attr]
    remove_repo(p3, RepoKey("model", "org/new"))
    remove_repo(load_project(path), RepoKey("model", "gpt2"))
    assert path.read_text() == FULL.replace("[models.gpt2]\n\n", "")
    with pytest.raises(ConfigError, match="not declared"):
        remove_repo(load_project(path), RepoKey("model", "org/none"))


PYPROJECT = """\
[project]
name = "app"   # keep this comment
version = "1"

[tool.hubpin.settings]
endpoint = "http://m:1"

[tool.hubpin.models."org/a"]
revision = "main"

[tool.ruff]
line-length = 99
"""


def test_pyproject_edits_touch_only_tool_hubpin(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT)
    p = add_repo(find_project(tmp_path), RepoDecl(RepoKey("dataset", "org/ds"), "v1", (), ("*.csv",)))
    text = path.read_text()
    before, after = PYPROJECT.split("[tool.hubpin.settings]")[0], PYPROJECT.split("[tool.ruff]")[1]
    assert text.startswith(before) and text.endswith("[tool.ruff]" + after)
    doc = tomllib.loads(text)
    assert doc["project"] == {"name": "app", "version": "1"} and doc["tool"]["ruff"] == {"line-length": 99}
    assert doc["tool"]["hubpin"]["datasets"]["org/ds"] == {"revision": "v1", "exclude": ["*.csv"]}
    remove_repo(p, RepoKey("model", "org/a"))
    doc = tomllib.loads(path.read_text())
    assert "models" not in doc["tool"]["hubpin"] and doc["tool"]["hubpin"]["settings"] == {"endpoint": "http://m:1"}
    assert path.read_text().startswith(before)


def test_pyproject_that_cannot_be_edited_safely_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    original = '[project]\nname = "app"\n\n[tool]\nhubpin = { models = { "org/a" = { revision = "main" } } }\n'
    path.write_text(original)
    p = find_project(tmp_path)
    assert [d.repo.id for d in p.repos] == ["org/a"]
    with pytest.raises(ConfigError, match="cannot edit \\[tool.hubpin\\] safely"):
        add_repo(p, RepoDecl(RepoKey("model", "org/b")))
    assert path.read_text() == original


def test_removing_the_last_repo_keeps_tool_hubpin(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n\n[tool.hubpin.models."a/b"]\nrevision = "main"\n\n[tool.ruff]\nx = 1\n')
    remove_repo(find_project(tmp_path), RepoKey("model", "a/b"))
    assert path.read_text() == '[project]\nname = "x"\n\n[tool.hubpin]\n\n[tool.ruff]\nx = 1\n'
    p = find_project(tmp_path)  # still the project's config
    assert p.config_path == path and p.repos == ()
    add_repo(p, RepoDecl(RepoKey("model", "c/d")))
    assert [d.repo.id for d in find_project(tmp_path).repos] == ["c/d"]
    assert tomllib.loads(path.read_text())["tool"]["ruff"] == {"x": 1}


_ids = st.sampled_from(["org/a", "org/b-1", "x/y.z", "gpt2", "o_o/n"])
_ops = st.lists(
    st.tuples(
        st.booleans(),  # add (True) or remove
        st.sampled_from(["model", "dataset"]),
        _ids,
        st.sampled_from(["main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"]),
        st.lists(st.sampled_from(["*.json", "sub/", "*.safetensors"]), max_size=2, unique=True),
    ),
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(ops=_ops, in_pyproject=st.booleans())
def test_edits_in_any_order_keep_the_file_and_the_model_in_step(ops: list, in_pyproject: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        other = '[project]\nname = "app"  # mine\n\n[tool.ruff]\nline-length = 99\n'
        if in_pyproject:
            path = root / "pyproject.toml"
            path.write_text(other + '\n[tool.hubpin.settings]\nallow-pickle = false\n\n[tool.black]\nx = 1\n')
        else:
            path = root / "hubpin.toml"
            path.write_text("# keep me\n[settings]\nallow-pickle = false\n")
        expected: dict[RepoKey, RepoDecl] = {}
        for add, rtype, rid, rev, include in ops:
            key = RepoKey(rtype, rid)
            p = find_project(root)
            if add:
                decl = RepoDecl(key, rev, tuple(include))
                add_repo(p, decl)
                expected[key] = decl
            elif key in expected:
                remove_repo(p, key)
                del expected[key]
            got = find_project(root)
            assert got.config_path == path
            assert {d.repo: d for d in got.repos} == expected
            assert got.setting("allow-pickle") is False
            doc = tomllib.loads(path.read_text())
            if in_pyproject:
                assert doc["project"] == {"name": "app"} and doc["tool"]["ruff"] == {"line-length": 99}
                assert doc["tool"]["black"] == {"x": 1} and path.read_text().startswith(other)
            else:
                assert path.read_text().startswith("# keep me\n[settings]\nallow-pickle = false\n")
