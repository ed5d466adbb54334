"""`hubpin doctor`: will each locked repo load offline, and why not (with the fix)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import run_cli, run_python, unique_repo
from hubpin.config import load_project
from hubpin.doctor import diagnose, env_issues, modules_cache_issue, package_issues, weights_issues
from hubpin.hub import HubClient
from hubpin.lock import lock_project
from hubpin.lockfile import Lockfile, write_lock
from hubpin.policy import lock_hook

#: run the real CLI with fugashi and ipadic made unimportable by a meta-path finder; this is a
#: simulation of "not installed" (the packages stay on disk), and the doctor's check goes
#: through the same import machinery a real `import fugashi` would
_BLOCKED_DOCTOR = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fugashi", "ipadic"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Block())
from hubpin.cli import main
sys.argv = ["hubpin", "doctor", "--json", "--cache-dir", sys.argv[1], "--config", sys.argv[2]]
main()
"""


@pytest.fixture(scope="module")
def japanese(hub, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Lockfile]:  # noqa: ANN001
    """The tiny Japanese MeCab tokenizer, published, locked and synced: (project dir, cache, lock)."""
    from hubpin.demo.fixtures import make_japanese_tokenizer
    from hubpin.sync import sync

    root = tmp_path_factory.mktemp("doctor")
    repo = unique_repo("cl-tohoku/bert-ja")
    hub.publish(make_japanese_tokenizer(root / "src"), repo)
    (root / "hubpin.toml").write_text(f'[models."{repo}"]\n')
    project = load_project(root / "hubpin.toml")
    with HubClient(hub.url) as client:
        lock = lock_project(project, client, hooks=[lock_hook])
    write_lock(lock, project.lock_path)
    cache = root / "cache"
    sync(lock, cache_dir=cache, endpoint=hub.url, fsync=False, progress=False)
    return root, cache, lock


def test_japanese_tokenizer_ready_when_fugashi_and_ipadic_are_installed(japanese) -> None:  # noqa: ANN001
    _root, cache, lock = japanese
    report = diagnose(lock, cache_dir=cache)
    assert [r.ready for r in report.repos] == [True]
    assert report.repos[0].issues == ()
    cli = run_cli("doctor", "--cache-dir", str(cache), cwd=_root, env={"HF_HUB_OFFLINE": "1"})
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"{lock.repos[0].repo}@{lock.repos[0].commit[:12]}: ready"


def test_japanese_tokenizer_without_fugashi_names_packages_and_install_command(japanese) -> None:  # noqa: ANN001
    root, cache, _lock = japanese
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _BLOCKED_DOCTOR, str(cache), str(root / "hubpin.toml")],
                          capture_output=True, text=True, timeout=120, env=os.environ)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    (repo,) = report["repos"]
    assert repo["ready"] is False
    (issue,) = [i for i in repo["issues"] if i["check"] == "packages"]
    assert "fugashi, ipadic" in issue["problem"] and "MeCab, dictionary ipadic" in issue["problem"]
    assert issue["fix"] == "pip install fugashi ipadic"
    assert "error:" in proc.stderr and "pip install fugashi ipadic" in proc.stderr


def test_broken_ref_and_missing_snapshot_file_are_explained(japanese, tmp_path: Path) -> None:  # noqa: ANN001
    import shutil

    _root, cache, lock = japanese
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy, symlinks=True)
    entry = lock.repos[0]
    repo_dir = copy / entry.repo.folder
    (repo_dir / "refs" / "main").write_text(entry.commit + "\n")
    (repo_dir / "snapshots" / entry.commit / "vocab.txt").unlink()
    (r,) = diagnose(lock, cache_dir=copy).repos
    problems = " | ".join(i.problem for i in r.issues)
    assert not r.ready
    assert "refs/main has surrounding whitespace or a newline" in problems
    assert "missing from the snapshot: vocab.txt" in problems
    assert any(i.fix.startswith("printf %s") for i in r.issues)
    (repo_dir / "refs" / "main").write_text("0" * 40)
    (r,) = diagnose(lock, cache_dir=copy).repos
    assert any("points to 000000000000" in i.problem for i in r.issues)


def test_env_vars_set_after_import_are_reported() -> None:
    code = """
import os
os.environ.pop("HF_HUB_OFFLINE", None)
import huggingface_hub.constants
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
from pathlib import Path
from hubpin.doctor import env_issues
for i in env_issues(Path(huggingface_hub.constants.HF_HUB_CACHE)):
    print(i.problem)
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "HF_HUB_OFFLINE='1' now, but huggingface_hub was imported with HF_HUB_OFFLINE=unset" in proc.stdout
    assert "HF_ENDPOINT is http://127.0.0.1:9 now, but huggingface_hub was imported with" in proc.stdout
    # set before import: nothing to report but the advice to go offline
    ok = [i for i in env_issues(Path(os.environ["HF_HUB_CACHE"])) if i.severity == "error"]
    assert ok == []


def test_package_rules(tmp_path: Path) -> None:
    def cfg(name: str, doc: dict) -> Path:
        p = tmp_path / name
        p.write_text(json.dumps(doc))
        return p

    nothing = lambda name: False  # noqa: E731 - an environment with no optional package
    unidic = {"tokenizer_config.json": cfg("a.json", {"word_tokenizer_type": "mecab"})}
    assert package_issues(unidic, nothing)[0].fix == "pip install fugashi unidic-lite"
    spm = {"spiece.model": tmp_path / "x", "tokenizer_config.json": cfg("b.json", {"tokenizer_class": "T5Tokenizer"})}
    assert package_issues(spm, nothing)[0].fix == "pip install sentencepiece protobuf"
    assert package_issues({**spm, "tokenizer.json": tmp_path / "y"}, nothing) == []
    assert package_issues({"cl100k.tiktoken": tmp_path / "z"}, nothing)[0].fix == "pip install tiktoken"
    assert package_issues(unidic, lambda name: True) == []


def test_pickle_only_weights_need_torch_2_6() -> None:
    (issue,) = weights_issues(["config.json", "pytorch_model.bin"], torch_version=(2, 5))
    assert "CVE-2025-32434" in issue.problem
    assert weights_issues(["pytorch_model.bin"], torch_version=(2, 6)) == []
    assert weights_issues(["pytorch_model.bin", "model.safetensors"], torch_version=(2, 5)) == []


def test_modules_cache_must_be_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("HF_MODULES_CACHE", str(blocker / "modules"))
    issue = modules_cache_issue()
    assert issue is not None and "not a writable folder" in issue.problem
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    assert modules_cache_issue() is None


@pytest.mark.slow
def test_doctor_verdict_matches_a_real_offline_load(japanese) -> None:  # noqa: ANN001
    """What doctor predicts is what transformers does: blocked fugashi → the load fails."""
    import subprocess
    import sys

    _root, cache, lock = japanese
    repo = lock.repos[0].repo.id
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fugashi", "ipadic"):
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Block()) if sys.argv[1] == "blocked" else None
from transformers import AutoTokenizer
try:
    print(AutoTokenizer.from_pretrained({repo!r}).tokenize("東京は日本の首都です。"))
except Exception as e:
    print("FAILED", type(e).__name__)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", code, mode], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env) for mode in ("blocked", "installed")]  # both at once: wall time
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert outs[0].startswith("FAILED")
    assert outs[1].strip() == str(["東京", "は", "日本", "の", "首都", "です", "。"])
