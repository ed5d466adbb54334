"""`hubpin serve`: run the Hub-compatible mirror over a store."""

from __future__ import annotations

from pathlib import Path

import click

from ._app import main, store_option


@main.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--server",
    "server",
    type=click.Choice(["granian", "uvicorn"]),
    default="granian",
    show_default=True,
    help="HTTP server: granian streams files from its Rust core (no file byte passes through Python); uvicorn is pure Python.",
)
@click.option("--public", multiple=True, metavar="GLOB", help="Repo globs anonymous callers may read; once any is given (or a token exists), other repos need a token.")
@click.option("--redirect", is_flag=True,
              help="S3 stores: answer downloads with a 302 to a presigned URL, so bytes flow from S3 directly.")
@click.option("--redirect-expires", default=3600, show_default=True, type=click.IntRange(60, 7 * 24 * 3600),
              metavar="SECONDS", help="Lifetime of the presigned URLs of --redirect.")
@click.option("--upstream", metavar="URL", help="Pull-through: fetch misses of --allow'ed repos from this Hub "
              "(https://huggingface.co or another hubpin), verify them, keep them in the store.")
@click.option("--upstream-token-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="File holding the token sent to --upstream (and only to it).")
@click.option("--allow", multiple=True, metavar="GLOB", help="Repos --upstream may fetch ('org/*', 'datasets/org/*', '*').")
@click.option("--deny", multiple=True, metavar="GLOB", help="Repos hidden entirely, stored or not.")
@click.option("--lock", "lock_file", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Serve only the commits pinned in this hubpin.lock (anything else: not found).")
@click.option("--per-ip-limit", "per_ip", type=click.IntRange(0), default=64, show_default=True, metavar="N",
              help="Connections and requests in flight per client address; 0 = no cap (behind a proxy, cap there).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Enforce this hubpin.toml's policy per file: pickle (by content) or *.py it refuses get 403.")
def serve(
    store_spec: str | None, host: str, port: int, server: str, public: tuple[str, ...], redirect: bool,
    redirect_expires: int, upstream: str | None, upstream_token_file: str | None, allow: tuple[str, ...],
    deny: tuple[str, ...], lock_file: str | None, per_ip: int, policy_file: str | None,
) -> None:
    """Serve a store (or any HF cache folder) as a Hugging Face Hub mirror.

    Clients use it with HF_ENDPOINT=http://HOST:PORT. Stops cleanly on Ctrl-C / SIGTERM.
    """
    from .._env import default_cache_dir
    from ..server._launch import run_server

    spec = store_spec or str(default_cache_dir())
    ops: dict[str, object] = {"allow": list(allow), "deny": list(deny), "per_ip": per_ip}
    if upstream:
        ops["upstream"] = upstream
    if upstream_token_file:
        ops["upstream_token_file"] = str(Path(upstream_token_file).absolute())
    if lock_file:
        ops["lock"] = str(Path(lock_file).absolute())
    if policy_file:  # supply-chain policy (hubpin._policy_serve)
        ops["policy"] = str(Path(policy_file).absolute())

    def ready(url: str) -> None:
        click.echo(f"hubpin mirror of {spec} on {url}  (HF_ENDPOINT={url}; Ctrl-C to stop)", err=True)

    run_server(spec, host=host, port=port, server=server, public=public, on_ready=ready,  # type: ignore[arg-type]
               redirect_expires=redirect_expires if redirect else None, ops=ops)
