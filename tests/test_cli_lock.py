"""`hubpin init/add/remove/lock/outdated` through the real console script: output, exit codes, files."""

from __future__ import annotations

import json
from pathlib import Path

from harness import run_cli, unique_repo
from hubpin.lockfile import read_lock
from hubpin.server.runner import free_port


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _one_error(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), stderr
    assert len(lines) <= 2 and all(line.startswith(("error: ", "hint: ")) for line in lines), stderr
    for n in needles:
        assert n in lines[0], (n, stderr)


def test_cli_flow_add_outdated_upgrade_remove(hub, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = unique_repo("org/cli-a"), unique_repo("org/cli-b")
    a1 = hub.publish(_folder(tmp_path / "a1", {"config.json": b"{}", "w.safetensors": b"1" * 50}), a)
    b1 = hub.publish(_folder(tmp_path / "b1", {"data/x.csv": b"x", "README.md": b"r"}), b, dataset=True)
    proj = tmp_path / "proj"
    proj.mkdir()

    r = run_cli("init", cwd=proj)
    assert r.returncode == 0 and (proj / "hubpin.toml").exists(), r.stderr
    r = run_cli("add", a, cwd=proj)
    assert r.returncode == 0, r.stderr
    assert f"added {a}@main to hubpin.toml" in r.stdout and f"locked {a}@main = {a1} (2 files" in r.stdout
    r = run_cli("add", f"{b}@main", "--dataset", "--include", "data/*", cwd=proj)
    assert r.returncode == 0 and f"locked datasets/{b}@main = {b1}" in r.stdout, r.stderr
    lock = read_lock(proj / "hubpin.lock")
    assert [(x.repo.type, x.repo.id, x.commit) for x in lock.repos] == [("dataset", b, b1), ("model", a, a1)]
    assert lock.find(b).complete is False  # type: ignore[union-attr]

    r = run_cli("outdated", "--check", cwd=proj)
    assert r.returncode == 0 and "all repos are at their locked commits" in r.stdout
    r = run_cli("lock", "--check", cwd=proj)
    assert r.returncode == 0 and "up to date" in r.stdout

    a2 = hub.publish(_folder(tmp_path / "a2", {"config.json": b"{ }"}), a)
    b2 = hub.publish(_folder(tmp_path / "b2", {"data/x.csv": b"y"}), b, dataset=True)
    r = run_cli("outdated", "--check", cwd=proj)
    assert r.returncode == 1
    assert f"{a}@main: locked {a1[:12]}, now {a2[:12]}" in r.stdout
    _one_error(r.stderr, "2 repo(s) moved")
    r = run_cli("outdated", "--json", cwd=proj)
    assert r.returncode == 0
    assert json.loads(r.stdout) == [
        {"repo": b, "type": "dataset", "revision": "main", "locked": b1, "remote": b2},
        {"repo": a, "type": "model", "revision": "main", "locked": a1, "remote": a2},
    ]

    before = (proj / "hubpin.lock").read_bytes()
    r = run_cli("lock", cwd=proj)  # pins kept
    assert r.returncode == 0 and "hubpin.lock: up to date" in r.stdout
    assert (proj / "hubpin.lock").read_bytes() == before
    r = run_cli("lock", "--upgrade", a, cwd=proj)
    assert r.returncode == 0 and f"upgraded {a}: main@{a1[:12]} -> main@{a2[:12]}" in r.stdout, r.stderr
    lock = read_lock(proj / "hubpin.lock")
    assert (lock.find(a).commit, lock.find(b).commit) == (a2, b1)  # type: ignore[union-attr]
    r = run_cli("lock", "--upgrade", cwd=proj)
    assert r.returncode == 0 and f"upgraded datasets/{b}" in r.stdout and a not in r.stdout
    assert read_lock(proj / "hubpin.lock").find(b).commit == b2  # type: ignore[union-attr]

    # the config changed by hand: --check fails and writes nothing
    (proj / "hubpin.toml").write_text((proj / "hubpin.toml").read_text() + f'\n[models."{unique_repo()}"]\n')
    before = (proj / "hubpin.lock").read_bytes()
    r = run_cli("lock", "--check", cwd=proj)
    assert r.returncode == 1
    _one_error(r.stderr, "is stale", "declared but not locked")
    r = run_cli("lock", "--check", "--json", cwd=proj)
    assert r.returncode == 1 and json.loads(r.stdout)["stale"] is True
    assert "declared but not locked" in json.loads(r.stdout)["reasons"][0]
    assert (proj / "hubpin.lock").read_bytes() == before

    r = run_cli("remove", b, "--dataset", cwd=proj)
    assert r.returncode == 0 and f"removed datasets/{b} from hubpin.toml and hubpin.lock" in r.stdout
    assert read_lock(proj / "hubpin.lock").find(b) is None and b not in (proj / "hubpin.toml").read_text()


def test_cli_errors_are_one_line_with_the_right_exit_code(hub, tmp_path: Path) -> None:  # noqa: ANN001
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("lock", cwd=empty)
    assert r.returncode == 2
    _one_error(r.stderr, "no hubpin.toml")
    assert "hubpin init" in r.stderr

    proj = tmp_path / "proj"
    proj.mkdir()
    assert run_cli("init", cwd=proj).returncode == 0
    r = run_cli("init", cwd=proj)
    assert r.returncode == 2
    _one_error(r.stderr, "already exists")
    config = (proj / "hubpin.toml").read_bytes()

    for args, needle in (
        (("add", "org/never-published-anywhere"), "org/never-published-anywhere@main: repo not found"),
        (("add", "../etc"), "invalid repo id '../etc'"),
        (("add", "org/x@bad..rev"), "invalid revision"),
        (("remove", "org/not-declared"), "org/not-declared is not declared"),
        (("lock", "--upgrade", "org/not-declared"), "--upgrade org/not-declared: not declared"),
    ):
        r = run_cli(*args, cwd=proj)
        assert r.returncode == 2, (args, r.stderr)
        _one_error(r.stderr, needle)
        assert (proj / "hubpin.toml").read_bytes() == config and not (proj / "hubpin.lock").exists()

    dead = f"http://127.0.0.1:{free_port()}"
    secret = "hf_do_not_print_me_42"
    r = run_cli("add", "org/x", "--endpoint", dead, cwd=proj, env={"HF_TOKEN": secret})
    assert r.returncode == 3
    _one_error(r.stderr, dead, "unreachable")
    assert "HF_ENDPOINT" in r.stderr and secret not in r.stderr + r.stdout
    assert (proj / "hubpin.toml").read_bytes() == config and not (proj / "hubpin.lock").exists()

    (proj / "hubpin.toml").write_text('[models."org/x"]\ninclude = "*.json"\nrevision = "a b"\n')
    r = run_cli("lock", cwd=proj)
    assert r.returncode == 2
    _one_error(r.stderr, "hubpin.toml", 'models."org/x".revision')


def test_cli_endpoint_precedence_and_pyproject(hub, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/cli-py")
    sha = hub.publish(_folder(tmp_path / "s", {"a.txt": b"a"}), rid)
    proj = tmp_path / "proj"
    proj.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    original = f'[project]\nname = "app"\n\n[tool.hubpin.settings]\nendpoint = "{dead}"\n\n[tool.black]\nx = 1\n'
    (proj / "pyproject.toml").write_text(original)
    sub = proj / "src"
    sub.mkdir()
    r = run_cli("add", rid, cwd=sub, env={"HF_ENDPOINT": ""})  # no env: [settings] endpoint is used
    assert r.returncode == 3 and dead in r.stderr
    assert (proj / "pyproject.toml").read_text() == original
    r = run_cli("add", rid, "--endpoint", hub.url, cwd=sub, env={"HF_ENDPOINT": dead})  # --endpoint beats all
    assert r.returncode == 0, r.stderr
    r = run_cli("lock", "--upgrade", cwd=sub)  # HF_ENDPOINT (the hub) overrides [settings] endpoint (dead)
    assert r.returncode == 0, r.stderr
    assert read_lock(proj / "hubpin.lock").find(rid).commit == sha  # type: ignore[union-attr]
    text = (proj / "pyproject.toml").read_text()
    assert text.startswith(f'[project]\nname = "app"\n\n[tool.hubpin.settings]\nendpoint = "{dead}"\n')
    assert f'[tool.hubpin.models."{rid}"]\nrevision = "main"\n' in text and text.endswith("[tool.black]\nx = 1\n")
    r = run_cli("outdated", "--json", "--config", str(proj / "pyproject.toml"), "--endpoint", hub.url, cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_cli_lock_enforces_the_policy_and_writes_nothing(hub, tmp_path: Path) -> None:  # noqa: ANN001
    import pickle

    rid = unique_repo("org/cli-pickle")
    hub.publish(_folder(tmp_path / "s", {"config.json": b"{}", "pytorch_model.bin": pickle.dumps({"w": 1})}), rid)
    proj = tmp_path / "proj"
    proj.mkdir()
    assert run_cli("init", cwd=proj).returncode == 0
    config = (proj / "hubpin.toml").read_bytes()
    r = run_cli("add", rid, cwd=proj)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: ") and "pytorch_model.bin" in r.stderr and "pickle" in r.stderr
    assert (proj / "hubpin.toml").read_bytes() == config and not (proj / "hubpin.lock").exists()
    r = run_cli("add", rid, "--exclude", "*.bin", cwd=proj)  # the declared way around it
    assert r.returncode == 0, r.stderr
    assert [f.path for f in read_lock(proj / "hubpin.lock").find(rid).files] == ["config.json"]  # type: ignore[union-attr]


def test_cli_re_add_changes_only_what_is_given(hub, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/cli-readd")
    v1 = hub.publish(_folder(tmp_path / "v1", {"a.json": b"{}", "b.txt": b"b"}), rid, revision="v1")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "hubpin.toml").write_text(f'[models."{rid}"]\ninclude = ["*.json"]\nallow-remote-code = true  # reviewed\n')
    r = run_cli("add", f"{rid}@v1", cwd=proj)
    assert r.returncode == 0 and f"updated {rid} in hubpin.toml" in r.stdout, r.stderr
    text = (proj / "hubpin.toml").read_text()
    assert 'revision = "v1"' in text and '"*.json"' in text and "allow-remote-code = true" in text
    entry = read_lock(proj / "hubpin.lock").find(rid)
    assert entry is not None and entry.commit == v1 and [f.path for f in entry.files] == ["a.json"]
