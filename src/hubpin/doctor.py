"""`hubpin doctor`: for each locked repo, will `from_pretrained(name)` load offline, and if not, why.

Checks, each with a fix:

- refs: `refs/<declared revision>` present, exactly 40 hex with no newline (huggingface_hub 2.4
  reads it without `strip()`), and equal to the locked commit;
- snapshot: every locked file linked in `snapshots/<commit>/` to a blob of the right size, and
  `trees/<commit>.json` present for a complete lock entry;
- environment: `HF_HUB_OFFLINE` / `HF_ENDPOINT` / `HF_HUB_CACHE` are read once, when
  huggingface_hub is imported; setting them afterwards in the same process does nothing;
- packages the tokenizer or model needs (MeCab → fugashi + a dictionary, sentencepiece,
  tiktoken, protobuf, sudachi), torch ≥ 2.6 for pickle-only weights (CVE-2025-32434), and a
  writable `HF_MODULES_CACHE` for remote code.

Package presence is checked through `have_module` (default: `importlib.util.find_spec`), so a
caller (or a test) can ask "what if fugashi were missing".
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import _env
from .lockfile import LockedRepo, Lockfile
from .paths import is_commit_sha
from .remote_code import auto_map_refs

__all__ = ["DoctorReport", "Issue", "RepoDiagnosis", "diagnose", "env_issues", "have_module"]

_SPM_CLASSES = ("T5", "Llama", "Albert", "XLNet", "Camembert", "Marian", "Pegasus", "MBart", "Reformer",
                "BigBird", "XLMRoberta", "DebertaV2", "Gemma", "Mistral", "Bartpho", "Rembert", "Speech2Text")
_MECAB_DICS = {"ipadic": ("ipadic", "ipadic"), "unidic_lite": ("unidic_lite", "unidic-lite"),
               "unidic": ("unidic", "unidic")}
_TORCH_SAFE = (2, 6)  # CVE-2025-32434: torch.load(weights_only=True) bypass before 2.6


@dataclass(frozen=True)
class Issue:
    """One reason a load may fail, and how to fix it. `severity` is "error" or "warning"."""

    check: str
    problem: str
    fix: str
    severity: str = "error"

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "problem": self.problem, "fix": self.fix, "severity": self.severity}


@dataclass(frozen=True)
class RepoDiagnosis:
    repo: str
    commit: str
    revision: str
    issues: tuple[Issue, ...]

    @property
    def ready(self) -> bool:
        return not any(i.severity == "error" for i in self.issues)

    def to_dict(self) -> dict[str, object]:
        return {"repo": self.repo, "commit": self.commit, "revision": self.revision, "ready": self.ready,
                "issues": [i.to_dict() for i in self.issues]}


@dataclass(frozen=True)
class DoctorReport:
    cache_dir: str
    env: tuple[Issue, ...]
    repos: tuple[RepoDiagnosis, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        return all(r.ready for r in self.repos) and not any(i.severity == "error" for i in self.env)

    def to_dict(self) -> dict[str, object]:
        return {"cache_dir": self.cache_dir, "ready": self.ready, "env": [i.to_dict() for i in self.env],
                "repos": [r.to_dict() for r in self.repos]}


def have_module(name: str) -> bool:
    """True when `import name` would find the module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# -- environment ---------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def env_issues(cache_dir: Path) -> list[Issue]:
    """Problems with the HF environment variables, as this process sees them."""
    issues: list[Issue] = []
    offline_env = _truthy(os.environ.get("HF_HUB_OFFLINE"))
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # already imported: its values are frozen
        imported_offline = bool(getattr(hub, "HF_HUB_OFFLINE", False))
        if offline_env != imported_offline:
            issues.append(Issue(
                "env", f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!r} now, but huggingface_hub was "
                f"imported with HF_HUB_OFFLINE={'1' if imported_offline else 'unset'}; it reads it once, at import",
                "set HF_HUB_OFFLINE=1 before the process starts (or before any `import transformers`)"))
        env_endpoint = _env.default_endpoint() or "https://huggingface.co"
        imported_endpoint = str(getattr(hub, "ENDPOINT", "")).rstrip("/")
        if imported_endpoint and env_endpoint != imported_endpoint:
            issues.append(Issue(
                "env", f"HF_ENDPOINT is {env_endpoint} now, but huggingface_hub was imported with "
                f"{imported_endpoint}; it reads it once, at import",
                "set HF_ENDPOINT before the process starts (or before any `import transformers`)"))
        imported_cache = getattr(hub, "HF_HUB_CACHE", None)
        if imported_cache and Path(imported_cache).expanduser().absolute() != cache_dir.absolute():
            issues.append(Issue(
                "env", f"huggingface_hub was imported with HF_HUB_CACHE={imported_cache}, not {cache_dir}",
                f"set HF_HUB_CACHE={cache_dir} before the process starts"))
    if not offline_env:
        issues.append(Issue("env", "HF_HUB_OFFLINE is not set: from_pretrained will try the network first",
                            "export HF_HUB_OFFLINE=1 on machines without internet", "warning"))
    return issues


