"""`hubpin scan`, `licenses`, `doctor`: thin commands over hubpin.scan / licenses / doctor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import _env
from ..config import Project, find_project
from ..doctor import diagnose
from ..errors import CheckFailed, ConfigError, LockfileError, NotFoundError, NotSyncedError, PolicyError
from ..licenses import is_license_file, license_allowed, license_info
from ..lockfile import Lockfile
from ..policy import Policy, enforce_report, policy_for
from ..scan import ScanReport, scan_folder, scan_locked_repo
from ._app import emit_json, main

_config = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="hubpin.toml or pyproject.toml to use. Default: searched from the current folder upwards.",
)
_cache = click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="HF cache to read. Default: $HF_HUB_CACHE, else $HF_HOME/hub.",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


def _project(config_path: Path | None, *, required: bool) -> Project | None:
    try:
        return find_project(config=config_path)
    except ConfigError:
        if required or config_path is not None:
            raise
        return None


def _lock(project: Project) -> Lockfile:
    if not project.lock_path.exists():
        raise LockfileError(f"{project.lock_path}: no lockfile", hint="run `hubpin lock` first")
    return project.read_lock()


def _print_report(report: ScanReport) -> None:
    if not report.findings:
        click.echo(f"{report.target}: {report.scanned} file(s), nothing to report")
    for f in report.findings:
        mark = "REFUSED" if f.violation else "ok"
        click.echo(f"{mark:8} {f.kind:20} {f.path}: {f.reason}")


@main.command("scan")
@click.argument("path", required=False, type=click.Path(path_type=Path, exists=True))
@click.option("--repo", "repo_id", default=None, metavar="REPO", help="Scan a locked repo as synced in the cache.")
@click.option("--allow-pickle", is_flag=True, default=None, help="Allow pickle files that pass the strict scan.")
@_config
@_cache
@_json
def scan_cmd(path: Path | None, repo_id: str | None, allow_pickle: bool | None, config_path: Path | None,
             cache_dir: Path | None, as_json: bool) -> None:
    """Scan PATH (a folder or file) or a locked --repo: pickle by content, remote code, licenses.

    The policy is the project's (hubpin.toml [settings] and the repo's table) when one is found,
    else the default: no pickle, no remote code. Exit 1 if anything violates it.
    """
    if (path is None) == (repo_id is None):
        raise click.UsageError("give exactly one of PATH or --repo REPO")
    if path is not None:
        project = _project(config_path, required=False)
        policy = policy_for(project)
        if allow_pickle:
            policy = Policy(True, policy.allow_remote_code, policy.licenses)
        report = scan_folder(path, policy)
    else:
        project = _project(config_path, required=True)
        assert project is not None
        entry = project.read_lock().find(repo_id or "")
        if entry is None:
            raise NotFoundError(f"{repo_id} is not in {project.lock_path}", hint="declare it with `hubpin add`")
        policy = policy_for(project, entry.repo)
        if allow_pickle:
            policy = Policy(True, policy.allow_remote_code, policy.licenses)
        report = scan_locked_repo(entry, cache_dir or _env.default_cache_dir(), policy)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)
    enforce_report(report)


@main.command("licenses")
@_config
@_cache
@_json
def licenses_cmd(config_path: Path | None, cache_dir: Path | None, as_json: bool) -> None:
    """Show the license of every locked repo, read offline from the synced cache.

    Exit 1 when a license is not in the `licenses` allow-list of hubpin.toml.
    """
    project = _project(config_path, required=True)
    assert project is not None
    cache = cache_dir or _env.default_cache_dir()
    rows: list[dict[str, Any]] = []
    for entry in _lock(project).repos:
        blobs = cache / entry.repo.folder / "blobs"
        files = [(f.path, blobs / f.etag) for f in entry.files if is_license_file(f.path)]
        present = [(p, b) for p, b in files if b.is_file()]
        info = license_info(present)
        policy = policy_for(project, entry.repo)
        problem = license_allowed(info, policy.licenses) if policy.licenses is not None else None
        rows.append({
            "repo": str(entry.repo), "commit": entry.commit, **info.to_dict(),
            "synced": len(present) == len(files), "allowed": problem is None, "problem": problem,
        })
    if as_json:
        emit_json(rows)
    else:
        _license_table(rows)
    bad = [r for r in rows if not r["allowed"]]
    if bad:
        raise PolicyError(f"license not allowed: {bad[0]['repo']} ({bad[0]['problem']})"
                          + (f"; and {len(bad) - 1} more" if len(bad) > 1 else ""),
                          hint="add the license to `licenses` in [settings] of hubpin.toml, or drop the repo")
    missing = [r for r in rows if not r["synced"]]
    if missing:
        raise NotSyncedError(f"{missing[0]['repo']}: license files not in {cache}",
                             hint="run `hubpin sync` first; licenses are read offline from the cache")


def _license_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("repo", "commit", "license", "source", "allowed")
    for r in rows:
        lic = r["license"] or ", ".join(sorted(set(r["files"].values()))) or "none declared"
        if r["name"]:
            lic += f" ({r['name']})"
        if r["link"]:
            lic += f" {r['link']}"
        allowed = "yes" if r["allowed"] else f"NO: {r['problem']}"
        table.add_row(r["repo"], r["commit"][:12], lic, ", ".join(r["sources"]) or "-",
                      allowed if r["synced"] else allowed + " (not synced)")
    # piped output is for grep and logs: never squeeze or wrap cells (a TTY gets its own width)
    Console(width=None if sys.stdout.isatty() else 1000).print(table)


@main.command("doctor")
@click.argument("repo", required=False)
@_config
@_cache
@_json
def doctor_cmd(repo: str | None, config_path: Path | None, cache_dir: Path | None, as_json: bool) -> None:
    """Explain whether each locked repo (or REPO) will load offline, and how to fix what won't.

    Checks refs, snapshot completeness, HF_* variables, tokenizer/model packages (e.g. fugashi +
    ipadic for MeCab), torch >= 2.6 for pickle weights, and HF_MODULES_CACHE for remote code.
    Exit 1 when something would fail.
    """
    project = _project(config_path, required=True)
    assert project is not None
    report = diagnose(_lock(project), cache_dir=cache_dir, repo=repo)
    if as_json:
        emit_json(report.to_dict())
    else:
        for issue in report.env:
            click.echo(f"{issue.severity}: {issue.problem}\n  fix: {issue.fix}")
        for r in report.repos:
            click.echo(f"{r.repo}@{r.commit[:12]}: {'ready' if r.ready else 'NOT READY'}")
            for issue in r.issues:
                click.echo(f"  {issue.severity}: [{issue.check}] {issue.problem}\n    fix: {issue.fix}")
    if not report.ready:
        bad = [r for r in report.repos if not r.ready]
        first = next((i for r in bad for i in r.issues if i.severity == "error"), None)
        env = next((i for i in report.env if i.severity == "error"), None)
        what = f"{bad[0].repo} will not load offline: {first.problem}" if bad and first else \
            f"environment: {env.problem if env else 'not ready'}"
        more = f" (and {len(bad) - 1} more repo(s))" if len(bad) > 1 else ""
        raise CheckFailed(what + more, hint=(first or env).fix if (first or env) else None)
