from __future__ import annotations

from pathlib import Path

import click

from ..objects import RepoKey
from ..publish import publish
from ._app import emit_json, get_store, main, parse_repo, store_option


@main.command("publish")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("repo_id")
@click.option("--dataset", is_flag=True, help="Publish as a dataset repo.")
@click.option("--revision", default="main", show_default=True, help="Branch or tag to point at the commit.")
@click.option("--message", "-m", default=None, help="Commit message.")
@store_option
@click.option("--to", "to_url", metavar="URL", default=None,
              help="Publish to a running hubpin mirror over HTTP instead of a store (needs HF_TOKEN with write scope).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--allow-pickle", is_flag=True,
              help="Allow pickle files (each must pass picklescan --strict and hubpin's opcode check).")
@click.option("--allow-remote-code", is_flag=True, help="Allow *.py files and auto_map entries.")
def publish_cmd(
    folder: Path, repo_id: str, dataset: bool, revision: str, message: str | None, store_spec: str | None,
    to_url: str | None, as_json: bool, allow_pickle: bool, allow_remote_code: bool,
) -> None:
    """Add FOLDER as a new commit of REPO_ID in a store and move refs/REVISION to it.

    The commit id is deterministic: the same content on the same parent gives the same id,
    and publishing an unchanged folder creates no commit.

    Pickle files (found by content) and remote code are refused unless allowed, by the flags or
    by a hubpin.toml found in the current folder (exit 1, nothing written).
    """
    # supply-chain policy (hubpin.policy): the project's, else the default; flags opt in
    from ..policy import Policy, enforce_files, find_project_quiet, policy_for

    repo = parse_repo(repo_id, dataset)
    base = policy_for(find_project_quiet(), repo)
    policy = Policy(base.allow_pickle or allow_pickle, base.allow_remote_code or allow_remote_code, None)
    if to_url is not None:
        if Path(folder).is_dir():
            from ..publish import collect_files

            enforce_files(repo, collect_files(Path(folder)), policy, licenses=False)
        _publish_to(folder, repo, to_url, revision, message, as_json)
        return
    store = get_store(store_spec)
    result = publish(folder, repo, store, revision=revision, message=message, policy=policy)
    c = result.commit
    if as_json:
        emit_json({"repo": repo_id, "type": result.repo.type, "revision": revision, "commit": c.sha,
                   "parent": c.parent, "created": result.created, "files": len(c.files), "bytes": c.total_size,
                   "new_blobs": result.new_blobs, "store": store.location})
        return
    state = "new commit" if result.created else "unchanged"
    click.echo(f"{result.repo}@{revision} = {c.sha} ({state}; {len(c.files)} files, {c.total_size} bytes, "
               f"{result.new_blobs} new blobs) in {store.location}")


def _publish_to(folder: Path, repo: RepoKey, url: str, revision: str, message: str | None, as_json: bool) -> None:
    from .._remote_publish import publish_http

    r = publish_http(folder, repo, url, revision=revision, message=message)
    if as_json:
        emit_json({"repo": repo.id, "type": repo.type, "revision": revision, "commit": r.commit, "parent": r.parent,
                   "created": r.created, "files": r.files, "bytes": r.bytes, "uploaded_blobs": r.uploaded, "to": url})
        return
    state = "new commit" if r.created else "unchanged"
    click.echo(f"{repo}@{revision} = {r.commit} ({state}; {r.files} files, {r.bytes} bytes, "
               f"{r.uploaded} blobs uploaded) on {url}")
