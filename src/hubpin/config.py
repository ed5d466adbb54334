"""The project's declaration: `hubpin.toml`, or `[tool.hubpin]` in `pyproject.toml`.

    [settings]
    endpoint = "https://hub.internal"     # optional; --endpoint beats it, it beats HF_ENDPOINT
    allow-pickle = false                  # policy keys are kept as written (see `Project.setting`)

    [models."org/name"]
    revision = "main"                     # branch, tag or commit sha (default "main")
    include = ["*.json", "*.safetensors"] # globs, as huggingface_hub's allow_patterns
    exclude = ["*.bin"]
    allow-pickle = true                   # a per-repo override of a [settings] policy key

    [datasets."org/eval-set"]
    revision = "v1.0"

`find_project()` looks for the file from a folder upwards (like uv and pip-tools do): in each
folder `hubpin.toml` first, then a `pyproject.toml` that has a `[tool.hubpin]` table. The lock
lives beside it as `hubpin.lock`. Every repo id and revision passes `hubpin.paths`; anything
malformed is one `ConfigError` naming the file and the key.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tomli_w

from . import _env
from ._fsutil import atomic_write_bytes
from ._tomledit import replace_table
from .errors import ConfigError, UnsafePathError
from .lockfile import LOCK_NAME, Lockfile, read_lock
from .objects import RepoKey
from .paths import validate_revision

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_ENDPOINT",
    "PYPROJECT_NAME",
    "Project",
    "RepoDecl",
    "add_repo",
    "find_project",
    "init_project",
    "load_project",
    "matches_patterns",
    "remove_repo",
    "resolve_endpoint",
]

CONFIG_NAME = "hubpin.toml"
PYPROJECT_NAME = "pyproject.toml"
DEFAULT_ENDPOINT = _env.DEFAULT_ENDPOINT

_SECTIONS = {"models": "model", "datasets": "dataset"}
_REPO_KEYS = ("revision", "include", "exclude")
_TOP_KEYS = ("settings", *_SECTIONS)
_POLICY_BOOLS = ("allow-pickle",)  # typed here because DESIGN.md documents them; others pass through


def matches_patterns(path: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    """huggingface_hub's `filter_repo_objects` rule: fnmatch, and `dir/` means `dir/*`."""

    def norm(p: str) -> str:
        return p + "*" if p.endswith("/") else p

    if include and not any(fnmatch.fnmatch(path, norm(p)) for p in include):
        return False
    return not any(fnmatch.fnmatch(path, norm(p)) for p in exclude)


@dataclass(frozen=True)
class RepoDecl:
    """One declared repo: what to pin (revision) and which files (include/exclude globs)."""

    repo: RepoKey
    revision: str = "main"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: the other keys of the repo's table as written (per-repo policy overrides)
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def filtered(self) -> bool:
        return bool(self.include or self.exclude)

    def wants(self, path: str) -> bool:
        """True if `path` passes this repo's include/exclude globs."""
        return matches_patterns(path, self.include, self.exclude)

    def to_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {"revision": self.revision}
        if self.include:
            table["include"] = list(self.include)
        if self.exclude:
            table["exclude"] = list(self.exclude)
        table.update(self.settings)
        return table


@dataclass(frozen=True)
class Project:
    """A found configuration: where it is, its settings, its repos, and where its lock is."""

    config_path: Path
    settings: Mapping[str, Any]
    repos: tuple[RepoDecl, ...]

    @property
    def root(self) -> Path:
        return self.config_path.parent

    @property
    def lock_path(self) -> Path:
        return self.config_path.parent / LOCK_NAME

    @property
    def in_pyproject(self) -> bool:
        return self.config_path.name == PYPROJECT_NAME

    @property
    def endpoint(self) -> str | None:
        """`[settings] endpoint`, if set."""
        value = self.settings.get("endpoint")
        return value.rstrip("/") if isinstance(value, str) else None

    def get(self, repo: RepoKey) -> RepoDecl | None:
        return next((d for d in self.repos if d.repo == repo), None)

    def find(self, repo_id: str) -> list[RepoDecl]:
        """Declarations with this id (a model and a dataset may share one)."""
        return [d for d in self.repos if d.repo.id == repo_id]

    def setting(self, key: str, repo: RepoKey | None = None, default: Any = None) -> Any:
        """A policy setting: the repo's own override first, then `[settings]`, then `default`."""
        decl = self.get(repo) if repo is not None else None
        if decl is not None and key in decl.settings:
            return decl.settings[key]
        return self.settings.get(key, default)

    def read_lock(self) -> Lockfile:
        """The project's lock; an empty one if `hubpin.lock` does not exist yet."""
        if not self.lock_path.exists():
            return Lockfile()
        return read_lock(self.lock_path)

    def with_repo(self, decl: RepoDecl) -> Project:
        others = tuple(d for d in self.repos if d.repo != decl.repo)
        return replace(self, repos=_sorted(others + (decl,)))

    def without(self, repo: RepoKey) -> Project:
        return replace(self, repos=tuple(d for d in self.repos if d.repo != repo))


