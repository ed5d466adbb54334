"""`hubpin init`, `add`, `remove`, `lock`, `outdated`: thin commands over hubpin.config / hubpin.lock."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import RepoDecl, add_repo, find_project, init_project, remove_repo, resolve_endpoint
from ..errors import ConfigError, DriftError, UnsafePathError
from ..hub import HubClient
from ..lock import describe_changes, lock_project, outdated, stale_reasons, unlock
from ..lockfile import write_lock
from ..objects import RepoKey
from ..paths import validate_revision
from ._app import emit_json, main, parse_repo

F = TypeVar("F", bound=Callable[..., Any])


def _config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="hubpin.toml or pyproject.toml to use. Default: searched from the current folder upwards.",
    )(f)


def _endpoint_option(f: F) -> F:
    return click.option(
        "--endpoint",
        default=None,
        metavar="URL",
        help="Hub-compatible endpoint. Default: $HF_ENDPOINT, then [settings] endpoint, then https://huggingface.co.",
    )(f)


def _repo_key(spec: str, dataset: bool) -> RepoKey:
    try:
        return parse_repo(spec, dataset)
    except UnsafePathError as e:
        raise ConfigError(e.message, hint="expected org/name (add --dataset for a dataset repo)") from None


def _client(endpoint: str | None, project: Any) -> HubClient:
    return HubClient(resolve_endpoint(endpoint, project))


def _progress() -> Callable[[str], None] | None:
    """Progress lines on stderr, only for a person watching (a TTY)."""
    return (lambda line: click.echo(line, err=True)) if sys.stderr.isatty() else None


def _report(lines: list[str], lock_path: Path, written: bool) -> None:
    for line in lines:
        click.echo(line)
    if not written:
        click.echo(f"{lock_path.name}: up to date")
    elif not lines:
        click.echo(f"wrote {lock_path}")


@main.command("init")
@_endpoint_option
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder to create hubpin.toml in. Default: the current folder.")
def init_cmd(endpoint: str | None, folder: Path | None) -> None:
    """Write a new hubpin.toml (refuses to overwrite one)."""
    path = init_project(folder, endpoint=endpoint)
    click.echo(f"wrote {path}; declare repos with `hubpin add org/name`")


@main.command("add")
@click.argument("spec", metavar="REPO[@REV]")
@click.option("--dataset", is_flag=True, help="REPO is a dataset repo.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only lock files matching GLOB (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching GLOB (repeatable).")
@_config_option
@_endpoint_option
def add_cmd(spec: str, dataset: bool, include: tuple[str, ...], exclude: tuple[str, ...],
            config_path: Path | None, endpoint: str | None) -> None:
    """Declare REPO (at REV, default main) in the config and lock it.

    Nothing is written unless the repo resolves, every file hashes correctly and the
    project's policy (pickle, remote code, licenses) allows it.
    """
    repo_id, _, revision = spec.partition("@")
    repo = _repo_key(repo_id, dataset)
    try:
        validate_revision(revision or "main")
    except UnsafePathError as e:
        raise ConfigError(f"{spec}: {e.message}") from None
    project = find_project(config=config_path)
    old = project.get(repo)
    if old is None:
        decl = RepoDecl(repo, revision or "main", tuple(include), tuple(exclude))
    else:  # declared already: change only what was given; per-repo policy overrides stay
        decl = RepoDecl(repo, revision or old.revision, tuple(include) or old.include,
                        tuple(exclude) or old.exclude, old.settings)
    new_project = project.with_repo(decl)
    previous = project.read_lock()
    with _client(endpoint, project) as client:
        lock = lock_project(new_project, client, previous=previous, progress=_progress())
    add_repo(project, decl)  # only after the lock succeeded
    written = write_lock(lock, project.lock_path)
    if old is None:
        click.echo(f"added {repo}@{decl.revision} to {project.config_path.name}")
    elif old != decl:
        click.echo(f"updated {repo} in {project.config_path.name}")
    _report(describe_changes(previous, lock), project.lock_path, written)


@main.command("remove")
@click.argument("repo_id", metavar="REPO")
@click.option("--dataset", is_flag=True, help="REPO is a dataset repo.")
@_config_option
def remove_cmd(repo_id: str, dataset: bool, config_path: Path | None) -> None:
    """Undeclare REPO and drop it from hubpin.lock (no network)."""
    repo = _repo_key(repo_id, dataset)
    project = find_project(config=config_path)
    previous = project.read_lock()
    remove_repo(project, repo)
    lock = unlock(previous, repo)
    written = write_lock(lock, project.lock_path) if project.lock_path.exists() else False
    click.echo(f"removed {repo} from {project.config_path.name}" + (f" and {project.lock_path.name}" if written else ""))


@main.command("lock")
@click.option("--upgrade", "upgrade", is_flag=False, flag_value="*", default=None, multiple=True, metavar="[REPO]",
              help="Re-resolve revisions: all repos, or only REPO (repeatable). Without it, existing pins are kept.")
@click.option("--check", is_flag=True, help="Exit 1 if hubpin.lock is stale against the config; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --check: print {lock, stale, reasons} as JSON.")
@_config_option
@_endpoint_option
def lock_cmd(upgrade: tuple[str, ...], check: bool, as_json: bool, config_path: Path | None,
             endpoint: str | None) -> None:
    """Resolve every declared repo to a commit and hash every file into hubpin.lock.

    Existing pins are kept unless --upgrade is given (for all repos, or the named ones).
    """
    project = find_project(config=config_path)
    with _client(endpoint, project) as client:
        if check:
            if upgrade:
                raise ConfigError("--check and --upgrade cannot be combined")
            reasons = stale_reasons(project, client)
            if as_json:
                emit_json({"lock": str(project.lock_path), "stale": bool(reasons), "reasons": reasons})
            if reasons:
                raise DriftError(f"{project.lock_path} is stale: " + "; ".join(reasons), hint="run `hubpin lock`")
            if not as_json:
                click.echo(f"{project.lock_path.name}: up to date")
            return
        if as_json:
            raise ConfigError("--json goes with --check (lock itself prints what changed)")
        names = set(upgrade)
        selected: bool | set[str] = True if "*" in names else (names or False)
        previous = project.read_lock()
        lock = lock_project(project, client, upgrade=selected, previous=previous, progress=_progress())
    written = write_lock(lock, project.lock_path)
    _report(describe_changes(previous, lock), project.lock_path, written)


@main.command("outdated")
@click.option("--check", is_flag=True, help="Exit 1 if any declared revision now points elsewhere.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_config_option
@_endpoint_option
def outdated_cmd(check: bool, as_json: bool, config_path: Path | None, endpoint: str | None) -> None:
    """Show declared repos whose revision now resolves to a different commit than the lock's."""
    project = find_project(config=config_path)
    with _client(endpoint, project) as client:
        items = outdated(project, client)
    if as_json:
        emit_json([{"repo": o.repo.id, "type": o.repo.type, "revision": o.revision, "locked": o.locked,
                    "remote": o.remote} for o in items])
    else:
        for o in items:
            click.echo(f"{o.repo}@{o.revision}: locked {o.locked[:12] if o.locked else '(not locked)'}, "
                       f"now {o.remote[:12]}")
        if not items:
            click.echo("all repos are at their locked commits")
    if check and items:
        raise DriftError(f"{len(items)} repo(s) moved since {project.lock_path.name} was written: "
                         + ", ".join(str(o.repo) for o in items), hint="run `hubpin lock --upgrade` to move the pins")
