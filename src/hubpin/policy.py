"""The supply-chain policy of a project, and the entry points that enforce it.

    [settings]
    allow-pickle = false          # pickle-family files (found by content) are refused
    allow-remote-code = false     # auto_map / *.py files are refused
    licenses = ["apache-2.0", "mit"]   # optional allow-list of license ids

    [models."org/name"]
    allow-pickle = true           # per-repo override: scanned with picklescan --strict instead

`enforce_files(repo, files, policy)` is what `lock`, `sync`, `import`, `publish` and `serve`
call on a repo's files: it raises one `PolicyError` (exit 1) naming every refused file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, PolicyError
from .lockfile import LockedRepo
from .objects import FileEntry, RepoKey

if TYPE_CHECKING:
    from .config import Project
    from .scan import ScanReport

__all__ = [
    "BYTES_KINDS",
    "POLICY_KEYS",
    "Policy",
    "default_policy_spec",
    "enforce_entries",
    "enforce_files",
    "enforce_locked_bytes",
    "enforce_report",
    "find_project_quiet",
    "lock_hook",
    "policy_for",
    "policy_for_entry",
]

POLICY_KEYS = ("allow-pickle", "allow-remote-code", "licenses")


def _key(table: Mapping[str, Any], name: str) -> Any:
    """`allow-pickle`, also accepted as `allow_pickle`."""
    if name in table:
        return table[name]
    return table.get(name.replace("-", "_"))


@dataclass(frozen=True)
class Policy:
    """The effective policy for one repo. The default refuses pickle and remote code."""

    allow_pickle: bool = False
    allow_remote_code: bool = False
    #: allowed license ids (lower case); None means licenses are reported, not enforced
    licenses: tuple[str, ...] | None = None

    def merged(self, table: Mapping[str, Any], where: str = "settings") -> Policy:
        """This policy with the policy keys of a TOML table applied on top."""
        allow_pickle = self.allow_pickle
        allow_remote = self.allow_remote_code
        licenses = self.licenses
        value = _key(table, "allow-pickle")
        if value is not None:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.allow-pickle: expected true or false, got {value!r}")
            allow_pickle = value
        value = _key(table, "allow-remote-code")
        if value is not None:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.allow-remote-code: expected true or false, got {value!r}")
            allow_remote = value
        value = _key(table, "licenses")
        if value is not None:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError(f"{where}.licenses: expected a list of license ids, got {value!r}",
                                  hint='e.g. licenses = ["apache-2.0", "mit"]')
            licenses = tuple(sorted({v.strip().lower() for v in value}))
        return Policy(allow_pickle, allow_remote, licenses)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], override: Mapping[str, Any] | None = None) -> Policy:
        """From plain dicts: `[settings]`, then a repo's own table on top."""
        policy = cls().merged(settings)
        return policy.merged(override, "repo") if override else policy

    @classmethod
    def from_project(cls, project: Project, repo: RepoKey | None = None) -> Policy:
        """The policy `project` sets for `repo` (its table's keys beat `[settings]`)."""
        where = str(project.config_path)
        policy = cls().merged(project.settings, f"{where}: settings")
        decl = project.get(repo) if repo is not None else None
        if decl is not None:
            policy = policy.merged(decl.settings, f'{where}: {decl.repo.type}s."{decl.repo.id}"')
        return policy

    def to_dict(self) -> dict[str, Any]:
        return {
            "allow-pickle": self.allow_pickle,
            "allow-remote-code": self.allow_remote_code,
            "licenses": list(self.licenses) if self.licenses is not None else None,
        }


def policy_for(project: Project | None, repo: RepoKey | None = None) -> Policy:
    """The effective policy for `repo`; the default policy when there is no project."""
    return Policy.from_project(project, repo) if project is not None else Policy()


