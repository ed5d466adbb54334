"""The click group, error handling at the edge, and options shared by commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import HubpinError
from ..objects import RepoKey
from ..store import Store, open_store

__all__ = ["HubpinGroup", "emit_json", "fail", "main", "parse_repo", "store_option"]

F = TypeVar("F", bound=Callable[..., Any])


def fail(error: HubpinError) -> None:
    """Print `error: …` (and `hint: …`) on stderr; exit with the error's code."""
    click.echo(f"error: {error.message}", err=True)
    if error.hint:
        click.echo(f"hint: {error.hint}", err=True)
    sys.exit(error.exit_code)


class HubpinGroup(click.Group):
    """Maps HubpinError to its exit code and click usage errors to 2, with one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HubpinError as e:
            fail(e)
        except KeyboardInterrupt:
            click.echo("error: interrupted; rerun the same command to continue where it stopped", err=True)
            sys.exit(130)


@click.group(cls=HubpinGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hubpin")
def main() -> None:
    """hubpin: pin, verify, bundle and mirror Hugging Face Hub repos.

    Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 remote or network error.
    """


def store_option(f: F) -> F:
    return click.option(
        "--store",
        "store_spec",
        metavar="DIR|s3://BUCKET/PREFIX",
        envvar="HUBPIN_STORE",
        help="Store to use: a folder (an HF cache layout) or s3://bucket/prefix. "
        "Default: $HUBPIN_STORE, else the HF cache ($HF_HUB_CACHE or $HF_HOME/hub).",
    )(f)


def get_store(spec: str | None) -> Store:
    return open_store(spec)


def parse_repo(repo_id: str, dataset: bool) -> RepoKey:
    return RepoKey("dataset" if dataset else "model", repo_id)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
