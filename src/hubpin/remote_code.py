"""Remote code: `auto_map` in config files, `.py` files, and references into other repos.

transformers runs a repo's Python files when `trust_remote_code=True`, following `auto_map`
entries such as `"AutoModel": "modeling_x.MyModel"` (code in this repo) or
`"AutoModel": "other/repo--modeling_x.MyModel"` (code in *another* repo, fetched at its own
revision: transformers' `code_revision`). A lock of the model repo alone does not pin that
code, so hubpin locks the code repo as its own entry (security.md §1.2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import UnsafePathError
from .paths import validate_repo_id

__all__ = ["AUTO_MAP_FILES", "AutoMapRef", "auto_map_refs", "code_repos", "python_files"]

#: the files transformers reads `auto_map` from
AUTO_MAP_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
    "video_preprocessor_config.json",
)
#: config files larger than this are not JSON configs worth parsing
_MAX_CONFIG_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, order=True)
class AutoMapRef:
    """One `auto_map` entry: where it was found and what code it names."""

    file: str  # repo path of the config file
    key: str  # e.g. "AutoModel"
    value: str  # e.g. "other/repo--modeling_x.MyModel"
    repo_id: str | None  # the other repo, or None when the code is in this repo
    module: str  # e.g. "modeling_x"

    @property
    def module_file(self) -> str:
        return self.module.replace(".", "/") + ".py"


def _parse_ref(file: str, key: str, value: str) -> AutoMapRef | None:
    repo_id: str | None = None
    ref = value
    if "--" in value:
        repo_id, _, ref = value.partition("--")
        try:
            validate_repo_id(repo_id)
        except UnsafePathError:
            # a malformed reference is still remote code: keep it, named as given
            return AutoMapRef(file, key, value, repo_id, ref.rpartition(".")[0] or ref)
    module = ref.rpartition(".")[0] or ref
    return AutoMapRef(file, key, value, repo_id, module)


def _values(raw: object) -> Iterable[str]:
    """auto_map values are strings, or lists/tuples of strings and None ([slow, fast] tokenizers)."""
    if isinstance(raw, str):
        yield raw
    elif isinstance(raw, list | tuple):
        for item in raw:
            if isinstance(item, str):
                yield item


def auto_map_refs(files: Iterable[tuple[str, Path]]) -> list[AutoMapRef]:
    """Every `auto_map` entry in the config files among `files` ((repo path, local path) pairs)."""
    refs: list[AutoMapRef] = []
    for rel, local in files:
        if rel.rsplit("/", 1)[-1] not in AUTO_MAP_FILES:  # sub-folder configs count too (subfolder= loads)
            continue
        try:
            if local.stat().st_size > _MAX_CONFIG_BYTES:
                continue
            doc = json.loads(local.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        auto_map = doc.get("auto_map")
        if not isinstance(auto_map, dict):
            continue
        for key, raw in auto_map.items():
            for value in _values(raw):
                ref = _parse_ref(rel, str(key), value)
                if ref is not None:
                    refs.append(ref)
    return sorted(set(refs))


def code_repos(files: Iterable[tuple[str, Path]]) -> set[str]:
    """Ids of the other repos whose code `auto_map` entries among `files` point into."""
    return {r.repo_id for r in auto_map_refs(files) if r.repo_id}


def python_files(paths: Iterable[str]) -> list[str]:
    """The `.py` files among repo paths (what `trust_remote_code` could import)."""
    return sorted(p for p in paths if p.endswith(".py"))
