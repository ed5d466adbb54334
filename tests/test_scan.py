"""`hubpin scan PATH | --repo R [--json]`: every finding with file, kind, reason; exit 1 on a violation."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

from harness import run_cli, unique_repo
from hubpin.policy import Policy
from hubpin.scan import scan_folder


class Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo PWNED",))


def _model(folder: Path, extra: dict[str, bytes] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# m\n")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    return folder


def test_scan_clean_folder_exits_0_and_reports_the_license(tmp_path: Path) -> None:
    proc = run_cli("scan", str(_model(tmp_path / "m")), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["scanned"] == 3
    assert report["findings"] == [{"path": "README.md", "kind": "license", "reason": "apache-2.0", "violation": False}]


def test_scan_reports_every_kind_and_exits_1(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m", {
        "weights.safetensors": pickle.dumps(Evil(), 4),  # a pickle renamed: content decides
        "modeling_x.py": b"import os\n",
        "blob.dat": bytes(range(256)) * 4,
    })
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "other/code--modeling_y.Y"}}))
    proc = run_cli("scan", str(folder), "--json", cwd=tmp_path)
    assert proc.returncode == 1
    found = {(f["path"], f["kind"], f["violation"]) for f in json.loads(proc.stdout)["findings"]}
    assert found >= {
        ("weights.safetensors", "pickle", True),
        ("modeling_x.py", "remote-code", True),
        ("config.json", "cross-repo-code", True),
        ("blob.dat", "unknown-binary", False),
        ("README.md", "license", False),
    }
    assert proc.stderr.startswith(f"error: pickle not allowed: {folder}/weights.safetensors (pickle protocol 4)")
    assert "hint:" in proc.stderr
    text = run_cli("scan", str(folder), cwd=tmp_path)
    assert text.returncode == 1 and "REFUSED  pickle" in text.stdout


def test_scan_uses_the_project_policy(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m", {"modeling_x.py": b"X = 1\n"})
    assert run_cli("scan", str(folder), cwd=tmp_path).returncode == 1
    (tmp_path / "hubpin.toml").write_text('[settings]\nallow-remote-code = true\nlicenses = ["mit"]\n')
    proc = run_cli("scan", str(folder), "--json", cwd=tmp_path)
    assert proc.returncode == 1
    bad = [f for f in json.loads(proc.stdout)["findings"] if f["violation"]]
    assert [(f["kind"], f["reason"]) for f in bad] == [("license", "license apache-2.0 not in the allow-list (mit)")]
    assert scan_folder(folder, Policy(allow_remote_code=True)).ok


def test_scan_locked_repo_from_the_cache(hub, tmp_path: Path) -> None:  # noqa: ANN001
    from hubpin.config import load_project
    from hubpin.hub import HubClient
    from hubpin.lock import lock_project
    from hubpin.lockfile import write_lock
    from hubpin.sync import sync

    torch = __import__("pytest").importorskip("torch")
    src = _model(tmp_path / "src")
    torch.save({"w": torch.zeros(2)}, src / "pytorch_model.bin")
    repo = unique_repo("org/scanned")
    hub.publish(src, repo)
    work = tmp_path / "proj"
    work.mkdir()
    (work / "hubpin.toml").write_text(f'[models."{repo}"]\nallow-pickle = true\n')
    project = load_project(work / "hubpin.toml")
    with HubClient(hub.url) as client:
        lock = lock_project(project, client, hooks=[])
    write_lock(lock, project.lock_path)
    cache = tmp_path / "cache"
    missing = run_cli("scan", "--repo", repo, "--cache-dir", str(cache), cwd=work)
    assert missing.returncode == 1 and "hubpin sync" in missing.stderr
    sync(project.lock_path, cache_dir=cache, endpoint=hub.url, fsync=False, progress=False)  # its policy: allowed
    ok = run_cli("scan", "--repo", repo, "--cache-dir", str(cache), "--json", cwd=work)
    assert ok.returncode == 0, ok.stderr
    (pk,) = [f for f in json.loads(ok.stdout)["findings"] if f["kind"] == "pickle"]
    assert pk["path"] == "pytorch_model.bin" and "passed picklescan --strict" in pk["reason"]
    # the same files under the default policy: refused
    (work / "hubpin.toml").write_text(f'[models."{repo}"]\n')
    denied = run_cli("scan", "--repo", repo, "--cache-dir", str(cache), cwd=work)
    assert denied.returncode == 1
    assert f"error: pickle not allowed: {repo}/pytorch_model.bin (torch zip archive)" in denied.stderr


def test_scan_usage_errors(tmp_path: Path) -> None:
    assert run_cli("scan", cwd=tmp_path).returncode == 2
    assert run_cli("scan", str(tmp_path), "--repo", "a/b", cwd=tmp_path).returncode == 2
    nolock = run_cli("scan", "--repo", "a/b", cwd=tmp_path)
    assert nolock.returncode == 2 and "error: no hubpin.toml" in nolock.stderr
