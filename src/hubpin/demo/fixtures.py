"""Tiny, deterministic ML repos for the demo and the tests (no network, KBs each).

Each maker writes a folder laid out like a Hub repo (what `save_pretrained` / `save` produce)
and returns its path. They need the `dev` extra (torch, transformers, sentence-transformers,
fugashi + ipadic); those are imported inside the functions so `import hubpin.demo` stays light.

The same call gives byte-identical files every time (fixed seeds, fixed vocabularies), so a
publish of the output gives the same commit id on every machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

__all__ = [
    "JAPANESE_REPO_ID",
    "JAPANESE_SENTENCE",
    "JAPANESE_TOKENS",
    "SAMPLE_TEXT",
    "TINY_DATASET_ROWS",
    "make_japanese_tokenizer",
    "make_sentence_transformer",
    "make_tiny_bert",
    "make_tiny_dataset",
]

#: the seed's model: the name every test and the demo publish the Japanese tokenizer under
JAPANESE_REPO_ID = "cl-tohoku/bert-base-japanese-whole-word-masking"
JAPANESE_SENTENCE = "東京は日本の首都です。"
JAPANESE_TOKENS = ["東京", "は", "日本", "の", "首都", "です", "。"]

#: an input whose every word is in the tiny BERT vocabulary (plus one unknown: "zebra")
SAMPLE_TEXT = "the quick brown fox jumps over the lazy dog zebra"

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS_TEXT = (
    "the a an and or of to in on is are was be it this that with for as at by from not but "
    "quick brown fox jumps over lazy dog cat bird fish tree house model data hub pin lock sync "
    "verify mirror cache file commit hello world good bad new old big small red blue green one two "
    "three four five six seven eight nine ten"
)
_WORDS = _WORDS_TEXT.split()
# single characters and ##suffixes let WordPiece split most other lowercase English words
_PIECES = [*"abcdefghijklmnopqrstuvwxyz.,!?'", "##s", "##ed", "##ing", "##er", "##ly"]
_BERT_VOCAB: list[str] = _SPECIALS + _WORDS + _PIECES

_JAPANESE_VOCAB: list[str] = _SPECIALS + ["東京", "は", "日本", "の", "首都", "です", "。"]

TINY_DATASET_ROWS: list[dict[str, object]] = [
    {"text": "the quick brown fox", "label": 1},
    {"text": "the lazy dog", "label": 0},
    {"text": "hello world", "label": 1},
    {"text": "東京は日本の首都です。", "label": 0},
]


def _bert_config(vocab_size: int):  # noqa: ANN202 - transformers.BertConfig
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
    )


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _drop_keys(path: Path, keys: tuple[str, ...]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    if any(k in data for k in keys):
        for k in keys:
            data.pop(k, None)
        _write_json(path, data)


def make_tiny_bert(folder: Path | str, *, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BertModel (safetensors) and its WordPiece tokenizer, in `folder`.

    Loads with `AutoConfig`, `AutoTokenizer` and `AutoModel`; about 70 KB on disk.
    """
    import torch
    from transformers import BertModel, BertTokenizer

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = BertModel(_bert_config(len(_BERT_VOCAB)))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    vocab = {tok: i for i, tok in enumerate(_BERT_VOCAB)}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=64)
    tokenizer.save_pretrained(out)
    # save_pretrained may or may not write vocab.txt depending on the backend; always ship it,
    # so the slow tokenizer and other readers of the classic layout work too
    _write_lines(out / "vocab.txt", _BERT_VOCAB)
    return out


def make_japanese_tokenizer(folder: Path | str) -> Path:
    """The seed's Japanese tokenizer, tiny: MeCab (ipadic) word split + WordPiece, 12 tokens.

    Layout per DESIGN.md: `vocab.txt`, `tokenizer_config.json` (BertJapaneseTokenizer, mecab,
    wordpiece, ipadic, no lower-casing) and a tiny BERT `config.json`. Tokenizing needs
    `fugashi` and `ipadic`; with them, `AutoTokenizer.from_pretrained(folder).tokenize(
    JAPANESE_SENTENCE) == JAPANESE_TOKENS`.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _write_lines(out / "vocab.txt", _JAPANESE_VOCAB)
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "BertJapaneseTokenizer",
            "word_tokenizer_type": "mecab",
            "subword_tokenizer_type": "wordpiece",
            "mecab_kwargs": {"mecab_dic": "ipadic"},
            "do_lower_case": False,
            "model_max_length": 64,
        },
    )
    config = _bert_config(len(_JAPANESE_VOCAB)).to_dict()
    config["architectures"] = ["BertForMaskedLM"]
    # transformers records its own version in config.json; drop it so the bytes (and hence
    # the published commit id) do not change with the installed transformers
    config.pop("transformers_version", None)
    _write_json(out / "config.json", config)
    return out


def make_sentence_transformer(folder: Path | str, *, seed: int = 0) -> Path:
    """A tiny sentence-transformers model (Transformer over the tiny BERT + mean Pooling).

    Written by `SentenceTransformer.save`: `modules.json`, `config_sentence_transformers.json`,
    `1_Pooling/config.json`, the BERT weights and tokenizer at the top level. Embeddings are 32-d.
    """
    import tempfile

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    out = Path(folder)
    with tempfile.TemporaryDirectory(prefix="hubpin-st-") as tmp:
        bert = make_tiny_bert(Path(tmp) / "bert", seed=seed)
        word = Transformer(str(bert), max_seq_length=64)
        pooling = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[word, pooling], device="cpu")
        model.save(str(out))
    # sentence-transformers copies its own load arguments (e.g. local_files_only, which follows
    # HF_HUB_OFFLINE) into tokenizer_config.json; drop them so the files are the same everywhere
    _drop_keys(
        out / "tokenizer_config.json", ("local_files_only", "is_local", "cache_dir", "token", "revision")
    )
    return out


def make_tiny_dataset(folder: Path | str, *, fmt: Literal["csv", "parquet"] = "csv") -> Path:
    """A dataset repo: `data/train.csv` (or `data/train.parquet`) and a README.md YAML card.

    `datasets.load_dataset(repo)` gives one `train` split with TINY_DATASET_ROWS. Streaming
    readers fetch a parquet file with HTTP Range requests. (datasets picks one file format per
    repo, so the two formats are two repos, not two configs of one.)
    """
    out = Path(folder)
    (out / "data").mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["text", "label"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(TINY_DATASET_ROWS)
        (out / "data" / "train.csv").write_text(buf.getvalue(), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {
            "text": pa.array([str(r["text"]) for r in TINY_DATASET_ROWS], pa.string()),
            "label": pa.array([int(str(r["label"])) for r in TINY_DATASET_ROWS], pa.int64()),
        }
        pq.write_table(pa.table(columns), out / "data" / "train.parquet")
    else:
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    (out / "README.md").write_text(
        "---\n"
        "license: apache-2.0\n"
        "language:\n- en\n- ja\n"
        "configs:\n"
        "- config_name: default\n"
        "  data_files:\n"
        "  - split: train\n"
        f"    path: data/train.{fmt}\n"
        "---\n\n"
        "# tiny-dataset\n\nFour rows of text and a label, generated by `hubpin.demo.fixtures`.\n",
        encoding="utf-8",
    )
    return out
