"""The hubpin demo (`python -m hubpin.demo`, `./dev demo`) and tiny ML fixtures for it and the tests."""

from __future__ import annotations

from .fixtures import (
    JAPANESE_REPO_ID,
    JAPANESE_SENTENCE,
    JAPANESE_TOKENS,
    make_japanese_tokenizer,
    make_sentence_transformer,
    make_tiny_bert,
    make_tiny_dataset,
)

__all__ = [
    "JAPANESE_REPO_ID",
    "JAPANESE_SENTENCE",
    "JAPANESE_TOKENS",
    "make_japanese_tokenizer",
    "make_sentence_transformer",
    "make_tiny_bert",
    "make_tiny_dataset",
]
