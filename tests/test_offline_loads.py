"""After `hubpin sync`, unmodified HF libraries load the LOCKED commits with HF_HUB_OFFLINE=1.

One subprocess (the clients read HF_* at import) with only HF_HUB_CACHE pointing at the synced
cache and the endpoint pointing at a dead port: transformers (the seed's Japanese tokenizer,
unmodified call, no revision; a tiny BERT whose outputs must equal the source's),
huggingface_hub (hf_hub_download / snapshot_download), sentence-transformers, and
`datasets.load_dataset(hubpin.snapshot(...))`. Before the sync, `main` moved on the server and
the user's cache already held the newer `main`: the lock still wins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faults import lock_for
from hubpin.lockfile import Lockfile, write_lock
from hubpin.sync import sync

pytestmark = pytest.mark.slow

_CHECK = r"""
import json, sys
import hubpin
out = {}
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained("cl-tohoku/bert-base-japanese-whole-word-masking")
out["ja_tokens"] = tok.tokenize("東京は日本の首都です。")
out["ja_max_len"] = tok.model_max_length
import torch
ids = torch.tensor([[2, 5, 6, 7, 3]])
locked = AutoModel.from_pretrained(sys.argv[1]).eval()
source = AutoModel.from_pretrained(sys.argv[2]).eval()
with torch.no_grad():
    out["bert_equal"] = bool(torch.equal(locked(ids).last_hidden_state, source(ids).last_hidden_state))
from huggingface_hub import hf_hub_download, snapshot_download
out["hf_hub_download"] = hf_hub_download(sys.argv[1], "config.json")
out["snapshot_download"] = snapshot_download(sys.argv[1])
from sentence_transformers import SentenceTransformer
a = SentenceTransformer(sys.argv[3], device="cpu").encode(["hello world"])
b = SentenceTransformer(sys.argv[4], device="cpu").encode(["hello world"])
out["st_shape"] = list(a.shape)
out["st_equal"] = bool((a == b).all())
import datasets
ds = datasets.load_dataset(str(hubpin.snapshot(sys.argv[5], repo_type="dataset")))
out["ds_rows"] = ds["train"].num_rows
out["snapshot"] = str(hubpin.snapshot(sys.argv[1]))
print("RESULT " + json.dumps(out, ensure_ascii=False))
"""


def test_offline_loads_get_the_locked_commits(hub, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    from harness import unique_repo
    from hubpin.demo.fixtures import (
        JAPANESE_REPO_ID,
        JAPANESE_TOKENS,
        make_japanese_tokenizer,
        make_sentence_transformer,
        make_tiny_bert,
        make_tiny_dataset,
    )

    ja_src = make_japanese_tokenizer(tmp_path / "ja")
    bert_src = make_tiny_bert(tmp_path / "bert")
    st_src = make_sentence_transformer(tmp_path / "st")
    ds_src = make_tiny_dataset(tmp_path / "ds")
    bert_id, st_id, ds_id = unique_repo("org/tiny-bert"), unique_repo("org/tiny-st"), unique_repo("org/tiny-ds")
    pins = {
        JAPANESE_REPO_ID: hub.publish(ja_src, JAPANESE_REPO_ID),
        bert_id: hub.publish(bert_src, bert_id),
        st_id: hub.publish(st_src, st_id),
    }
    ds_sha = hub.publish(ds_src, ds_id, dataset=True)
    entries = [lock_for(hub.store, rid, sha).repos[0] for rid, sha in pins.items()]
    entries.append(lock_for(hub.store, ds_id, ds_sha, dataset=True).repos[0])
    lock = Lockfile(tuple(entries))

    # main moves on the server (new tokenizer settings, new weights) ...
    cfg = json.loads((ja_src / "tokenizer_config.json").read_text())
    (ja_src / "tokenizer_config.json").write_text(json.dumps({**cfg, "model_max_length": 7}))
    moved = hub.publish(ja_src, JAPANESE_REPO_ID)
    make_tiny_bert(tmp_path / "bert2", seed=1)
    hub.publish(tmp_path / "bert2", bert_id)
    cache = tmp_path / "cache"
    # ... and the user's cache already holds the newer main (an online load happened)
    snapshot_download(JAPANESE_REPO_ID, cache_dir=cache)
    assert (cache / "models--cl-tohoku--bert-base-japanese-whole-word-masking" / "refs" / "main").read_text() == moved

    report = sync(lock, cache_dir=cache, endpoint=hub.url, fsync=False)
    assert any(r.old == moved for r in report.refs_moved)

    project = tmp_path / "project"
    project.mkdir()
    (project / "hubpin.toml").write_text("[settings]\nallow-pickle = false\n")
    write_lock(lock, project / "hubpin.lock")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9",
               HF_DATASETS_CACHE=str(tmp_path / "ds-cache"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_MODULES_CACHE=str(tmp_path / "modules"), TOKENIZERS_PARALLELISM="false")
    r = subprocess.run([sys.executable, "-c", _CHECK, bert_id, str(bert_src), st_id, str(st_src), ds_id],
                       cwd=project, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert out["ja_tokens"] == JAPANESE_TOKENS
    assert out["ja_max_len"] == 64  # the locked tokenizer, not main's 7
    assert out["bert_equal"] is True
    bert_snap = str(cache / f"models--{bert_id.replace('/', '--')}" / "snapshots" / pins[bert_id])
    assert out["hf_hub_download"] == bert_snap + "/config.json"
    assert out["snapshot_download"] == bert_snap == out["snapshot"]
    assert out["st_shape"] == [1, 32] and out["st_equal"] is True
    assert out["ds_rows"] == 4
