"""lock_project / outdated end to end against the session mirror, plus a byte-flipping mirror."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import unique_repo
from hubpin.config import find_project
from hubpin.errors import ConfigError, HashMismatchError, NotFoundError, PolicyError
from hubpin.hashing import git_blob_id
from hubpin.hub import HubClient
from hubpin.lock import LockContext, lock_project, outdated, stale_reasons
from hubpin.lockfile import LockedRepo, read_lock, write_lock
from hubpin.objects import RepoKey
from hubpin.server.app import create_app
from hubpin.server.runner import serve_in_thread

SMALL = {
    "config.json": b'{"hidden_size": 8}',
    "vocab/vocab.txt": b"[PAD]\n[UNK]\n",
    "README.md": b"# tiny\n",
}
WEIGHTS = b"\x00\x01" * 200  # *.safetensors: LFS by the Hub's default .gitattributes patterns


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _project(root: Path, body: str) -> Any:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hubpin.toml").write_text(body)
    return find_project(root)


@pytest.fixture
def client(hub) -> Iterator[HubClient]:  # noqa: ANN001
    with HubClient(hub.url, token=False) as c:
        yield c


def test_every_file_is_hashed_with_the_hub_etag(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/e2e")
    sha = hub.publish(_folder(tmp_path / "src", {**SMALL, "model.safetensors": WEIGHTS}), rid)
    p = _project(tmp_path / "proj", f'[models."{rid}"]\n')
    lock = lock_project(p, client)
    [entry] = lock.repos
    assert (entry.repo, entry.revision, entry.commit, entry.complete) == (RepoKey("model", rid), "main", sha, True)
    files = {f.path: f for f in entry.files}
    assert sorted(files) == sorted([*SMALL, "model.safetensors"])
    for path, data in SMALL.items():  # regular files: downloaded and hashed; etag = git blob sha1
        assert files[path].sha256 == hashlib.sha256(data).hexdigest()
        assert files[path].etag == git_blob_id(data) and files[path].size == len(data)
    w = files["model.safetensors"]  # LFS: etag = sha256
    assert w.etag == w.sha256 == hashlib.sha256(WEIGHTS).hexdigest() and w.size == len(WEIGHTS)


def test_include_exclude_and_complete(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/filter")
    hub.publish(_folder(tmp_path / "src", {**SMALL, "model.safetensors": WEIGHTS}), rid)
    p = _project(tmp_path / "proj", f'[models."{rid}"]\ninclude = ["*.json", "vocab/"]\nexclude = ["*.md"]\n')
    [entry] = lock_project(p, client).repos
    assert [f.path for f in entry.files] == ["config.json", "vocab/vocab.txt"] and entry.complete is False
    # a glob that filters nothing still gives a complete lock
    p = _project(tmp_path / "proj2", f'[models."{rid}"]\nexclude = ["*.bin"]\n')
    [entry] = lock_project(p, client).repos
    assert len(entry.files) == 4 and entry.complete is True


def test_changing_globs_relists_the_pinned_commit(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/reglob")
    sha1 = hub.publish(_folder(tmp_path / "v1", SMALL), rid)
    root = tmp_path / "proj"
    p = _project(root, f'[models."{rid}"]\ninclude = ["*.json"]\n')
    write_lock(lock_project(p, client), p.lock_path)
    hub.publish(_folder(tmp_path / "v2", {**SMALL, "config.json": b"{}"}), rid)  # main moves on
    p = _project(root, f'[models."{rid}"]\ninclude = ["*.json", "*.md"]\n')
    assert stale_reasons(p, client) == [f"updated {rid}@main = {sha1[:12]}: files 1 -> 2"]
    [entry] = lock_project(p, client).repos
    assert entry.commit == sha1 and [f.path for f in entry.files] == ["README.md", "config.json"]


def test_upgrade_flow(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = unique_repo("org/up-a"), unique_repo("org/up-b")
    a1 = hub.publish(_folder(tmp_path / "a1", {"x.txt": b"a1"}), a)
    b1 = hub.publish(_folder(tmp_path / "b1", {"x.txt": b"b1"}), b)
    p = _project(tmp_path / "proj", f'[models."{a}"]\n[models."{b}"]\n')
    assert write_lock(lock_project(p, client), p.lock_path)
    assert outdated(p, client) == [] and stale_reasons(p, client) == []
    a2 = hub.publish(_folder(tmp_path / "a2", {"x.txt": b"a2", "y.txt": b"new"}), a)
    b2 = hub.publish(_folder(tmp_path / "b2", {"x.txt": b"b2"}), b)
    moved = outdated(p, client)
    assert [(o.repo.id, o.revision, o.locked, o.remote) for o in moved] == [(a, "main", a1, a2), (b, "main", b1, b2)]
    # without --upgrade the pins are kept (and no network is needed to keep them)
    kept = lock_project(p, HubClient("http://127.0.0.1:9", token=False, max_retries=0))
    assert kept == read_lock(p.lock_path)
    assert stale_reasons(p, client) == []  # moved on the remote, but the lock matches the config
    lines: list[str] = []
    only_a = lock_project(p, client, upgrade={a}, progress=lines.append)
    assert lines == [f"locking {a}@main ..."]  # kept pins are not announced
    assert (only_a.find(a).commit, only_a.find(b).commit) == (a2, b1)  # type: ignore[union-attr]
    assert [f.path for f in only_a.find(a).files] == ["x.txt", "y.txt"]  # type: ignore[union-attr]
    everything = lock_project(p, client, upgrade=True)
    assert (everything.find(a).commit, everything.find(b).commit) == (a2, b2)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="org/nope: not declared"):
        lock_project(p, client, upgrade={"org/nope"})


def test_revision_change_and_undeclared_repos(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    rid, gone = unique_repo("org/rev"), unique_repo("org/gone")
    v1 = hub.publish(_folder(tmp_path / "v1", {"x.txt": b"1"}), rid, revision="v1")
    main = hub.publish(_folder(tmp_path / "v2", {"x.txt": b"2"}), rid)
    hub.publish(_folder(tmp_path / "g", {"g.txt": b"g"}), gone, dataset=True)
    root = tmp_path / "proj"
    p = _project(root, f'[models."{rid}"]\n[datasets."{gone}"]\n')
    write_lock(lock_project(p, client), p.lock_path)
    p = _project(root, f'[models."{rid}"]\nrevision = "v1"\n')
    reasons = stale_reasons(p, client)
    assert f"{rid}: revision 'v1' declared, 'main' locked" in reasons
    assert f"datasets/{gone} is locked but no longer declared" in reasons
    lock = lock_project(p, client)
    assert [(r.repo.id, r.revision, r.commit) for r in lock.repos] == [(rid, "v1", v1)] and v1 != main


def test_missing_repo_or_revision(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    p = _project(tmp_path / "a", '[models."org/never-published"]\n')
    with pytest.raises(NotFoundError, match="org/never-published@main"):
        lock_project(p, client)
    rid = unique_repo("org/norev")
    hub.publish(_folder(tmp_path / "s", {"x.txt": b"1"}), rid)
    p = _project(tmp_path / "b", f'[models."{rid}"]\nrevision = "v9"\n')
    with pytest.raises(NotFoundError, match=f"{rid}@v9: revision not found"):
        lock_project(p, client)


class _FlipBytes:
    """ASGI wrapper: serves the real mirror, but flips the first byte of one file's body."""

    def __init__(self, app: Any, suffix: str) -> None:
        self.app, self.suffix = app, suffix

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(self.suffix) or "/resolve/" not in scope["path"]:
            return await self.app(scope, receive, send)
        flipped = False

        async def evil_send(message: dict) -> None:
            nonlocal flipped
            if message["type"] == "http.response.body" and message.get("body") and not flipped:
                body = bytearray(message["body"])
                body[0] ^= 0xFF
                message = {**message, "body": bytes(body)}
                flipped = True
            await send(message)

        await self.app(scope, receive, evil_send)