# -- one repo ------------------------------------------------------------------------------


def _ref_issues(repo_dir: Path, entry: LockedRepo) -> list[Issue]:
    name = entry.revision
    ref = repo_dir / "refs" / name
    if is_commit_sha(name):
        return []  # loads by commit need no ref
    try:
        raw = ref.read_bytes()
    except FileNotFoundError:
        return [Issue("refs", f"refs/{name} is missing: from_pretrained(name) offline cannot resolve "
                      f"revision {name!r}", "run `hubpin sync`")]
    except OSError as e:
        return [Issue("refs", f"refs/{name} cannot be read ({e})", "run `hubpin sync`")]
    text = raw.decode("ascii", "replace")
    if text != text.strip():
        return [Issue("refs", f"refs/{name} has surrounding whitespace or a newline ({raw!r}); "
                      "huggingface_hub reads it without strip() and fails offline",
                      f"printf %s {entry.commit} > {ref}  (or run `hubpin sync`)")]
    if not is_commit_sha(text):
        return [Issue("refs", f"refs/{name} is malformed: expected 40 lowercase hex, got {text[:60]!r}",
                      "run `hubpin sync`")]
    if text != entry.commit:
        return [Issue("refs", f"refs/{name} points to {text[:12]}, the lock pins {entry.commit[:12]}: "
                      "an offline load gets another commit", "run `hubpin sync`")]
    return []