def enforce_report(report: ScanReport, kinds: Collection[str] | None = None) -> None:
    """Raise one PolicyError for every violation in `report` (first one leads the message);
    `kinds` limits which finding kinds count (e.g. only "pickle")."""
    bad = [f for f in report.findings if f.violation and (kinds is None or f.kind in kinds)]
    if not bad:
        return
    first = bad[0]
    message = f"{first.message(report.target)}"
    if len(bad) > 1:
        rest = "; ".join(f.message(report.target) for f in bad[1:4])
        more = f"; and {len(bad) - 4} more" if len(bad) > 4 else ""
        message += f" (also: {rest}{more})"
    kinds = {f.kind for f in bad}
    hints = []
    if "pickle" in kinds:
        hints.append("set allow-pickle = true for this repo in hubpin.toml (files are then checked with "
                     "picklescan --strict), or exclude the files")
    if kinds & {"remote-code", "cross-repo-code"}:
        hints.append("set allow-remote-code = true for this repo (its code is then pinned in the lock), "
                     'or exclude = ["*.py"]')
    if "license" in kinds:
        hints.append("add the license to `licenses` in [settings], or drop the repo")
    raise PolicyError(message, hint="; ".join(hints) or f"run `hubpin scan` on {report.target} for details")


def enforce_files(
    repo: RepoKey | str,
    files: Sequence[tuple[str, Path]],
    policy: Policy,
    *,
    licenses: bool = True,
    kinds: Collection[str] | None = None,
) -> ScanReport:
    """Check `files` ((repo path, local path) pairs) of `repo` against `policy`.

    Raises PolicyError naming every refused file; returns the scan report when all is well.
    `licenses=False` skips the license allow-list (for a partial file set that may lack the card);
    `kinds` limits which finding kinds are enforced (None: all).
    """
    from .scan import scan_files

    report = scan_files(files, policy, target=str(repo), check_licenses=licenses)
    enforce_report(report, kinds)
    return report


# -- lock hook -------------------------------------------------------------------------------

#: files up to this size are fetched whole at lock time; larger ones only their first bytes
LOCK_FULL_FETCH = 1024 * 1024


