"""The demo's "applications": plain client code run in fresh interpreters.

Each script takes one JSON argument and prints one JSON line of results. Neither touches
hubpin's mirror logic: the first is pointed at the mirror only by `HF_ENDPOINT`; the second runs
with `HF_HUB_OFFLINE=1` and only `HF_HUB_CACHE` set, loading by repo name with no revision.
"""

from __future__ import annotations

#: loads every repo through the mirror and from its source folder; reports whether they match
MIRROR_APP = r"""
import hashlib, json, sys
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

args = json.loads(sys.argv[1])
out = {}

tok = AutoTokenizer.from_pretrained(args["ja_repo"], revision=args["ja_rev"])
local_tok = AutoTokenizer.from_pretrained(args["ja_src"])
out["ja_class"] = type(tok).__name__
out["ja_tokens"] = tok.tokenize(args["sentence"])
out["ja_same"] = out["ja_tokens"] == local_tok.tokenize(args["sentence"])

config = AutoConfig.from_pretrained(args["bert_repo"])
tok = AutoTokenizer.from_pretrained(args["bert_repo"])
model = AutoModel.from_pretrained(args["bert_repo"]).eval()
local = AutoModel.from_pretrained(args["bert_src"]).eval()
inputs = tok(args["text"], return_tensors="pt")
with torch.no_grad():
    h = model(**inputs).last_hidden_state
    h_local = local(**inputs).last_hidden_state
out["bert_config"] = f"{config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}"
out["bert_shape"] = list(h.shape)
out["bert_sha256"] = hashlib.sha256(h.numpy().tobytes()).hexdigest()
out["bert_same"] = bool(torch.equal(h, h_local))

from sentence_transformers import SentenceTransformer
st = SentenceTransformer(args["st_repo"], device="cpu")
st_local = SentenceTransformer(args["st_src"], device="cpu")
sentences = [args["text"], "hello world"]
e, e_local = st.encode(sentences), st_local.encode(sentences)
out["st_shape"] = list(e.shape)
out["st_same"] = bool((e == e_local).all())

import datasets
ds = datasets.load_dataset(args["ds_repo"])
out["ds_splits"] = {k: v.num_rows for k, v in ds.items()}
out["ds_same"] = ds["train"].to_list() == datasets.load_dataset(args["ds_src"])["train"].to_list()

print(json.dumps(out, ensure_ascii=False))
"""

#: production at run time: offline, by name, no revision; the locked commit is what loads.
#: datasets cannot load a Hub repo id offline from the HF cache (datasets 5.2 raises before
#: looking there), so the dataset goes through `hubpin.snapshot()`, which returns the locked
#: snapshot folder with no network.
OFFLINE_APP = r"""
import hashlib, json, sys
import torch
from transformers import AutoModel, AutoTokenizer

args = json.loads(sys.argv[1])
out = {}

tok = AutoTokenizer.from_pretrained(args["ja_repo"])
out["ja_tokens"] = tok.tokenize(args["sentence"])

tok = AutoTokenizer.from_pretrained(args["bert_repo"])
model = AutoModel.from_pretrained(args["bert_repo"]).eval()
local = AutoModel.from_pretrained(args["bert_src"]).eval()
inputs = tok(args["text"], return_tensors="pt")
with torch.no_grad():
    h = model(**inputs).last_hidden_state
    out["bert_same"] = bool(torch.equal(h, local(**inputs).last_hidden_state))
out["bert_sha256"] = hashlib.sha256(h.numpy().tobytes()).hexdigest()

from sentence_transformers import SentenceTransformer
e = SentenceTransformer(args["st_repo"], device="cpu").encode([args["text"]])
out["st_same"] = bool((e == SentenceTransformer(args["st_src"], device="cpu").encode([args["text"]])).all())

import datasets
import hubpin
folder = hubpin.snapshot(args["ds_repo"], repo_type="dataset")
ds = datasets.load_dataset(str(folder), cache_dir=args["ds_cache"])
out["ds_folder"] = str(folder)
out["ds_rows"] = ds["train"].num_rows

print(json.dumps(out, ensure_ascii=False))
"""
