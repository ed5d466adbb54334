"""`hubpin sync`, `hubpin verify`, `hubpin gc`: thin commands over hubpin.sync / verify / gc."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import BadInput
from ..lockfile import Lockfile, read_lock
from ._app import emit_json, main

_CACHE_HELP = "HF cache folder to use. Default: $HF_HUB_CACHE, else $HF_HOME/hub."
_LOCK_HELP = "hubpin.lock to use. Default: the one beside hubpin.toml / pyproject.toml, searched from the current folder up."


def _lock(path: Path | None) -> tuple[Lockfile, Path]:
    if path is not None:
        return read_lock(path), path
    from ..config import find_project

    found = find_project().lock_path
    return read_lock(found), found


@main.command("sync")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help=_CACHE_HELP)
@click.option("--endpoint", default=None, metavar="URL",
              help="Hub-compatible endpoint. Default: $HF_ENDPOINT, then [settings] endpoint, then https://huggingface.co.")
@click.option("--jobs", "-j", default=8, show_default=True, type=click.IntRange(1, 64), help="Parallel downloads.")
@click.option("--from", "bundle", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Install the locked files from this bundle instead of the network (air gap).")
@click.option("--trust", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="With --from: public key the bundle must be signed with.")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help=_LOCK_HELP)
@click.option("--no-fsync", is_flag=True,
              help="Do not flush new blobs to disk before linking them (as huggingface_hub does): faster, "
              "but a power cut may leave a corrupt blob that only `hubpin verify` finds.")
def sync_cmd(cache_dir: Path | None, endpoint: str | None, jobs: int, bundle: Path | None, trust: Path | None,
             lock_path: Path | None, no_fsync: bool) -> None:
    """Fetch exactly the locked files into the HF cache, verified.

    Missing blobs are downloaded in parallel, hashed while written and published only when
    size and sha256 match; an interrupted run continues where it stopped. Snapshot links,
    trees/<commit>.json and refs/<declared revision> = the locked commit are written last
    (a ref pointing elsewhere is moved to the locked commit and reported). With everything
    present it makes no network request. Then `from_pretrained("org/name")` with
    HF_HUB_OFFLINE=1 loads the locked commit.
    """
    lock, where = _lock(lock_path)
    if bundle is not None:
        from ..bundle import sync_from_bundle

        result = sync_from_bundle(lock, bundle, cache_dir, trust=trust)
        click.echo(f"synced {len(lock.repos)} repos from {bundle}: {result.blobs} blobs, {result.bytes} bytes "
                   f"into {result.target}, all verified")
        return
    if trust is not None:
        raise BadInput("--trust only applies with --from BUNDLE")
    from ..sync import sync

    report = sync(lock, cache_dir=cache_dir, endpoint=endpoint, jobs=jobs, start=where.parent, fsync=not no_fsync)
    for r in report.refs_moved:
        if r.old is not None:
            click.echo(f"warning: {r.repo}: refs/{r.name} pointed to {r.old.strip()[:40]!s}; moved to the locked "
                       f"commit {r.new}", err=True)
    for d in report.drift:
        click.echo(f"warning: {d.repo}: revision {d.revision} now points to {d.remote} on the endpoint; "
                   f"synced the locked {d.locked} (`hubpin outdated`, `hubpin lock --upgrade` to move)", err=True)
    click.echo(report.summary())


@main.command("verify")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help=_CACHE_HELP)
@click.option("--jobs", "-j", default=None, type=click.IntRange(1, 256), help="Hashing threads. Default: all cores.")
@click.option("--lock", "lock_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help=_LOCK_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(cache_dir: Path | None, jobs: int | None, lock_path: Path | None, as_json: bool) -> None:
    """Offline: check that every locked file is in the cache, inside blobs/, with the right
    size and sha256, and that refs/<revision> holds the locked commit. Exit 1 on any problem,
    one line per problem."""
    from ..verify import verify

    lock, _where = _lock(lock_path)
    report = verify(lock, cache_dir=cache_dir, jobs=jobs)
    if as_json:
        emit_json(report.to_json())
    elif report.ok:
        click.echo(f"ok: {report.files} files of {report.repos} repos ({report.bytes} bytes) in {report.cache_dir} "
                   "match the lock")
    else:
        for p in report.problems:
            click.echo(f"error: {p.line()}", err=True)
        click.echo("hint: run `hubpin sync` to repair (it re-fetches bad or missing files and resets refs)", err=True)
    if not report.ok:
        sys.exit(1)


@main.command("gc")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help=_CACHE_HELP)
@click.option("--keep-locked/--no-keep-locked", default=True, show_default=True,
              help="Treat every commit the locks pin as referenced (else only refs/ count).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--lock", "lock_paths", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="A lock whose pins to keep (repeatable). Default: the project's hubpin.lock, if any.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def gc_cmd(cache_dir: Path | None, keep_locked: bool, dry_run: bool, lock_paths: tuple[Path, ...],
           as_json: bool) -> None:
    """Remove snapshots no ref or lock references, blobs nothing links to, and stale partial
    downloads; print the bytes freed."""
    from ..errors import ConfigError
    from ..gc import gc

    locks: list[Lockfile] = [read_lock(p) for p in lock_paths]
    if not locks and keep_locked:
        try:
            locks = [_lock(None)[0]]
        except ConfigError:
            locks = []
    report = gc(locks, cache_dir=cache_dir, keep_locked=keep_locked, dry_run=dry_run)
    if as_json:
        emit_json(report.to_json())
        return
    if dry_run:
        for r in report.removed:
            click.echo(f"would remove {r.kind} {r.path} ({r.bytes} bytes)")
    click.echo(report.summary())
