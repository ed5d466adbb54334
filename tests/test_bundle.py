"""Bundles without ML libraries: keygen, export (bundle and dir), strict import, bundle-info,
sync_from_bundle, the CLI, and hostile bundles (security.md §5 cases 10, 12, 13, 14, 24).

Sources are tiny folders published into a LocalStore in tmp; every hostile bundle is crafted
from a real one with one defect, and each must be refused whole with the target unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from hostile_names import UNSAFE_FILENAMES
from hubpin import bundle as bundle_mod
from hubpin._bundle_format import BLOCK, MANIFEST_NAME, SIG_NAME, Manifest, member_header
from hubpin.bundle import (
    bundle_info,
    export_bundle,
    export_dir,
    generate_keypair,
    import_bundle,
    select_entries,
    sync_from_bundle,
)
from hubpin.cli import main
from hubpin.errors import BadInput, BundleError, HashMismatchError, HubpinError, NotSyncedError
from hubpin.lockfile import LockedRepo, Lockfile, write_lock
from hubpin.objects import RepoKey
from hubpin.publish import publish
from hubpin.store import LocalStore

BIG = 5 * 1024 * 1024 + 123  # more than one read buffer: "half-way" failures are real


def tree_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything under `root`: folders, symlink targets, file modes and contents (by sha256)."""
    out: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return out
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@dataclass
class World:
    src: LocalStore
    entries: list[LockedRepo]
    key: Path
    pub: Path
    other_pub: Path
    bundle: Path  # signed, both repos
    folders: dict[str, Path]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bundle-world")
    a = root / "a"
    (a / "sub").mkdir(parents=True)
    (a / "config.json").write_text('{"model_type": "bert"}\n')
    (a / "sub" / "notes.txt").write_text("shared text\n")
    (a / "model.safetensors").write_bytes(os.urandom(BIG))
    b = root / "b"
    b.mkdir()
    (b / "notes.txt").write_text("shared text\n")  # same bytes as a/sub/notes.txt: one blob in the bundle
    (b / "weights.bin.safetensors").write_bytes((a / "model.safetensors").read_bytes())  # LFS, shared too
    src = LocalStore(root / "store", fsync=False)
    publish(a, RepoKey("model", "org/alpha"), src)
    publish(b, RepoKey("dataset", "org/beta"), src)
    entries = select_entries(src, ["org/alpha", "datasets/org/beta"], None)
    key = generate_keypair(root / "key").private
    other = generate_keypair(root / "other")
    out = root / "signed.bundle"
    export_bundle(out, src, entries, sign_key=key)
    return World(src, entries, key, key.with_name("key.pub"), other.public, out, {"org/alpha": a, "org/beta": b})


