"""Licenses: model card front matter, LICENSE texts, `hubpin licenses`, the allow-list at lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import run_cli, unique_repo
from hubpin.config import load_project
from hubpin.errors import PolicyError
from hubpin.hub import HubClient
from hubpin.licenses import identify_license_text, license_allowed, license_info, read_card_metadata
from hubpin.lock import lock_project
from hubpin.lockfile import write_lock
from hubpin.policy import lock_hook

CARD = """---
language: ja
license: other
license_name: tiny-research-license
license_link: https://example.invalid/LICENSE
tags: [bert]
---
# Tiny model
"""
APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/
   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
"""
MIT = """MIT License

Copyright (c) 2026 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software ...
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
"""


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    (path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return path


def _pairs(folder: Path) -> list[tuple[str, Path]]:
    return [(p.name, p) for p in sorted(folder.iterdir())]


def test_card_metadata_and_license_texts(tmp_path: Path) -> None:
    assert read_card_metadata(CARD)["license_name"] == "tiny-research-license"
    assert read_card_metadata("# no front matter\n") == {}
    assert read_card_metadata("---\n: [bad yaml\n---\n") == {}
    assert identify_license_text(APACHE) == "apache-2.0"
    assert identify_license_text(MIT) == "mit"
    assert identify_license_text("All rights reserved. Do not copy.") == "unknown (LICENSE file)"

    card = license_info(_pairs(_folder(tmp_path / "card", {"README.md": CARD})))
    assert (card.license, card.name, card.link) == ("other", "tiny-research-license", "https://example.invalid/LICENSE")
    assert license_allowed(card, ["tiny-research-license"]) is None
    assert "tiny-research-license not in the allow-list" in (license_allowed(card, ["mit"]) or "")

    files = license_info(_pairs(_folder(tmp_path / "files", {"LICENSE": APACHE, "LICENSE-weights.txt": "custom"})))
    assert files.license is None
    assert files.files == {"LICENSE": "apache-2.0", "LICENSE-weights.txt": "unknown (LICENSE file)"}
    assert files.ids == ("apache-2.0", "unknown (LICENSE file)")
    assert "no license declared" in (license_allowed(license_info([]), ["mit"]) or "")


@pytest.fixture(scope="module")
def licensed_project(hub, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:  # noqa: ANN001
    root = tmp_path_factory.mktemp("licenses")
    card_repo, file_repo = unique_repo("org/card"), unique_repo("org/licfile")
    hub.publish(_folder(root / "a", {"README.md": CARD}), card_repo)
    hub.publish(_folder(root / "b", {"LICENSE": MIT, "README.md": "# no metadata\n"}), file_repo)
    return root, card_repo, file_repo


def test_licenses_cli_reads_the_synced_cache_offline(licensed_project, tmp_path: Path) -> None:  # noqa: ANN001
    from hubpin.sync import sync

    root, card_repo, file_repo = licensed_project
    (tmp_path / "hubpin.toml").write_text(f'[models."{card_repo}"]\n[models."{file_repo}"]\n')
    project = load_project(tmp_path / "hubpin.toml")
    with HubClient() as client:
        lock = lock_project(project, client, hooks=[lock_hook])
    write_lock(lock, project.lock_path)
    cache = tmp_path / "cache"

    before = run_cli("licenses", "--json", "--cache-dir", str(cache), cwd=tmp_path)
    assert before.returncode == 1 and "license files not in" in before.stderr

    sync(lock, cache_dir=cache, fsync=False, progress=False)
    # offline: a dead endpoint proves nothing is fetched
    proc = run_cli("licenses", "--json", "--cache-dir", str(cache), cwd=tmp_path,
                   env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = {r["repo"]: r for r in json.loads(proc.stdout)}
    assert rows[card_repo]["license"] == "other" and rows[card_repo]["name"] == "tiny-research-license"
    assert rows[file_repo]["files"] == {"LICENSE": "mit"} and rows[file_repo]["sources"] == ["LICENSE"]
    table = run_cli("licenses", "--cache-dir", str(cache), cwd=tmp_path)
    assert table.returncode == 0 and "tiny-research-license" in table.stdout and "mit" in table.stdout

    # an allow-list the card's license is not in: `licenses` and `lock` both fail
    (tmp_path / "hubpin.toml").write_text(f'[settings]\nlicenses = ["mit"]\n[models."{card_repo}"]\n[models."{file_repo}"]\n')
    denied = run_cli("licenses", "--cache-dir", str(cache), cwd=tmp_path)
    assert denied.returncode == 1
    assert f"error: license not allowed: {card_repo}" in denied.stderr
    lock_text = project.lock_path.read_text()
    # kept pins are not re-checked by a plain `lock`; an upgrade (or a new entry) is
    with HubClient() as client, pytest.raises(PolicyError, match=f"license not allowed: {card_repo}/README.md"):
        lock_project(load_project(tmp_path / "hubpin.toml"), client, upgrade=True)
    relock = run_cli("lock", "--upgrade", cwd=tmp_path)
    assert relock.returncode == 1 and f"error: license not allowed: {card_repo}/README.md" in relock.stderr
    assert project.lock_path.read_text() == lock_text