def test_wrong_bytes_from_the_server_fail_the_lock_and_write_nothing(hub, tmp_path: Path) -> None:  # noqa: ANN001
    rid = unique_repo("org/evil")
    hub.publish(_folder(tmp_path / "v1", SMALL), rid)
    p = _project(tmp_path / "proj", f'[models."{rid}"]\n')
    with HubClient(hub.url, token=False) as c:
        write_lock(lock_project(p, c), p.lock_path)
    before = p.lock_path.read_bytes()
    hub.publish(_folder(tmp_path / "v2", {**SMALL, "vocab/vocab.txt": b"[PAD]\n[UNK]\n[CLS]\n"}), rid)
    with (
        serve_in_thread(_FlipBytes(create_app(hub.store), "/vocab/vocab.txt")) as url,
        HubClient(url) as c,
        pytest.raises(HashMismatchError) as e,
    ):
        write_lock(lock_project(p, c, upgrade=True), p.lock_path)
    assert e.value.exit_code == 1 and "vocab/vocab.txt" in e.value.message and "git blob id" in e.value.message
    assert p.lock_path.read_bytes() == before
    assert sorted(x.name for x in p.root.iterdir()) == ["hubpin.lock", "hubpin.toml"]  # no temp files left


def test_hooks_see_each_repo_and_can_refuse_or_add_entries(hub, client: HubClient, tmp_path: Path) -> None:  # noqa: ANN001
    model, code = unique_repo("org/hooked"), unique_repo("org/code")
    hub.publish(_folder(tmp_path / "m", {"config.json": b"{}"}), model)
    code_sha = hub.publish(_folder(tmp_path / "c", {"modeling.py": b"x = 1\n", "README.md": b"r"}), code)
    p = _project(tmp_path / "proj", f'[models."{model}"]\n')
    seen: list[LockContext] = []
    fetched: list[dict[str, bytes]] = []

    def add_code_repo(ctx: LockContext) -> list[LockedRepo]:
        seen.append(ctx)
        fetched.append({path: local.read_bytes() for path, local in ctx.downloaded.items()})
        return [ctx.lock_extra(RepoKey("model", code), "main", include=("*.py",))]

    lock = lock_project(p, client, hooks=[add_code_repo])
    assert [s.decl.repo.id for s in seen] == [model] and seen[0].fresh and seen[0].remote_files is not None
    assert fetched == [{"config.json": b"{}"}]  # the verified bytes, for scanners: no second download
    assert not any(Path(x).exists() for x in seen[0].downloaded.values())  # cleaned up after the hooks
    extra = lock.find(code)
    assert extra is not None and extra.commit == code_sha and extra.required_by == (model,)
    assert [f.path for f in extra.files] == ["modeling.py"] and extra.files[0].sha256 == hashlib.sha256(b"x = 1\n").hexdigest()
    write_lock(lock, p.lock_path)
    # re-lock with the pin kept: hooks are not re-run (no network), their entries are kept
    code2 = hub.publish(_folder(tmp_path / "c2", {"modeling.py": b"x = 2\n"}), code)
    assert lock_project(p, client, hooks=[add_code_repo]) == lock and len(seen) == 1
    # upgrading the model re-runs them and moves its code repo with it; no hook, no entry
    upgraded = lock_project(p, client, hooks=[add_code_repo], upgrade={model})
    assert len(seen) == 2 and upgraded.find(code).commit == code2  # type: ignore[union-attr]
    assert lock_project(p, client, hooks=[], upgrade=True).find(code) is None

    def refuse(ctx: LockContext) -> None:
        raise PolicyError(f"{ctx.decl.repo}: refused by policy")

    before = p.lock_path.read_bytes()
    with pytest.raises(PolicyError):
        lock_project(p, client, hooks=[refuse], upgrade=True)
    assert p.lock_path.read_bytes() == before