def _snapshot_issues(repo_dir: Path, entry: LockedRepo) -> list[Issue]:
    snap = repo_dir / "snapshots" / entry.commit
    if not snap.is_dir():
        return [Issue("snapshot", f"snapshots/{entry.commit[:12]} is missing", "run `hubpin sync`")]
    missing, wrong = [], []
    for f in entry.files:
        link = snap / f.path
        try:
            size = link.stat().st_size  # follows the link into blobs/
        except OSError:
            missing.append(f.path)
            continue
        if size != f.size:
            wrong.append(f"{f.path} ({size} bytes, locked {f.size})")
    issues = []
    if missing:
        issues.append(Issue("snapshot", f"{len(missing)} locked file(s) missing from the snapshot: "
                            f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}", "run `hubpin sync`"))
    if wrong:
        issues.append(Issue("snapshot", f"wrong size: {', '.join(wrong[:5])}", "run `hubpin verify`, then `hubpin sync`"))
    if entry.complete:
        tree = repo_dir / "trees" / f"{entry.commit}.json"
        try:
            listed = set(json.loads(tree.read_text("utf-8"))["files"])
        except (OSError, ValueError, KeyError, TypeError):
            issues.append(Issue("snapshot", f"trees/{entry.commit[:12]}.json is missing or unreadable: offline "
                                "snapshot_download cannot list the repo", "run `hubpin sync`", "warning"))
        else:
            locked = {f.path for f in entry.files}
            if listed != locked:
                issues.append(Issue("snapshot", f"trees/{entry.commit[:12]}.json lists {len(listed)} files, the "
                                    f"lock {len(locked)}", "run `hubpin sync`"))
    return issues


def _read_json(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _need(pkgs: list[tuple[str, str]], have: Callable[[str], bool], why: str) -> Issue | None:
    """pkgs: (module, pip name). An Issue naming the missing ones, or None."""
    missing = [pip for module, pip in pkgs if not have(module)]
    if not missing:
        return None
    return Issue("packages", f"{why} needs {', '.join(missing)}, not installed", f"pip install {' '.join(missing)}")


def package_issues(files: dict[str, Path], have: Callable[[str], bool] = have_module) -> list[Issue]:
    """Python packages the repo's tokenizer/model files need, that are not installed."""
    issues: list[Issue | None] = []
    tok = _read_json(files["tokenizer_config.json"]) if "tokenizer_config.json" in files else {}
    tok_class = str(tok.get("tokenizer_class") or "")
    word = tok.get("word_tokenizer_type")
    if word == "mecab":
        kwargs = tok.get("mecab_kwargs") if isinstance(tok.get("mecab_kwargs"), dict) else {}
        dic = str(kwargs.get("mecab_dic", "unidic_lite"))  # type: ignore[union-attr]
        pkgs = [("fugashi", "fugashi")]
        if dic in _MECAB_DICS:
            pkgs.append(_MECAB_DICS[dic])
        issues.append(_need(pkgs, have, f"{tok_class or 'the tokenizer'} (MeCab, dictionary {dic})"))
    elif word == "sudachi":
        issues.append(_need([("sudachipy", "sudachipy"), ("sudachidict_core", "sudachidict_core")], have,
                            "the Sudachi word tokenizer"))
    elif word == "jumanpp":
        issues.append(_need([("rhoknp", "rhoknp")], have, "the Juman++ word tokenizer"))
    spm_files = [p for p in files if p.endswith(".model") and "/" not in p]
    slow_spm = tok_class.startswith(_SPM_CLASSES) and not tok_class.endswith("Fast")
    if (spm_files or slow_spm) and "tokenizer.json" not in files:
        why = f"the sentencepiece tokenizer ({', '.join(spm_files) or tok_class})"
        issues.append(_need([("sentencepiece", "sentencepiece"), ("google.protobuf", "protobuf")], have, why))
    if any(p.endswith(".tiktoken") for p in files) or "tiktoken" in tok_class.lower():
        issues.append(_need([("tiktoken", "tiktoken")], have, "the tiktoken tokenizer"))
    return [i for i in issues if i is not None]


def _torch_version() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        parts = metadata.version("torch").split("+")[0].split(".")
        return int(parts[0]), int(parts[1])
    except (metadata.PackageNotFoundError, ValueError, IndexError):
        return None


def weights_issues(paths: Iterable[str], torch_version: tuple[int, int] | None | str = "auto") -> list[Issue]:
    """Pickle-only weights (no safetensors) need torch ≥ 2.6 (CVE-2025-32434)."""
    paths = list(paths)
    pickled = [p for p in paths if p.endswith((".bin", ".pt", ".pth", ".ckpt")) and "/" not in p]
    if not pickled or any(p.endswith(".safetensors") for p in paths):
        return []
    version = _torch_version() if torch_version == "auto" else torch_version
    if version is None:
        return [Issue("packages", f"{pickled[0]} is a torch pickle and torch is not installed",
                      "pip install 'torch>=2.6'")]
    if version < _TORCH_SAFE:  # type: ignore[operator]
        return [Issue("packages", f"{pickled[0]} needs torch.load; torch {version[0]}.{version[1]} < 2.6 "  # type: ignore[index]
                      "lets weights_only=True be bypassed (CVE-2025-32434), transformers refuses it",
                      "pip install 'torch>=2.6', or use safetensors weights")]
    return []


def modules_cache_issue() -> Issue | None:
    """Remote code is copied into HF_MODULES_CACHE before import; it must be a writable folder."""
    import tempfile

    d = Path(os.environ.get("HF_MODULES_CACHE") or _env.hf_home() / "modules").expanduser()
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    ok = probe.is_dir()
    if ok and probe == d:
        try:  # a real write: os.access says yes to root even on a read-only mount
            with tempfile.NamedTemporaryFile(dir=d, prefix=".hubpin-doctor-"):
                pass
        except OSError:
            ok = False
    elif ok:
        ok = os.access(probe, os.W_OK | os.X_OK)
    if not ok:
        return Issue("remote-code", f"HF_MODULES_CACHE {d} is not a writable folder: trust_remote_code cannot "
                     "install the repo's modules", "export HF_MODULES_CACHE=<a writable folder>")
    return None


def diagnose_repo(
    entry: LockedRepo,
    cache_dir: Path,
    have: Callable[[str], bool] = have_module,
    locked: Collection[str] | None = None,
) -> RepoDiagnosis:
    """Every reason `entry` might not load offline from `cache_dir`. `locked`: the ids of every
    repo in the lock, to check that code an `auto_map` points into is pinned too."""
    repo_dir = cache_dir / entry.repo.folder
    issues: list[Issue] = []
    if not repo_dir.is_dir():
        issues.append(Issue("snapshot", f"{entry.repo.folder} is not in {cache_dir}", "run `hubpin sync`"))
    else:
        issues += _ref_issues(repo_dir, entry)
        issues += _snapshot_issues(repo_dir, entry)
    blobs = repo_dir / "blobs"
    local = {f.path: blobs / f.etag for f in entry.files if (blobs / f.etag).is_file()}
    issues += package_issues(local, have)
    if entry.repo.type == "model":
        issues += weights_issues(f.path for f in entry.files)
    refs = auto_map_refs(local.items())
    if locked is not None:
        for other in sorted({r.repo_id for r in refs if r.repo_id and r.repo_id not in locked}):
            issues.append(Issue("remote-code", f"auto_map points into {other}, which is not in the lock: offline "
                                f"trust_remote_code loads cannot fetch its code",
                                f"set allow-remote-code = true for {entry.repo.id} and run "
                                f"`hubpin lock --upgrade {entry.repo.id}`"))
    has_code = any(p.endswith(".py") for p in local) or bool(refs) or bool(entry.required_by)
    if has_code:
        issue = modules_cache_issue()
        if issue is not None:
            issues.append(issue)
    return RepoDiagnosis(str(entry.repo), entry.commit, entry.revision, tuple(issues))


def diagnose(
    lock: Lockfile,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    repo: str | None = None,
    have: Callable[[str], bool] = have_module,
) -> DoctorReport:
    """Diagnose every locked repo (or just `repo`, by id) in the HF cache (default: HF_HUB_CACHE)."""
    from .errors import NotFoundError

    cache = Path(cache_dir).expanduser() if cache_dir is not None else _env.default_cache_dir()
    entries = list(lock.repos)
    if repo is not None:
        entries = [e for e in entries if e.repo.id == repo or str(e.repo) == repo]
        if not entries:
            raise NotFoundError(f"{repo} is not in the lock", hint="see `hubpin licenses` for the locked repos")
    return DoctorReport(str(cache), tuple(env_issues(cache)),
                        tuple(diagnose_repo(e, cache, have, {r.repo.id for r in lock.repos}) for e in entries))