def _sorted(decls: tuple[RepoDecl, ...]) -> tuple[RepoDecl, ...]:
    return tuple(sorted(decls, key=lambda d: (d.repo.type, d.repo.id)))


# -- reading -------------------------------------------------------------------------------


def _globs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of glob strings, got {value!r}")
    return tuple(value)


def _check_policy_types(table: Mapping[str, Any], where: str) -> None:
    for key in _POLICY_BOOLS:
        if key in table and not isinstance(table[key], bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {table[key]!r}")


def _parse_settings(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    endpoint = raw.get("endpoint")
    if endpoint is not None and (
        not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")) or "@" in endpoint
    ):
        raise ConfigError(f"{where}.endpoint: expected an http(s):// URL without credentials, got {endpoint!r}")
    _check_policy_types(raw, where)
    return MappingProxyType(dict(raw))


def _parse_repo(repo_type: str, repo_id: Any, raw: Any, where: str) -> RepoDecl:
    try:
        repo = RepoKey(repo_type, repo_id)  # type: ignore[arg-type]
    except UnsafePathError as e:
        raise ConfigError(f"{where}: {e.message}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    revision = raw.get("revision", "main")
    try:
        validate_revision(revision)
    except UnsafePathError as e:
        raise ConfigError(f"{where}.revision: {e.message}") from e
    include = _globs(raw.get("include", []), f"{where}.include")
    exclude = _globs(raw.get("exclude", []), f"{where}.exclude")
    _check_policy_types(raw, where)
    extra = {k: v for k, v in raw.items() if k not in _REPO_KEYS}
    return RepoDecl(repo, revision, include, exclude, MappingProxyType(extra))


def parse_config(doc: Mapping[str, Any], source: str) -> tuple[Mapping[str, Any], tuple[RepoDecl, ...]]:
    """Validate a parsed config table; return (settings, repos). `source` prefixes messages."""
    unknown = sorted(set(doc) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown table {unknown[0]!r}: expected one of {', '.join(_TOP_KEYS)}",
            hint='declare repos as [models."org/name"] or [datasets."org/name"]',
        )
    settings = _parse_settings(doc.get("settings", {}), f"{source}: settings")
    repos: list[RepoDecl] = []
    for section, repo_type in _SECTIONS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section}: expected a table of repos, got {table!r}")
        for repo_id, raw in table.items():
            repos.append(_parse_repo(repo_type, repo_id, raw, f'{source}: {section}."{repo_id}"'))
    return settings, _sorted(tuple(repos))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", hint="run `hubpin init` to create hubpin.toml") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e


def load_project(path: str | os.PathLike[str]) -> Project:
    """Read one config file: a hubpin.toml, or a pyproject.toml with `[tool.hubpin]`."""
    p = Path(path).absolute()
    doc = _read_toml(p)
    if p.name == PYPROJECT_NAME:
        tool = doc.get("tool", {})
        table = tool.get("hubpin") if isinstance(tool, dict) else None
        if table is None:
            raise ConfigError(f"{p}: no [tool.hubpin] table", hint="run `hubpin init` to create hubpin.toml")
        if not isinstance(table, dict):
            raise ConfigError(f"{p}: tool.hubpin: expected a table")
        settings, repos = parse_config(table, f"{p} [tool.hubpin]")
    else:
        settings, repos = parse_config(doc, str(p))
    return Project(p, settings, repos)


def _has_tool_hubpin(pyproject: Path) -> bool:
    try:
        doc = tomllib.loads(pyproject.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # not ours to judge; keep looking upwards
    tool = doc.get("tool")
    return isinstance(tool, dict) and "hubpin" in tool


def find_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file for `start` (default: the cwd), searching parent folders; None if none."""
    folder = Path(start if start is not None else Path.cwd()).absolute()
    if folder.is_file():
        folder = folder.parent
    for d in (folder, *folder.parents):
        if (d / CONFIG_NAME).is_file():
            return d / CONFIG_NAME
        if (d / PYPROJECT_NAME).is_file() and _has_tool_hubpin(d / PYPROJECT_NAME):
            return d / PYPROJECT_NAME
    return None


def find_project(start: str | os.PathLike[str] | None = None, *, config: str | os.PathLike[str] | None = None) -> Project:
    """The project the CLI would use: `config` if given, else the first config found from
    `start` (default: the cwd) upwards. Raises ConfigError when there is none."""
    if config is not None:
        return load_project(config)
    found = find_config(start)
    if found is None:
        where = Path(start if start is not None else Path.cwd()).absolute()
        raise ConfigError(
            f"no {CONFIG_NAME} (or [tool.hubpin] in {PYPROJECT_NAME}) in {where} or any parent folder",
            hint="run `hubpin init` here, or pass --config PATH",
        )
    return load_project(found)


def resolve_endpoint(endpoint: str | None = None, project: Project | None = None) -> str:
    """`--endpoint`, then `HF_ENDPOINT`, then `[settings] endpoint`, then https://huggingface.co.

    The environment overrides the project file (DESIGN.md): one checked-in `hubpin.toml` can name
    the Hub while CI or a data centre points `HF_ENDPOINT` at its own mirror.
    """
    for value in (endpoint, _env.default_endpoint(), project.endpoint if project else None):
        if value:
            if not value.startswith(("http://", "https://")):
                raise ConfigError(f"endpoint {value!r}: expected an http:// or https:// URL")
            if "@" in value.split("/")[2]:
                # it would end up in messages and logs; tokens travel in HF_TOKEN instead
                raise ConfigError("endpoint: credentials in the URL are not allowed", hint="set HF_TOKEN instead")
            return value.rstrip("/")
    return DEFAULT_ENDPOINT


# -- writing -------------------------------------------------------------------------------

_INIT_TEMPLATE = """\
# hubpin: the Hugging Face Hub repos this project uses.
# `hubpin add org/name` declares a repo and locks it into hubpin.lock (commit this file too).

[settings]
{endpoint}allow-pickle = false

# [models."org/name"]
# revision = "main"                      # branch, tag or commit sha
# include = ["*.json", "*.safetensors"]  # optional globs
"""


def init_project(folder: str | os.PathLike[str] | None = None, *, endpoint: str | None = None) -> Path:
    """Write a new `hubpin.toml` in `folder` (default: the cwd); refuse to overwrite one."""
    d = Path(folder if folder is not None else Path.cwd()).absolute()
    path = d / CONFIG_NAME
    if path.exists():
        raise ConfigError(f"{path}: already exists", hint="edit it, or use `hubpin add`")
    if (d / PYPROJECT_NAME).is_file() and _has_tool_hubpin(d / PYPROJECT_NAME):
        raise ConfigError(f"{d / PYPROJECT_NAME}: already has a [tool.hubpin] table", hint="use `hubpin add`")
    line = ""
    if endpoint:
        _parse_settings({"endpoint": endpoint}, "--endpoint")
        line = f"endpoint = {_toml_str(endpoint.rstrip('/'))}\n"
    text = _INIT_TEMPLATE.format(endpoint=line)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode(), fsync=False)
    return path


def _toml_str(value: str) -> str:
    return tomli_w.dumps({"x": value})[4:].strip()


def _section_of(repo: RepoKey) -> str:
    return next(s for s, t in _SECTIONS.items() if t == repo.type)


def _render_full(project: Project) -> str:
    """hubpin.toml rewritten deterministically (used only when an in-place edit is impossible)."""
    doc: dict[str, Any] = {}
    if project.settings:
        doc["settings"] = dict(project.settings)
    for decl in project.repos:
        doc.setdefault(_section_of(decl.repo), {})[decl.repo.id] = decl.to_table()
    return tomli_w.dumps(doc)


def write_project(old: Project, new: Project) -> None:
    """Save `new`'s repo declarations into `old`'s file, touching only the tables that changed."""
    path = old.config_path
    text = path.read_text("utf-8")
    base: tuple[str, ...] = ("tool", "hubpin") if old.in_pyproject else ()
    changed = {d.repo for d in old.repos} ^ {d.repo for d in new.repos}
    changed |= {d.repo for d in new.repos if old.get(d.repo) != d}
    result: str | None = text
    for repo in sorted(changed):
        decl = new.get(repo)
        if result is None:
            break
        section = (*base, _section_of(repo))
        near = (section, base) if base else (section,)
        result = replace_table(result, (*section, repo.id), decl.to_table() if decl else None, near=near,
                               keep=base or None)
    if result is None:
        if old.in_pyproject:
            raise ConfigError(
                f"{path}: cannot edit [tool.hubpin] safely (it is not written as plain [tool.hubpin.*] tables)",
                hint="edit the file by hand",
            )
        result = _render_full(new)  # hubpin.toml is ours to rewrite; deterministic
    if result != text:
        atomic_write_bytes(path, result.encode(), fsync=False)


def add_repo(project: Project, decl: RepoDecl) -> Project:
    """Declare (or re-declare) a repo in the project's file; return the updated project."""
    new = project.with_repo(decl)
    write_project(project, new)
    return new


def remove_repo(project: Project, repo: RepoKey) -> Project:
    """Undeclare a repo in the project's file; return the updated project."""
    if project.get(repo) is None:
        raise ConfigError(f"{project.config_path}: {repo} is not declared",
                          hint="see the declared repos with `hubpin outdated` or in the file")
    new = project.without(repo)
    write_project(project, new)
    return new
