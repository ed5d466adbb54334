"""`hubpin keygen`, `export`, `import`, `bundle-info`: air-gap bundles."""

from __future__ import annotations

from pathlib import Path

import click

from ..bundle import bundle_info, export_bundle, export_dir, generate_keypair, import_bundle, select_entries
from ..errors import BadInput
from ..lockfile import Lockfile, read_lock
from ..store import Store, open_store
from ._app import emit_json, main, store_option


def _source_store(cache_dir: Path | None, store_spec: str | None) -> Store:
    if cache_dir is not None and store_spec is not None:
        source = click.get_current_context().get_parameter_source("store_spec")
        if source != click.core.ParameterSource.ENVIRONMENT:  # an explicit --cache-dir beats $HUBPIN_STORE
            raise BadInput("--cache-dir and --store both given (expected one)")
        store_spec = None
    return open_store(cache_dir if cache_dir is not None else store_spec)


def _project_lock(lock_path: Path | None, explicit_repos: bool) -> Lockfile | None:
    """--lock F, else the project's lock when one is found (unless --repo picks from the store)."""
    if lock_path is not None:
        return read_lock(lock_path)
    if explicit_repos:
        return None
    from ..config import find_config, load_project

    found = find_config()
    if found is not None:
        lock_file = load_project(found).lock_path
        if lock_file.is_file():
            return read_lock(lock_file)
        raise BadInput(f"{lock_file}: no lockfile (expected the project's lock to export)",
                       hint="run `hubpin lock` first, or pass --repo/--lock")
    return None


_cache_opt = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                          help="HF cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub).")


@main.command("keygen")
@click.argument("keyfile", type=click.Path(path_type=Path))
def keygen_cmd(keyfile: Path) -> None:
    """Create an ed25519 signing key: private key KEYFILE (mode 0600), public key KEYFILE.pub.

    Never overwrites an existing file. Give KEYFILE.pub to whoever imports (`--trust`).
    """
    pair = generate_keypair(keyfile)
    click.echo(f"private key {pair.private} (keep it secret)\npublic key  {pair.public}\n"
               f"fingerprint {pair.fingerprint}")


@main.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--repo", "repos", multiple=True, metavar="REPO[@REV]",
              help="Repo to export (repeatable; datasets/ORG/NAME for a dataset). Default: every repo in the lock.")
@click.option("--format", "fmt", type=click.Choice(["bundle", "dir"]), default="bundle", show_default=True,
              help="bundle: one uncompressed file (weights do not compress); dir: OUT/<org>/<name>/ folders.")
@click.option("--sign", "sign_key", type=click.Path(path_type=Path), default=None,
              help="Sign the bundle's manifest with this ed25519 private key (from `hubpin keygen`).")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path), default=None,
              help="Lockfile whose pins to export (default: the project's hubpin.lock, unless --repo is given).")
@_cache_opt
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export_cmd(out: Path, repos: tuple[str, ...], fmt: str, sign_key: Path | None, lock_path: Path | None,
               cache_dir: Path | None, store_spec: str | None, as_json: bool) -> None:
    """Export pinned repos from a cache or store to OUT, re-verifying every byte.

    A bundle (default) is a single uncompressed tar-format file: a manifest (lock entries and a
    blob index), each distinct blob once, and an optional ed25519 signature. `--format dir`
    writes plain folders loadable with `from_pretrained(OUT/org/name)`. OUT must not exist;
    nothing is left at OUT if anything fails.
    """
    store = _source_store(cache_dir, store_spec)
    lock = _project_lock(lock_path, bool(repos))
    entries = select_entries(store, list(repos), lock)
    if fmt == "dir":
        if sign_key is not None:
            raise BadInput("--sign applies to bundles only (expected --format bundle)")
        export_dir(out, store, entries)
        nbytes = sum(r.total_size for r in entries)
        signer = None
    else:
        export_bundle(out, store, entries, sign_key=sign_key)
        nbytes = out.stat().st_size  # the file the user carries, not the sum of what is in it
        signer = bundle_info(out).signer if sign_key else None
    if as_json:
        emit_json({"out": str(out), "format": fmt, "bytes": nbytes, "signer": signer,
                   "repos": [{"repo": str(r.repo), "type": r.repo.type, "id": r.repo.id, "revision": r.revision,
                              "commit": r.commit, "files": len(r.files)} for r in entries]})
        return
    for r in entries:
        click.echo(f"{r.repo}@{r.revision} = {r.commit} ({len(r.files)} files, {r.total_size} bytes)")
    click.echo(f"wrote {out} ({fmt}, {nbytes} bytes{', signed by ' + signer if signer else ''})")


@main.command("import")
@click.argument("bundle", type=click.Path(path_type=Path))
@_cache_opt
@store_option
@click.option("--trust", type=click.Path(path_type=Path), default=None,
              help="Public key (KEYFILE.pub): refuse a bundle not signed by it, before writing anything.")
@click.option("--force", is_flag=True, help="Move refs that point at another commit (default: keep them).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_cmd(bundle: Path, cache_dir: Path | None, store_spec: str | None, trust: Path | None, force: bool,
               as_json: bool) -> None:
    """Verify BUNDLE completely, then install it into the HF cache (or --store).

    Every member is checked against the manifest and hashed into a staging folder on the target;
    only when everything matched are blobs, snapshots, trees/ and refs put in place. On any
    failure the target is left unchanged.
    """
    store = _source_store(cache_dir, store_spec)
    # supply-chain policy (hubpin.policy): the project's found from the cwd, else no pickle
    from ..policy import default_policy_spec

    report = import_bundle(bundle, store, trust=trust, force=force, policy=default_policy_spec())
    if as_json:
        emit_json(report.to_json())
        return
    for repo, rev, sha, n in report.repos:
        click.echo(f"{repo}@{rev} = {sha} ({n} files)")
    for repo, name, existing, new in report.refs_kept:
        click.echo(f"kept {repo} refs/{name} = {existing} (bundle has {new}; use --force to move it)", err=True)
    signed = (f"signed by {report.signer}{' (trusted)' if report.trusted else ' (not checked against --trust)'}"
              if report.signer else "unsigned")
    click.echo(f"imported {report.blobs} blobs ({report.bytes} bytes) into {report.target}; {signed}")


@main.command("bundle-info")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bundle_info_cmd(bundle: Path, as_json: bool) -> None:
    """Show a bundle's repos, commits, sizes and signer. Reads only the manifest and the signature."""
    info = bundle_info(bundle)
    if as_json:
        emit_json(info.to_json())
        return
    d = info.to_json()
    for r in d["repos"]:
        kind = "" if r["type"] == "model" else f"{r['type']}s/"
        click.echo(f"{kind}{r['id']}@{r['revision']} = {r['commit']} ({r['files']} files, {r['bytes']} bytes"
                   f"{'' if r['complete'] else ', partial'})")
    click.echo(f"{d['blobs']} blobs, {d['blob_bytes']} bytes; file {d['bytes']} bytes; "
               + (f"signed by {d['signer']}" if d["signer"] else "unsigned"))