def _fetch_for_policy(
    client: Any, repo: RepoKey, commit: str, files: Sequence[Any], folder: Path, jobs: int = 8
) -> tuple[list[tuple[str, Path]], set[str]]:
    """Fetch `files` (with .path, .size, .sha256) at `commit` into `folder`: small ones whole (and
    checked against the sha256 when known), big ones as a 64 KiB prefix (Range).
    Returns (files, partial paths)."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from ._pickle import PREFIX_BYTES
    from .errors import HashMismatchError

    def one(i_f: tuple[int, Any]) -> tuple[str, Path, bool]:
        i, f = i_f
        local = folder / str(i)
        whole = f.size <= LOCK_FULL_FETCH
        h = hashlib.sha256()
        with open(local, "wb") as out:
            if whole:
                with client.open_file(repo, commit, f.path) as r:
                    for chunk in r.iter_bytes(1 << 16):
                        h.update(chunk)
                        out.write(chunk)
            else:
                url = client.file_url(repo, commit, f.path)
                with client.http.stream("GET", url, headers={"Range": f"bytes=0-{PREFIX_BYTES - 1}"}) as r:
                    r.raise_for_status()
                    got = 0
                    for chunk in r.iter_bytes(1 << 16):
                        out.write(chunk[: PREFIX_BYTES - got])
                        got += len(chunk)
                        if got >= PREFIX_BYTES:
                            break  # a server that ignores Range: stop reading
        sha256 = getattr(f, "sha256", None) or getattr(f, "lfs_sha256", None)
        if whole and sha256 and h.hexdigest() != sha256:
            raise HashMismatchError(f"{repo}@{commit[:12]}: {f.path} sha256", expected=sha256,
                                    actual=h.hexdigest())
        return f.path, local, whole

    with ThreadPoolExecutor(max(1, min(jobs, len(files) or 1))) as pool:
        results = list(pool.map(one, enumerate(files)))
    return [(p, local) for p, local, _ in results], {p for p, _, whole in results if not whole}


def lock_hook(ctx: Any) -> list[Any]:
    """`hubpin.lock.LOCK_HOOKS` entry: check a freshly listed repo against its policy, and lock
    the repos its `auto_map` points into (at revision "main", their `.py` files) when allowed.

    Raises PolicyError (nothing is written) on: a pickle-family file without allow-pickle, remote
    code without allow-remote-code, a license outside the allow-list.
    """
    import tempfile

    from .licenses import is_license_file
    from .scan import scan_files

    policy = Policy.from_project(ctx.project, ctx.decl.repo)
    entry = ctx.entry
    wanted: list[Any] = list(entry.files)
    if policy.licenses is not None and ctx.remote_files:
        # the card and LICENSE files decide the license even when include/exclude leave them out
        locked = {f.path for f in entry.files}
        wanted += [f for f in ctx.remote_files if f.path not in locked and is_license_file(f.path)]
    # regular files that `lock` just downloaded and verified are judged from those copies:
    # fetching them a second time doubled the network cost of a lock
    have: Mapping[str, Path] = getattr(ctx, "downloaded", None) or {}
    reused = [(f.path, have[f.path]) for f in wanted if f.path in have]
    to_fetch = [f for f in wanted if f.path not in have]
    with tempfile.TemporaryDirectory(prefix="hubpin-policy-") as tmp:
        fetched, partial = _fetch_for_policy(ctx.client, entry.repo, entry.commit, to_fetch, Path(tmp),
                                             getattr(ctx, "_jobs", 8))
        report = scan_files(reused + fetched, policy, target=str(ctx.decl.repo), partial=partial)
    enforce_report(report)
    extras = []
    for code_repo in report.code_repos:
        key = RepoKey("model", code_repo)
        if key == ctx.decl.repo:
            continue
        # transformers fetches cross-repo code at `code_revision`, "main" by default; the lock
        # pins that commit, and sync writes refs/main = it, so offline loads get the pinned code
        extras.append(ctx.lock_extra(key, "main", include=("*.py",)))
    return extras


# -- sync / import / serve -------------------------------------------------------------------


def find_project_quiet(start: str | os.PathLike[str] | None = None) -> Project | None:
    """The project found from `start` (default: the cwd) upwards, or None when there is none."""
    from .config import find_project

    try:
        return find_project(start)
    except ConfigError:
        return None


def policy_for_entry(project: Project | None, entry: LockedRepo) -> Policy:
    """The policy for a lock entry: its own declaration's, else (a code repo locked for another
    repo's `auto_map`) the requiring repo's with remote code allowed, else `[settings]`."""
    if project is None:
        return Policy()
    if project.get(entry.repo) is not None or not entry.required_by:
        return Policy.from_project(project, entry.repo)
    # the lock only holds this entry because a requiring repo was allowed remote code
    base = Policy.from_project(project)
    return Policy(base.allow_pickle, True, base.licenses)


#: what sync and import re-check: the bytes. Remote code and licenses were judged by `lock`,
#: and the `.py` files it allowed are pinned by sha256, so they are not judged again here
BYTES_KINDS = ("pickle",)


def enforce_entries(
    entries: Iterable[LockedRepo],
    path_of: Callable[[LockedRepo, FileEntry], Path],
    *,
    project: Project | None = None,
    policy: Policy | None = None,
    kinds: Collection[str] | None = BYTES_KINDS,
) -> None:
    """Check locked repos whose bytes are local (`path_of(entry, file)`), e.g. downloaded blobs
    before sync links them, or a bundle's staged blobs before import installs them.

    `policy` applies to every entry when given; else each entry's policy from `project` (the
    default policy without a project). By default only pickle findings are enforced (`kinds`).
    """
    for entry in entries:
        pol = policy if policy is not None else policy_for_entry(project, entry)
        files = [(f.path, path_of(entry, f)) for f in entry.files]
        enforce_files(entry.repo, files, pol, licenses=entry.complete, kinds=kinds)


def enforce_locked_bytes(
    entries: Iterable[LockedRepo],
    path_of: Callable[[LockedRepo, FileEntry], Path],
    policy: Policy | Project | None = None,
    *,
    start: str | os.PathLike[str] | None = None,
) -> None:
    """The sync/import hook: `policy` as given (a Policy for all, or a Project for per-repo
    policies), else the project found from `start` (default: the cwd), else the default policy."""
    from .config import Project as _Project

    if policy is None:
        policy = find_project_quiet(start)
    if isinstance(policy, _Project):
        enforce_entries(entries, path_of, project=policy)
    else:
        enforce_entries(entries, path_of, policy=policy or Policy())


def default_policy_spec(start: str | os.PathLike[str] | None = None) -> Policy | Project:
    """What `import` and `sync --from` enforce: the project found from `start` (default: the
    cwd) with its per-repo policies, else the default policy (no pickle)."""
    return find_project_quiet(start) or Policy()
