"""End to end across an air gap, with unmodified ML clients.

Connected side (in-process): tiny models published into the session `hub`, declared and locked
with `hubpin add`, synced into a cache, exported as a signed bundle and as plain folders.
Air-gapped side (subprocesses, HF_HUB_OFFLINE=1, only HF_HUB_CACHE, a dead HF_ENDPOINT):
`hubpin import --trust`, then transformers / sentence-transformers load the repos by name and
give the source folders' outputs; `hubpin sync --from` installs the same lock elsewhere. Last,
`hubpin serve` over the imported cache serves the files to a third client.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import run_cli, run_python, unique_repo
from hubpin.cli import main
from hubpin.demo.fixtures import (
    JAPANESE_SENTENCE,
    JAPANESE_TOKENS,
    SAMPLE_TEXT,
    make_japanese_tokenizer,
    make_sentence_transformer,
    make_tiny_bert,
)
from hubpin.lockfile import read_lock
from hubpin.store import LocalStore

pytestmark = pytest.mark.slow

LOAD = r"""
import json, sys, numpy as np, torch
from transformers import AutoModel, AutoTokenizer
from sentence_transformers import SentenceTransformer
a = json.loads(sys.argv[1])
def hidden(src):
    tok = AutoTokenizer.from_pretrained(src); model = AutoModel.from_pretrained(src).eval()
    with torch.no_grad():
        return model(**tok(a["text"], return_tensors="pt")).last_hidden_state.numpy()
out = {}
ref = hidden(a["bert_src"])
out["bert_by_name"] = bool(np.array_equal(hidden(a["bert"]), ref))
out["bert_dir_export"] = bool(np.array_equal(hidden(a["bert_dir"]), ref))
out["ja_tokens"] = AutoTokenizer.from_pretrained(a["ja"]).tokenize(a["ja_text"])
st_name = SentenceTransformer(a["st"], device="cpu").encode(["hello world", a["text"]])
st_src = SentenceTransformer(a["st_src"], device="cpu").encode(["hello world", a["text"]])
out["st_equal"] = bool(np.array_equal(st_name, st_src)); out["st_shape"] = list(st_name.shape)
print("RESULT" + json.dumps(out))
"""


def _offline_env(cache: Path, home: Path) -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(home),
            "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there: any request would fail
            "HF_DATASETS_CACHE": str(home / "datasets"), "HUBPIN_STORE": ""}


def test_signed_bundle_carries_models_across_the_air_gap(hub, tmp_path: Path) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    folders = {"bert": make_tiny_bert(src / "bert"), "ja": make_japanese_tokenizer(src / "ja"),
               "st": make_sentence_transformer(src / "st")}
    names = {k: unique_repo(f"airgap/{k}") for k in folders}
    shas = {k: hub.publish(folders[k], names[k]) for k in folders}

    # -- connected side ------------------------------------------------------------------------
    runner = CliRunner()
    proj = tmp_path / "proj"
    proj.mkdir()
    config = proj / "hubpin.toml"

    def ok(*args: str) -> str:
        r = runner.invoke(main, list(args))
        assert r.exit_code == 0, f"{args}: {r.output}"
        return r.output

    ok("init", "--dir", str(proj), "--endpoint", hub.url)
    for k in folders:
        ok("add", names[k], "--config", str(config))
    lock_path = proj / "hubpin.lock"
    lock = read_lock(lock_path)
    assert {r.repo.id: r.commit for r in lock.repos} == {names[k]: shas[k] for k in folders}
    online = tmp_path / "online-cache"
    ok("sync", "--lock", str(lock_path), "--cache-dir", str(online))
    ok("keygen", str(tmp_path / "signer"))
    bundle = tmp_path / "models.hubpin"
    out = ok("export", str(bundle), "--lock", str(lock_path), "--sign", str(tmp_path / "signer"), "--cache-dir", str(online))
    assert f"(bundle, {bundle.stat().st_size} bytes, signed by sha256:" in out  # the size of the file to carry
    exported = tmp_path / "exported"
    ok("export", str(exported), "--lock", str(lock_path), "--format", "dir", "--cache-dir", str(online))
    for k, folder in folders.items():  # dir export: real files, byte-identical to the sources
        for p in folder.rglob("*"):
            if p.is_file():
                q = exported / names[k] / p.relative_to(folder)
                assert not q.is_symlink() and q.read_bytes() == p.read_bytes(), q

    # -- air-gapped side -----------------------------------------------------------------------
    cache, home = tmp_path / "airgap-cache", tmp_path / "airgap-home"
    env = _offline_env(cache, home)
    r = run_cli("bundle-info", str(bundle), "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["signed"] is True
    r = run_cli("import", str(bundle), "--trust", str(tmp_path / "signer.pub"), env=env)
    assert r.returncode == 0, r.stderr
    assert "(trusted)" in r.stdout
    args = {"text": SAMPLE_TEXT, "ja_text": JAPANESE_SENTENCE, "bert_src": str(folders["bert"]),
            "st_src": str(folders["st"]), "bert": names["bert"], "ja": names["ja"], "st": names["st"],
            "bert_dir": str(exported / names["bert"])}
    r = run_python(LOAD.replace("sys.argv[1]", repr(json.dumps(args))), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.split("RESULT", 1)[1])
    assert result == {"bert_by_name": True, "bert_dir_export": True, "ja_tokens": JAPANESE_TOKENS,
                      "st_equal": True, "st_shape": [2, 32]}

    # the same lock from the same bundle through `hubpin sync --from`, offline
    other = tmp_path / "other-cache"
    r = run_cli("sync", "--from", str(bundle), "--trust", str(tmp_path / "signer.pub"), "--lock", str(lock_path),
                "--cache-dir", str(other), env=env)
    assert r.returncode == 0, r.stderr
    for k in folders:
        assert LocalStore(other).get_ref(next(x.repo for x in lock.repos if x.repo.id == names[k]), "main") == shas[k]

    # -- a third client through `hubpin serve` over the imported cache --------------------------
    from huggingface_hub import hf_hub_download

    from hubpin.server.app import create_app
    from hubpin.server.runner import serve_in_thread

    third = tmp_path / "third"
    with serve_in_thread(create_app(LocalStore(cache))) as url:
        for k, folder in folders.items():
            for name in ("config.json", "model.safetensors"):
                if (folder / name).is_file():
                    got = hf_hub_download(names[k], name, endpoint=url, cache_dir=str(third))
                    assert Path(got).read_bytes() == (folder / name).read_bytes()
    assert os.path.isdir(third)
