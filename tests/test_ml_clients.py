"""Unmodified ML clients (transformers, sentence-transformers, datasets) load through the mirror.

Every test publishes tiny generated repos into the session `hub` (a hubpin server on 127.0.0.1
whose URL is HF_ENDPOINT), loads them by repo id into a fresh cache, and checks the results
equal those of the source folder. The ML imports and fixture folders are built once per module.
"""

from __future__ import annotations

import contextlib
import filecmp
import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import unique_repo
from hubpin.demo.fixtures import (
    JAPANESE_REPO_ID,
    JAPANESE_SENTENCE,
    JAPANESE_TOKENS,
    SAMPLE_TEXT,
    TINY_DATASET_ROWS,
    make_japanese_tokenizer,
    make_sentence_transformer,
    make_tiny_bert,
    make_tiny_dataset,
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Sources:
    bert: Path
    bert_v2: Path  # same shapes, other weights (seed 1): a second version of the same repo
    japanese: Path
    sentence_transformer: Path
    dataset: Path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    root = tmp_path_factory.mktemp("ml-sources")
    return Sources(
        bert=make_tiny_bert(root / "bert"),
        bert_v2=make_tiny_bert(root / "bert-v2", seed=1),
        japanese=make_japanese_tokenizer(root / "japanese"),
        sentence_transformer=make_sentence_transformer(root / "st"),
        dataset=make_tiny_dataset(root / "dataset"),
    )


def _hidden(model_dir_or_repo: str | Path, **kwargs: object):  # noqa: ANN202 - torch.Tensor
    """last_hidden_state of the tiny BERT for SAMPLE_TEXT, tokenized by the same source."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir_or_repo), **kwargs)
    model = AutoModel.from_pretrained(str(model_dir_or_repo), **kwargs).eval()
    with torch.no_grad():
        return model(**tok(SAMPLE_TEXT, return_tensors="pt")).last_hidden_state


def _snapshot(cache_dir: Path, repo_id: str, sha: str, *, dataset: bool = False) -> Path:
    kind = "datasets" if dataset else "models"
    return cache_dir / f"{kind}--{repo_id.replace('/', '--')}" / "snapshots" / sha


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextlib.contextmanager
def _recorded_responses() -> Iterator[list[tuple[str, str, int, str | None]]]:
    """Record (method, url, status, Range header) of every huggingface_hub request meanwhile.

    Observes the real traffic (the client is the default one plus a response hook); restores the
    default client factory afterwards.
    """
    from huggingface_hub.utils import _http

    seen: list[tuple[str, str, int, str | None]] = []

    def record(response) -> None:  # noqa: ANN001 - httpx response
        req = response.request
        seen.append((req.method, str(req.url), response.status_code, req.headers.get("range")))

    def factory():  # noqa: ANN202
        client = _http.default_client_factory()
        client.event_hooks["response"] = [*client.event_hooks["response"], record]
        return client

    _http.set_client_factory(factory)
    try:
        yield seen
    finally:
        _http.set_client_factory(_http.default_client_factory)


# --- the fixtures themselves (no server) --------------------------------------------------------


def test_fixtures_are_deterministic_and_tiny(sources: Sources, tmp_path: Path) -> None:
    again = {
        "bert": make_tiny_bert(tmp_path / "bert"),
        "japanese": make_japanese_tokenizer(tmp_path / "japanese"),
        "sentence_transformer": make_sentence_transformer(tmp_path / "st"),
        "dataset": make_tiny_dataset(tmp_path / "dataset"),
    }
    for name, folder in again.items():
        first = getattr(sources, name)
        assert _tree_digest(folder) == _tree_digest(first), f"{name} differs between two runs"
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 200_000
    # a different seed really gives different weights (the upgrade test relies on it)
    assert not filecmp.cmp(
        sources.bert / "model.safetensors", sources.bert_v2 / "model.safetensors", shallow=False
    )
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    } <= set(_tree_digest(sources.bert))
    assert {"modules.json", "1_Pooling/config.json", "config_sentence_transformers.json"} <= set(
        _tree_digest(sources.sentence_transformer)
    )


def test_japanese_fixture_is_the_seed_recipe(sources: Sources) -> None:
    import json

    from transformers import AutoTokenizer

    vocab = (sources.japanese / "vocab.txt").read_text("utf-8").splitlines()
    assert vocab == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "東京",
        "は",
        "日本",
        "の",
        "首都",
        "です",
        "。",
    ]
    cfg = json.loads((sources.japanese / "tokenizer_config.json").read_text("utf-8"))
    assert cfg["tokenizer_class"] == "BertJapaneseTokenizer"
    assert cfg["word_tokenizer_type"] == "mecab" and cfg["subword_tokenizer_type"] == "wordpiece"
    assert cfg["mecab_kwargs"] == {"mecab_dic": "ipadic"} and cfg["do_lower_case"] is False
    tok = AutoTokenizer.from_pretrained(sources.japanese)
    assert type(tok).__name__ == "BertJapaneseTokenizer"
    assert tok.tokenize(JAPANESE_SENTENCE) == JAPANESE_TOKENS


# --- real clients through the mirror ------------------------------------------------------------


def test_tiny_bert_loads_through_mirror_with_identical_outputs(
    hub, sources: Sources, cache_dir: Path
) -> None:
    import torch
    from transformers import AutoConfig

    repo = unique_repo("ml/tiny-bert")
    sha = hub.publish(sources.bert, repo)

    config = AutoConfig.from_pretrained(repo, cache_dir=cache_dir)
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("bert", 32, 2)
    remote = _hidden(repo, cache_dir=cache_dir)
    local = _hidden(sources.bert)
    assert remote.shape == (1, 12, 32)
    assert torch.equal(remote, local)
    # it came through the mirror: the client cache holds the published commit, byte for byte
    snap = _snapshot(cache_dir, repo, sha)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (snap / name).read_bytes() == (sources.bert / name).read_bytes()
    refs_main = cache_dir / f"models--{repo.replace('/', '--')}" / "refs" / "main"
    assert refs_main.read_text() == sha


def test_pinned_revision_keeps_loading_the_old_weights_after_main_moves(
    hub, sources: Sources, cache_dir: Path
) -> None:
    import torch

    repo = unique_repo("ml/moving-bert")
    v1 = hub.publish(sources.bert, repo)
    v2 = hub.publish(sources.bert_v2, repo)
    assert v1 != v2

    pinned = _hidden(repo, cache_dir=cache_dir, revision=v1)
    head = _hidden(repo, cache_dir=cache_dir)
    assert torch.equal(pinned, _hidden(sources.bert))
    assert torch.equal(head, _hidden(sources.bert_v2))
    assert not torch.equal(pinned, head)
    assert _snapshot(cache_dir, repo, v1).is_dir() and _snapshot(cache_dir, repo, v2).is_dir()


def test_japanese_tokenizer_under_the_seed_name_at_its_commit(hub, sources: Sources, cache_dir: Path) -> None:
    from transformers import AutoTokenizer

    sha = hub.publish(sources.japanese, JAPANESE_REPO_ID)

    tok = AutoTokenizer.from_pretrained(JAPANESE_REPO_ID, revision=sha, cache_dir=cache_dir)
    assert type(tok).__name__ == "BertJapaneseTokenizer"
    local = AutoTokenizer.from_pretrained(sources.japanese)
    assert tok.tokenize(JAPANESE_SENTENCE) == local.tokenize(JAPANESE_SENTENCE) == JAPANESE_TOKENS
    assert tok(JAPANESE_SENTENCE)["input_ids"] == local(JAPANESE_SENTENCE)["input_ids"]
    assert (_snapshot(cache_dir, JAPANESE_REPO_ID, sha) / "vocab.txt").is_file()


def test_sentence_transformer_embeddings_through_mirror_equal_local(
    hub, sources: Sources, cache_dir: Path
) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    repo = unique_repo("ml/tiny-st")
    sha = hub.publish(sources.sentence_transformer, repo)

    sentences = [SAMPLE_TEXT, "hello world", "the cat"]
    remote = SentenceTransformer(repo, cache_folder=str(cache_dir), device="cpu")
    local = SentenceTransformer(str(sources.sentence_transformer), device="cpu")
    got, want = remote.encode(sentences), local.encode(sentences)
    assert got.shape == (3, 32)
    assert np.array_equal(got, want)
    snap = _snapshot(cache_dir, repo, sha)
    assert (snap / "modules.json").is_file() and (snap / "1_Pooling" / "config.json").is_file()


def test_load_dataset_through_mirror_gives_the_rows(hub, sources: Sources, tmp_path: Path) -> None:
    import datasets

    repo = unique_repo("ml/tiny-dataset")
    sha = hub.publish(sources.dataset, repo, dataset=True)

    cache = tmp_path / "datasets-cache"
    ds = datasets.load_dataset(repo, cache_dir=str(cache))
    assert list(ds) == ["train"]
    assert ds["train"].num_rows == len(TINY_DATASET_ROWS)
    assert ds["train"].to_list() == TINY_DATASET_ROWS
    # datasets names its prepared copy after the commit the mirror resolved `main` to
    assert [p for p in cache.rglob(sha) if p.is_dir()], f"no prepared dataset for commit {sha} in {cache}"


def test_missing_model_fails_with_the_hub_error(hub, cache_dir: Path) -> None:
    from huggingface_hub.errors import RepositoryNotFoundError
    from transformers import AutoConfig

    repo = unique_repo("ml/never-published")
    with pytest.raises(OSError) as info:
        AutoConfig.from_pretrained(repo, cache_dir=cache_dir)
    # the mirror's X-Error-Code: RepoNotFound reaches transformers as RepositoryNotFoundError,
    # which it turns into an OSError naming the repo
    assert repo in str(info.value)
    assert isinstance(info.value.__cause__, RepositoryNotFoundError)
    assert not list(cache_dir.rglob("snapshots/*"))


@pytest.mark.timeout(300)
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`python -m hubpin.demo` (what `./dev demo` runs) exits 0 and shows what it loaded."""
    import subprocess

    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "hubpin.demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # through the mirror, then offline by name after lock + sync: the same tokens both times
    assert out.count(" | ".join(JAPANESE_TOKENS)) == 2
    assert "all identical to the source folders" in out
    assert "the locked commit loaded" in out  # offline load ignored the newer main
    assert "sha256 expected" in out and "(exit 1; the byte is restored)" in out  # verify caught the flip
    assert "airgap-cache match the lock" in out  # the signed bundle was carried and verified
    assert out.rstrip().splitlines()[-2].startswith("ok: ")
    assert proc.stderr.strip() == ""
    lock = (workdir / "app" / "hubpin.lock").read_text("utf-8")
    assert JAPANESE_REPO_ID in lock
    assert (
        workdir / "deploy-cache" / f"models--{JAPANESE_REPO_ID.replace('/', '--')}" / "refs" / "main"
    ).is_file()


def test_demo_failing_step_gives_one_error_line_and_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from hubpin.demo import __main__ as demo_main
    from hubpin.demo import _core, _steps

    for var in _core.PARENT_ENV:  # main() sets these; restore them after the test
        monkeypatch.setenv(var, os.environ.get(var, ""))
    servers: list = []

    def make_empty_store(demo: _core.Demo) -> None:
        demo.store.mkdir()

    def boom(demo: _core.Demo) -> None:
        assert demo.server is not None and demo.server.poll() is None  # the mirror is running
        servers.append(demo.server)
        raise _core.DemoError("the model differs", hint="look at serve.log")

    steps = [("empty store", make_empty_store), ("serve", _steps.step_serve), ("load: check", boom)]
    monkeypatch.setattr(demo_main, "STEPS", steps)
    workdir = tmp_path / "demo"

    assert demo_main.main(["--workdir", str(workdir)]) == 1

    err = capsys.readouterr().err.splitlines()
    assert err == ["error: step 3 (load): the model differs", "hint: look at serve.log"]
    assert servers[0].poll() is not None  # the mirror process was stopped
    assert (workdir / "serve.log").is_file()  # the work folder is kept for inspection
    # non-empty --workdir is refused as bad input, before anything runs
    assert demo_main.main(["--workdir", str(workdir)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --workdir {workdir} is not empty")


def test_streaming_parquet_dataset_through_mirror_uses_range_reads(
    hub, sources: Sources, tmp_path: Path
) -> None:
    import datasets

    repo = unique_repo("ml/tiny-parquet")
    hub.publish(make_tiny_dataset(tmp_path / "src", fmt="parquet"), repo, dataset=True)

    # streaming reads the parquet file through HfFileSystem: ranged GETs that must get 206
    with _recorded_responses() as seen:
        streamed = datasets.load_dataset(repo, split="train", streaming=True)
        assert list(streamed) == TINY_DATASET_ROWS
    ranged = [(status, rng) for method, url, status, rng in seen if "train.parquet" in url and rng]
    assert ranged, f"no Range request for the parquet file: {seen}"
    assert all(status == 206 for status, _ in ranged), ranged
    # and the regular download of the same repo
    ds = datasets.load_dataset(repo, split="train", cache_dir=str(tmp_path / "datasets-cache"))
    assert ds.to_list() == TINY_DATASET_ROWS
    assert ds.features["label"].dtype == "int64"