def test_unlock_drops_the_code_repos_only_it_required() -> None:
    from hubpin.lock import unlock
    from hubpin.lockfile import Lockfile

    def entry(rid: str, *required: str) -> LockedRepo:
        return LockedRepo(RepoKey("model", rid), "main", "c" * 40, (), True, tuple(required))

    lock = Lockfile((entry("org/a"), entry("org/b"), entry("org/code1", "org/a", "org/b"), entry("org/code2", "org/a")))
    after = unlock(lock, RepoKey("model", "org/a"))
    assert [(r.repo.id, r.required_by) for r in after.repos] == [("org/b", ()), ("org/code1", ("org/b",))]


def test_each_regular_file_is_downloaded_once_per_lock(hub, tmp_path: Path) -> None:  # noqa: ANN001
    """The policy hook judges the copies `lock` already verified instead of fetching them again."""
    rid = unique_repo("org/once")
    hub.publish(_folder(tmp_path / "src", {**SMALL, "model.safetensors": WEIGHTS}), rid)
    gets: list[str] = []
    app = create_app(hub.store)

    async def counting(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] == "http" and scope["method"] == "GET" and "/resolve/" in scope["path"]:
            gets.append(scope["path"].rsplit("/", 1)[-1] + ("" if not _has_range(scope) else " (range)"))
        await app(scope, receive, send)

    with serve_in_thread(counting) as url, HubClient(url, token=False) as c:
        lock_project(_project(tmp_path / "proj", f'[models."{rid}"]\n'), c)
    # three regular files fetched whole once each; the LFS weights only sniffed or fetched once
    assert sorted(g for g in gets if not g.startswith("model.")) == ["README.md", "config.json", "vocab.txt"]
    assert len([g for g in gets if g.startswith("model.")]) <= 1


def _has_range(scope: dict) -> bool:  # type: ignore[type-arg]
    return any(k == b"range" for k, _v in scope["headers"])
