"""Licenses: from the model card's YAML front matter and from LICENSE files.

The Hub's model card metadata (`README.md` front matter) carries `license` (an SPDX-like id
such as `apache-2.0`, or `other`), `license_name` and `license_link`. LICENSE* files are
identified by a few phrases of the common licenses' texts; anything else is reported as
"unknown (LICENSE file)". Ids are compared case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LicenseInfo", "identify_license_text", "is_license_file", "license_allowed", "license_info", "read_card_metadata"]

_MAX_TEXT = 1024 * 1024
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.S)

#: (license id, phrases that must all appear, lower-cased, whitespace collapsed)
_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("apache-2.0", ("apache license", "version 2.0")),
    ("mit", ("permission is hereby granted, free of charge", "the software is provided \"as is\"")),
    ("bsd-3-clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("bsd-2-clause", ("redistribution and use in source and binary forms", "this list of conditions")),
    ("cc-by-sa-4.0", ("attribution-sharealike 4.0 international",)),
    ("cc-by-nc-4.0", ("attribution-noncommercial 4.0 international",)),
    ("cc-by-4.0", ("attribution 4.0 international",)),
    ("gpl-3.0", ("gnu general public license", "version 3")),
    ("lgpl-3.0", ("gnu lesser general public license", "version 3")),
    ("mpl-2.0", ("mozilla public license", "2.0")),
    ("unlicense", ("this is free and unencumbered software released into the public domain",)),
    ("cc0-1.0", ("cc0 1.0 universal",)),
    ("openrail", ("responsible ai license",)),
    ("llama3", ("meta llama 3 community license",)),
    ("llama2", ("llama 2 community license",)),
)


@dataclass(frozen=True)
class LicenseInfo:
    """What a repo says about its license, and where it says it."""

    license: str | None  # normalized id ("apache-2.0", "other", "unknown (LICENSE file)"), None if unstated
    name: str | None = None  # card `license_name` (for "other")
    link: str | None = None  # card `license_link`
    sources: tuple[str, ...] = ()  # e.g. ("README.md", "LICENSE")
    files: dict[str, str] = field(default_factory=dict)  # LICENSE file → what its text looks like

    @property
    def ids(self) -> tuple[str, ...]:
        """Every license id this repo declares (card, then LICENSE files), deduplicated."""
        out: list[str] = []
        for value in (self.license, *self.files.values()):
            if value and value not in out:
                out.append(value)
        return tuple(out)

    def to_dict(self) -> dict[str, object]:
        return {
            "license": self.license,
            "name": self.name,
            "link": self.link,
            "sources": list(self.sources),
            "files": dict(sorted(self.files.items())),
        }


def read_card_metadata(text: str) -> dict[str, object]:
    """The YAML front matter of a model card, or {} when there is none or it does not parse."""
    import yaml  # a dependency of huggingface_hub

    m = _FRONT_MATTER.match(text)
    if not m:
        return {}
    try:
        doc = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def identify_license_text(text: str) -> str:
    """A license id for a LICENSE file's text, or "unknown (LICENSE file)"."""
    flat = " ".join(text.lower().split())
    for license_id, phrases in _SIGNATURES:
        if all(p in flat for p in phrases):
            return license_id
    return "unknown (LICENSE file)"


def _norm(value: object) -> str | None:
    if isinstance(value, list):  # the card allows a list; keep the first, the rest show up as files
        value = value[0] if value else None
    if value is None:
        return None
    return str(value).strip().lower() or None


def is_license_file(rel: str) -> bool:
    """README.md (the card) or a top-level LICENSE*/LICENCE*/COPYING* file."""
    return rel == "README.md" or ("/" not in rel and rel.upper().startswith(("LICENSE", "LICENCE", "COPYING")))


def license_info(files: Iterable[tuple[str, Path]]) -> LicenseInfo:
    """License of a repo from its files ((repo path, local path) pairs); never raises on bad text."""
    license_id = name = link = None
    sources: list[str] = []
    found: dict[str, str] = {}
    for rel, local in sorted(files):
        try:
            if rel == "README.md":
                meta = read_card_metadata(_read_text(local))
                license_id = _norm(meta.get("license"))
                name = _norm(meta.get("license_name"))
                link = str(meta["license_link"]) if meta.get("license_link") else None
                if license_id or name:
                    sources.append(rel)
            elif is_license_file(rel):
                found[rel] = identify_license_text(_read_text(local))
                sources.append(rel)
        except OSError:
            continue
    return LicenseInfo(license_id, name, link, tuple(sources), found)


def _read_text(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(_MAX_TEXT).decode("utf-8", "replace")


def license_allowed(info: LicenseInfo, allow: Sequence[str]) -> str | None:
    """None when every declared license is in `allow`, else the reason (names what was found)."""
    allowed = {a.strip().lower() for a in allow}
    ids = info.ids
    if not ids:
        return f"no license declared; allowed: {', '.join(sorted(allowed))}"
    bad = []
    for i in ids:
        # "other" with a license_name is judged by that name (e.g. `license_name: my-license`)
        key = info.name if i == "other" and info.name else i
        if key not in allowed:
            bad.append(key)
    if bad:
        return f"license {', '.join(bad)} not in the allow-list ({', '.join(sorted(allowed))})"
    return None
