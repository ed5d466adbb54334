"""`hubpin serve`: run the Hub-compatible mirror over a store."""

from __future__ import annotations

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
    help="HTTP server: granian sends files zero-copy (sendfile); uvicorn is pure Python.",
)
@click.option("--public", multiple=True, metavar="GLOB", help="Repo globs anonymous callers may read (once tokens exist).")
@click.option("--redirect", is_flag=True,
              help="S3 stores: answer downloads with a 302 to a presigned URL, so bytes flow from S3 directly.")
@click.option("--redirect-expires", default=3600, show_default=True, type=click.IntRange(60, 7 * 24 * 3600),
              metavar="SECONDS", help="Lifetime of the presigned URLs of --redirect.")
def serve(
    store_spec: str | None, host: str, port: int, server: str, public: tuple[str, ...], redirect: bool,
    redirect_expires: int,
) -> None:
    """Serve a store (or any HF cache folder) as a Hugging Face Hub mirror.

    Clients use it with HF_ENDPOINT=http://HOST:PORT. Stops cleanly on Ctrl-C / SIGTERM.
    """
    from .._env import default_cache_dir
    from ..server._launch import run_server

    spec = store_spec or str(default_cache_dir())

    def ready(url: str) -> None:
        click.echo(f"hubpin mirror of {spec} on {url}  (HF_ENDPOINT={url}; Ctrl-C to stop)", err=True)

    run_server(spec, host=host, port=port, server=server, public=public, on_ready=ready,  # type: ignore[arg-type]
               redirect_expires=redirect_expires if redirect else None)
