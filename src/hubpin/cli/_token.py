"""`hubpin token create|list|revoke`: mirror tokens kept hashed in the store."""

from __future__ import annotations

from datetime import timedelta

import click

from ..tokens import create_token, list_tokens, revoke_token
from ._app import emit_json, get_store, main, store_option


@main.group("token")
def token_group() -> None:
    """Manage the mirror's access tokens (kept hashed in the store's .hubpin/tokens.json).

    Clients send a token as HF_TOKEN. Globs match `org/name` for models and
    `datasets/org/name` for datasets; `*` matches everything. Write scope implies read.
    """


@token_group.command("create")
@click.argument("name")
@click.option("--read", "read", multiple=True, metavar="GLOB", help="Repos the token may read (repeatable).")
@click.option("--write", "write", multiple=True, metavar="GLOB", help="Repos the token may publish to (repeatable).")
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True), default=None, metavar="DAYS",
              help="The token stops working after this many days (default: never).")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (includes the secret).")
def create_cmd(
    name: str, read: tuple[str, ...], write: tuple[str, ...], expires_days: float | None, store_spec: str | None,
    as_json: bool,
) -> None:
    """Create token NAME and print its secret once; only a hash is stored."""
    store = get_store(store_spec)
    expires = timedelta(days=expires_days) if expires_days is not None else None
    secret, record = create_token(store, name, read=read, write=write, expires_in=expires)
    if as_json:
        emit_json({**record.public_dict(), "token": secret, "store": store.location})
        return
    click.echo(secret)
    click.echo(
        f"token {name} created in {store.location} (read: {', '.join(record.read) or '-'}; "
        f"write: {', '.join(record.write) or '-'}; expires: {record.expires or 'never'}). "
        "Store the secret now: it is not shown again.",
        err=True,
    )


@token_group.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as JSON.")
def list_cmd(store_spec: str | None, as_json: bool) -> None:
    """List tokens: name, scopes, creation time. Never the secrets."""
    store = get_store(store_spec)
    records = list_tokens(store)
    if as_json:
        emit_json([r.public_dict() for r in records])
        return
    if not records:
        click.echo(f"no tokens in {store.location} (the mirror is open to anonymous readers)")
        return
    for r in records:
        state = " (expired)" if r.expired() else ""
        click.echo(f"{r.name}\tread={','.join(r.read) or '-'}\twrite={','.join(r.write) or '-'}\tcreated={r.created}"
                   f"\texpires={r.expires or 'never'}{state}")


@token_group.command("revoke")
@click.argument("name")
@store_option
def revoke_cmd(name: str, store_spec: str | None) -> None:
    """Revoke token NAME (servers on the store stop accepting it within seconds)."""
    store = get_store(store_spec)
    revoke_token(store, name)
    click.echo(f"token {name} revoked in {store.location}")