# -- keygen -----------------------------------------------------------------------------------
def test_keygen_writes_0600_private_and_public_and_refuses_overwrite(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600
    assert pair.public == tmp_path / "k.pub" and b"PUBLIC KEY" in pair.public.read_bytes()
    assert pair.fingerprint.startswith("sha256:") and len(pair.fingerprint) == 71
    before = pair.private.read_bytes()
    with pytest.raises(BadInput, match="already exists"):
        generate_keypair(tmp_path / "k")
    assert pair.private.read_bytes() == before
    (tmp_path / "only.pub").write_text("x")
    with pytest.raises(BadInput, match="only.pub: already exists"):
        generate_keypair(tmp_path / "only")
    assert not (tmp_path / "only").exists()


# -- export and import ------------------------------------------------------------------------
def test_bundle_is_a_tar_with_manifest_first_shared_blobs_once_signature_last(world: World) -> None:
    with tarfile.open(world.bundle, "r|") as tf:  # standard readers can list it
        names = [m.name for m in tf]
    manifest = Manifest.from_bytes(_members(world.bundle)[0][1])
    assert names[0] == MANIFEST_NAME and names[-1] == SIG_NAME
    assert names[1:-1] == [f"blobs/{b.sha256}" for b in manifest.blobs]
    # 3 distinct contents across 5 files of 2 repos (notes + weights shared)
    assert len(manifest.blobs) == 3 and sum(len(r.files) for r in manifest.repos) == 5
    info = bundle_info(world.bundle)
    assert info.signer == generate_fingerprint(world.pub)
    assert {(r["type"], r["id"]) for r in info.to_json()["repos"]} == {("model", "org/alpha"), ("dataset", "org/beta")}


def generate_fingerprint(pub: Path) -> str:
    from hubpin.signing import fingerprint, load_public_key

    return fingerprint(load_public_key(pub))


def test_import_with_trust_installs_a_complete_hf_cache(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    report = import_bundle(world.bundle, cache, trust=world.pub)
    assert report.trusted and report.signer == generate_fingerprint(world.pub)
    store = LocalStore(cache)
    for r in world.entries:
        assert store.get_ref(r.repo, "main") == r.commit
        snap = store.snapshot_dir(r.repo, r.commit)
        src_folder = world.folders[r.repo.id]
        for f in r.files:
            link = snap / f.path
            assert link.is_symlink() and not os.path.isabs(os.readlink(link))
            assert link.read_bytes() == (src_folder / f.path).read_bytes()
        assert (store.repo_dir(r.repo) / "trees" / f"{r.commit}.json").is_file()
    assert not list((cache / ".hubpin").glob("staging-*"))
    # a second import of the same bundle changes nothing visible
    state = tree_state(cache)
    import_bundle(world.bundle, cache, trust=world.pub)
    assert {k: v for k, v in tree_state(cache).items()} == state


def test_dir_export_is_byte_identical_with_manifest(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_dir(out, world.src, world.entries)
    for rid, sub in (("org/alpha", "org/alpha"), ("org/beta", "datasets/org/beta")):
        src = world.folders[rid]
        files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
        got = sorted(p.relative_to(out / sub).as_posix() for p in (out / sub).rglob("*") if p.is_file())
        assert got == files
        for f in files:
            assert not (out / sub / f).is_symlink()
            assert (out / sub / f).read_bytes() == (src / f).read_bytes()
    assert (out / "hubpin-manifest.json").is_file()
    with pytest.raises(BadInput, match="already exists"):
        export_dir(out, world.src, world.entries)


@pytest.mark.parametrize("fmt", ["bundle", "dir"])
def test_export_of_a_corrupt_cached_blob_fails_and_leaves_no_out(world: World, tmp_path: Path, fmt: str) -> None:
    import shutil

    store = LocalStore(tmp_path / "copy", fsync=False)
    shutil.copytree(world.src.root, store.root, symlinks=True)
    alpha = next(r for r in world.entries if r.repo.id == "org/alpha")
    big = next(f for f in alpha.files if f.size == BIG)
    blob = store.blob_path(alpha.repo, big.etag)
    data = bytearray(blob.read_bytes())
    data[BIG // 2] ^= 1  # same size, one bit flipped
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(HashMismatchError, match=r"model.safetensors in .*: sha256: expected [0-9a-f]{64}, got [0-9a-f]{64}"):
        (export_bundle if fmt == "bundle" else export_dir)(out, store, [alpha])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no OUT, no temp


def test_export_of_a_missing_blob_is_not_synced(world: World, tmp_path: Path) -> None:
    alpha = next(r for r in world.entries if r.repo.id == "org/alpha")
    with pytest.raises(NotSyncedError, match="not present"):
        export_bundle(tmp_path / "x", LocalStore(tmp_path / "empty"), [alpha])
    assert not (tmp_path / "x").exists()


# -- refs (case 24) and sync_from_bundle --------------------------------------------------------
def test_existing_ref_elsewhere_is_kept_unless_force(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    alpha = next(r for r in world.entries if r.repo.id == "org/alpha")
    store = LocalStore(cache)
    other = "f" * 40
    store.set_ref(alpha.repo, "main", other)
    report = import_bundle(world.bundle, cache)
    assert store.get_ref(alpha.repo, "main") == other
    assert ("org/alpha", "main", other, alpha.commit) in report.refs_kept
    assert store.snapshot_dir(alpha.repo, alpha.commit).is_dir()  # the commit itself is installed
    report = import_bundle(world.bundle, cache, force=True)
    assert store.get_ref(alpha.repo, "main") == alpha.commit and not report.refs_kept


def test_sync_from_bundle_installs_exactly_the_locked_files(world: World, tmp_path: Path) -> None:
    alpha = next(r for r in world.entries if r.repo.id == "org/alpha")
    only = tuple(f for f in alpha.files if f.path == "config.json")
    lock = Lockfile((LockedRepo(alpha.repo, "main", alpha.commit, only, complete=False),))
    cache = tmp_path / "cache"
    report = sync_from_bundle(lock, world.bundle, cache_dir=cache, trust=world.pub)
    store = LocalStore(cache)
    snap = store.snapshot_dir(alpha.repo, alpha.commit)
    assert sorted(p.name for p in snap.iterdir()) == ["config.json"]
    assert [p.name for p in (store.repo_dir(alpha.repo) / "blobs").iterdir()] == [only[0].etag]
    assert not (store.repo_dir(alpha.repo) / "trees").exists()  # a partial commit gets no tree cache
    assert not store.repo_dir(RepoKey("dataset", "org/beta")).exists()
    assert store.get_ref(alpha.repo, "main") == alpha.commit and report.blobs == 1


def test_sync_from_bundle_refuses_a_bundle_not_covering_the_lock(world: World, tmp_path: Path) -> None:
    alpha = next(r for r in world.entries if r.repo.id == "org/alpha")
    wrong = Lockfile((LockedRepo(alpha.repo, "main", "a" * 40, alpha.files),))
    cache = tmp_path / "cache"
    with pytest.raises(BundleError, match=f"does not cover the lock: org/alpha commit expected {'a' * 40}"):
        sync_from_bundle(wrong, world.bundle, cache_dir=cache)
    bad_file = tuple(f if f.path != "config.json" else type(f)(f.path, f.size + 1, f.etag, f.sha256)
                     for f in alpha.files)
    with pytest.raises(BundleError, match="config.json expected size"):
        sync_from_bundle(Lockfile((LockedRepo(alpha.repo, "main", alpha.commit, bad_file),)), world.bundle,
                         cache_dir=cache)
    assert tree_state(cache) == {}


# -- hostile bundles ------------------------------------------------------------------------------
def _members(path: Path) -> list[tuple[str, bytes]]:
    """(name, data) of each member of one of our bundles, read the plain way."""
    out = []
    with tarfile.open(path, "r|") as tf:
        for m in tf:
            f = tf.extractfile(m)
            out.append((m.name, f.read() if f else b""))
    return out


def _regular(name: str, data: bytes) -> bytes:
    return member_header(name, len(data)) + data + bytes(-len(data) % BLOCK)


def _special(name: str, kind: bytes, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


def _write(path: Path, *chunks: bytes) -> Path:
    path.write_bytes(b"".join(chunks) + bytes(2 * BLOCK))
    return path


@pytest.fixture
def target(world: World, tmp_path: Path) -> Path:
    """A cache that already holds something (an unsigned import of beta), to prove nothing changes."""
    cache = tmp_path / "target"
    beta = next(r for r in world.entries if r.repo.id == "org/beta")
    unsigned = tmp_path / "beta.bundle"
    export_bundle(unsigned, world.src, [beta])
    import_bundle(unsigned, cache)
    return cache


def _hostile(world: World, tmp_path: Path, case: str) -> Path:
    m = _members(world.bundle)
    man, blobs, sig = m[0], m[1:-1], m[-1]
    first = blobs[0][0]
    reg = [_regular(n, d) for n, d in blobs]
    p = tmp_path / f"{case}.bundle"
    specials = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE, "directory": tarfile.DIRTYPE}
    if case in specials:
        return _write(p, _regular(*man), _special(first, specials[case], "/etc/passwd"), *reg[1:], _regular(*sig))
    if case == "absolute":
        return _write(p, _regular(*man), _special("/etc/cron.d/x", tarfile.REGTYPE), *reg, _regular(*sig))
    if case == "dotdot":
        return _write(p, _regular(*man), _regular("../../x", b"evil"), *reg, _regular(*sig))
    if case == "duplicate":
        return _write(p, _regular(*man), reg[0], reg[0], *reg[1:], _regular(*sig))
    if case == "unlisted":
        return _write(p, _regular(*man), _regular("blobs/" + "0" * 64, b"x"), *reg, _regular(*sig))
    if case == "missing":
        return _write(p, _regular(*man), *reg[:-1], _regular(*sig))
    if case == "changed_byte":
        name, data = blobs[-1]
        data = bytearray(data)
        data[len(data) // 2] ^= 0x40
        return _write(p, _regular(*man), *reg[:-1], _regular(name, bytes(data)), _regular(*sig))
    if case == "edited_manifest":
        edited = man[1].replace(b'"revision":"main"', b'"revision":"evil"', 1)
        assert edited != man[1]
        return _write(p, _regular(MANIFEST_NAME, edited), *reg, _regular(*sig))
    if case == "trailing_data":
        return _write(p, _regular(*man), *reg, _regular(*sig))  # + junk below
    if case == "truncated":
        full = world.bundle.read_bytes()
        p.write_bytes(full[: len(full) // 2])
        return p
    raise AssertionError(case)


HOSTILE = {
    "symlink": "is a symlink",
    "hardlink": "is a hardlink",
    "chardev": "is a character device",
    "fifo": "is a FIFO",
    "directory": "is a directory",
    "absolute": "absolute name",
    "dotdot": r"'\.\.' component",
    "duplicate": "appears twice",
    "unlisted": "is not listed in the manifest",
    "missing": "is missing",
    "changed_byte": "sha256 expected",
    "edited_manifest": "does not match the manifest",
    "trailing_data": "data after the end of the archive",
    "truncated": "truncated",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bundle_is_refused_whole_and_target_unchanged(world: World, tmp_path: Path, target: Path,
                                                              case: str) -> None:
    bad = _hostile(world, tmp_path, case)
    if case == "trailing_data":
        with open(bad, "ab") as f:
            f.write(b"junk")
    before = tree_state(target)
    with pytest.raises(BundleError, match=HOSTILE[case]) as exc:
        import_bundle(bad, target)
    assert "\n" not in str(exc.value) and exc.value.exit_code == 2
    assert tree_state(target) == before
    assert not (tmp_path / "etc").exists() and not (tmp_path / "x").exists()


def test_trust_refuses_stripped_and_foreign_signatures_before_writing(world: World, tmp_path: Path, target: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    m = _members(world.bundle)
    stripped = _write(tmp_path / "stripped.bundle", *[_regular(n, d) for n, d in m[:-1]])
    foreign = tmp_path / "foreign.bundle"
    before = tree_state(target)

    def no_write(*a: object, **k: object) -> None:
        raise AssertionError("staging written before the signature was checked")

    monkeypatch.setattr(bundle_mod._StagingFile, "__init__", no_write)
    with pytest.raises(BundleError, match="unsigned"):
        import_bundle(stripped, target, trust=world.pub)
    with pytest.raises(BundleError, match=r"signed by sha256:\w+ \(expected sha256:"):
        import_bundle(world.bundle, target, trust=world.other_pub)
    # a signature from another key over the same manifest: valid, but not the trusted key
    from hubpin._bundle_format import encode_signature
    from hubpin.signing import load_private_key, sign

    other_key = load_private_key(world.other_pub.with_suffix(""))
    _write(foreign, *[_regular(n, d) for n, d in m[:-1]],
           _regular(SIG_NAME, encode_signature(sign(other_key, m[0][1]))))
    with pytest.raises(BundleError, match="expected " + generate_fingerprint(world.pub)):
        import_bundle(foreign, target, trust=world.pub)
    assert tree_state(target) == before


def test_disk_full_half_way_reports_no_space_and_leaves_target_unchanged(
        world: World, tmp_path: Path, target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = [0]
    real = bundle_mod._StagingFile.write

    def write(self: object, data: memoryview) -> None:
        if written[0]:  # the disk fills up after the first chunk landed in staging
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(data)
        real(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle_mod._StagingFile, "write", write)
    before = tree_state(target)
    with pytest.raises(HubpinError, match=r"no space left on device importing into .*needed \d+ bytes, free \d+"):
        import_bundle(world.bundle, target, trust=world.pub)
    assert written[0] > 0
    assert tree_state(target) == before


def test_import_into_a_fresh_folder_that_fails_leaves_no_folder(world: World, tmp_path: Path) -> None:
    bad = _hostile(world, tmp_path, "changed_byte")
    with pytest.raises(BundleError):
        import_bundle(bad, tmp_path / "new-cache")
    assert not (tmp_path / "new-cache").exists()


def test_not_a_bundle_and_wrong_first_member(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello" * 200)
    with pytest.raises(BundleError, match="bad tar header"):
        bundle_info(junk)
    other = _write(tmp_path / "t", _regular("README", b"hi"))
    with pytest.raises(BundleError, match="first member expected 'hubpin-bundle.json', got 'README'"):
        bundle_info(other)
    with pytest.raises(BadInput, match="no such bundle"):
        bundle_info(tmp_path / "nope")


# -- CLI --------------------------------------------------------------------------------------
def test_cli_keygen_export_info_import_round_trip(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "k"
    r = runner.invoke(main, ["keygen", str(key)])
    assert r.exit_code == 0 and "fingerprint sha256:" in r.output
    r = runner.invoke(main, ["keygen", str(key)])
    assert r.exit_code == 2 and "error:" in r.output and "already exists" in r.output
    lock = tmp_path / "hubpin.lock"
    write_lock(Lockfile(tuple(world.entries)), lock)
    out = tmp_path / "x.bundle"
    r = runner.invoke(main, ["export", str(out), "--lock", str(lock), "--sign", str(key),
                             "--cache-dir", str(world.src.root)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["bundle-info", str(out), "--json"])
    assert r.exit_code == 0 and '"signed": true' in r.output and "org/alpha" in r.output
    cache = tmp_path / "cache"
    r = runner.invoke(main, ["import", str(out), "--cache-dir", str(cache), "--trust", str(world.pub)])
    assert r.exit_code == 2 and "error: bundle" in r.output and "hint:" in r.output  # wrong key
    assert not cache.exists()
    r = runner.invoke(main, ["import", str(out), "--cache-dir", str(cache), "--trust", f"{key}.pub", "--json"])
    assert r.exit_code == 0, r.output
    assert '"trusted": true' in r.output
    r = runner.invoke(main, ["export", str(tmp_path / "d"), "--repo", "org/alpha", "--format", "dir",
                             "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "org" / "alpha" / "config.json").is_file()


def test_cli_export_errors_are_one_line_with_exit_codes(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["export", str(tmp_path / "o"), "--repo", "org/nope", "--cache-dir", str(world.src.root)])
    assert r.exit_code == 2 and r.output.startswith("error: org/nope@main: not in")
    r = runner.invoke(main, ["import", str(tmp_path / "none.bundle"), "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 2 and "no such bundle file" in r.output


def test_gnu_tar_lists_and_extracts_the_bundle(world: World, tmp_path: Path) -> None:
    listing = subprocess.run(["tar", "tf", str(world.bundle)], capture_output=True, text=True, check=True)
    assert listing.stdout.splitlines()[0] == MANIFEST_NAME and not listing.stderr
    subprocess.run(["tar", "xf", str(world.bundle), "-C", str(tmp_path)], check=True, capture_output=True)
    blobs = sorted((tmp_path / "blobs").iterdir())
    assert len(blobs) == 3
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in blobs)


def test_bundle_read_from_a_pipe_checks_the_trailing_signature_before_installing(world: World, tmp_path: Path,
                                                                                 target: Path) -> None:
    import threading

    def feed(fifo: Path) -> threading.Thread:
        def run() -> None:
            with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as f:
                f.write(world.bundle.read_bytes())
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    before = tree_state(target)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t = feed(fifo)
    with pytest.raises(BundleError, match="signed by sha256:"):
        import_bundle(fifo, target, trust=world.other_pub)  # a pipe cannot be peeked: refused at its end
    t.join(10)
    assert tree_state(target) == before
    t = feed(fifo)
    report = import_bundle(fifo, target, trust=world.pub)
    t.join(10)
    assert report.trusted and report.signer == generate_fingerprint(world.pub)
    assert LocalStore(target).get_ref(RepoKey("model", "org/alpha"), "main") is not None


@pytest.mark.parametrize("name", UNSAFE_FILENAMES)
def test_hostile_names_in_the_manifest_are_refused_before_any_write(world: World, tmp_path: Path, target: Path,
                                                                   name: str) -> None:
    """Case 11 via a bundle: a manifest naming a file `../../etc/passwd` & co (canonical, consistent)."""
    import json

    m = _members(world.bundle)
    doc = json.loads(m[0][1])
    doc["repos"][0]["files"][0]["path"] = name
    edited = (json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    bad = _write(tmp_path / "names.bundle", _regular(MANIFEST_NAME, edited), *[_regular(n, d) for n, d in m[1:-1]])
    before = tree_state(target)
    with pytest.raises(BundleError, match="bundle manifest: .*(unsafe|path)") as exc:
        import_bundle(bad, target)
    assert exc.value.exit_code == 2
    assert tree_state(target) == before


def test_export_from_a_cache_huggingface_hub_filled_partially(hub, world: World, tmp_path: Path) -> None:  # noqa: ANN001
    """A plain HF cache (no hubpin records, no sha256 of regular files, one file of three)."""
    from huggingface_hub import hf_hub_download

    from harness import unique_repo

    repo_id = unique_repo("bundle/plain")
    sha = hub.publish(world.folders["org/alpha"], repo_id)
    plain = tmp_path / "plain"
    hf_hub_download(repo_id, "sub/notes.txt", cache_dir=str(plain))
    entries = select_entries(LocalStore(plain), [repo_id], None)
    assert [(e.commit, e.complete, [f.path for f in e.files]) for e in entries] == [(sha, False, ["sub/notes.txt"])]
    assert entries[0].files[0].sha256 == hashlib.sha256(b"shared text\n").hexdigest()
    out = tmp_path / "plain.bundle"
    export_bundle(out, LocalStore(plain), entries)
    cache = tmp_path / "cache"
    import_bundle(out, cache)
    store = LocalStore(cache)
    snap = store.snapshot_dir(RepoKey("model", repo_id), sha)
    assert (snap / "sub" / "notes.txt").read_text() == "shared text\n"
    assert not (store.repo_dir(RepoKey("model", repo_id)) / "trees").exists()  # never a partial tree cache


def test_space_preflight_refuses_before_writing(world: World, tmp_path: Path, target: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(bundle_mod.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))

    def no_write(*a: object, **k: object) -> None:
        raise AssertionError("staging written despite the space preflight")

    monkeypatch.setattr(bundle_mod._StagingFile, "__init__", no_write)
    before = tree_state(target)
    needed = bundle_info(world.bundle).manifest.total_size
    with pytest.raises(HubpinError, match=f"needed {needed} bytes, free 4096"):
        import_bundle(world.bundle, target)
    assert tree_state(target) == before
