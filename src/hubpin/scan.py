"""`hubpin scan`: what a folder, a set of files or a locked repo contains that policy cares about.

Every finding names a file, a kind and a reason, and says whether it violates the effective
policy:

| kind | when | violation |
|---|---|---|
| `pickle` | pickle-family content (raw pickle any protocol, torch zip, zip/tar holding pickles, 7z) | unless `allow-pickle` and it passes picklescan --strict and the opcode allow-list |
| `invalid-safetensors` | a `.safetensors` (or safetensors-looking) file whose header is unsound | never (reported: it cannot run code, only fail to load) |
| `remote-code` | a `.py` file, or an `auto_map` entry into this repo | unless `allow-remote-code` |
| `cross-repo-code` | an `auto_map` entry into another repo (`other/repo--mod.Class`) | unless `allow-remote-code` |
| `license` | the repo's license, or its absence | when `licenses` is set and it is not in it |
| `unknown-binary` | binary content of no known format | never (reported) |
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _pickle
from .errors import BadInput, NotSyncedError
from .licenses import LicenseInfo, license_allowed, license_info
from .lockfile import LockedRepo
from .policy import Policy
from .remote_code import auto_map_refs

__all__ = ["Finding", "ScanReport", "folder_files", "locked_files", "scan_files", "scan_folder", "scan_locked_repo"]

_TEXT_SAMPLE = 8192
#: content that is binary but harmless and well known (checked after the pickle sniff)
_KNOWN_MAGIC = (
    (b"PAR1", "parquet"), (b"ARROW1", "arrow"), (b"GGUF", "gguf"), (b"\x89PNG", "png"),
    (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"), (b"RIFF", "riff"), (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"\x93NUMPY", "numpy"), (b"fLaC", "flac"), (b"OggS", "ogg"), (b"ID3", "mp3"),
)  # fmt: skip
#: protobuf & co. have no magic; these extensions are known, non-executable formats
_KNOWN_EXT = (".model", ".onnx", ".pb", ".tflite", ".msgpack", ".h5", ".npy", ".arrow", ".parquet", ".wav",
              ".spm", ".ot", ".mlmodel", ".tiktoken", ".bpe")


_RANK = {"pickle": 0, "cross-repo-code": 1, "remote-code": 2, "license": 3, "invalid-safetensors": 4}
_VERDICT = {
    "pickle": "pickle not allowed",
    "remote-code": "remote code not allowed",
    "cross-repo-code": "remote code not allowed",
    "license": "license not allowed",
    "invalid-safetensors": "invalid safetensors",
}


@dataclass(frozen=True, order=True)
class Finding:
    """One thing the scan found in one file."""

    path: str
    kind: str
    reason: str
    violation: bool = False

    def message(self, target: str) -> str:
        where = f"{target}/{self.path}" if target else self.path
        if self.violation:
            return f"{_VERDICT.get(self.kind, self.kind + ' refused')}: {where} ({self.reason})"
        return f"{self.kind}: {where} ({self.reason})"

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "reason": self.reason, "violation": self.violation}


@dataclass(frozen=True)
class ScanReport:
    """Findings for one target (a repo id or a folder), plus what it says about license and code."""

    target: str
    policy: Policy
    findings: tuple[Finding, ...]
    license: LicenseInfo | None = None
    code_repos: tuple[str, ...] = ()
    scanned: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def violations(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.violation)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "ok": self.ok,
            "scanned": self.scanned,
            "policy": self.policy.to_dict(),
            "license": self.license.to_dict() if self.license else None,
            "code_repos": list(self.code_repos),
            "findings": [f.to_dict() for f in self.findings],
        }


def _looks_binary(prefix: bytes) -> bool:
    sample = prefix[:_TEXT_SAMPLE]
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(sample) - 4  # a multi-byte character cut at the sample's end is fine
    return False


def _safetensors_like(prefix: bytes) -> bool:
    """A file whose first bytes read as a safetensors header length followed by `{`."""
    head = prefix[:9]
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") <= _pickle.SAFETENSORS_MAX_HEADER


def _scan_prefix(rel: str, local: Path, policy: Policy) -> list[Finding]:
    """A file of which only the first bytes are at hand (lock time, big remote files)."""
    with open(local, "rb") as f:
        sniffed = _pickle.sniff_prefix(f.read(_pickle.PREFIX_BYTES))
    if sniffed is None:
        return []
    if not policy.allow_pickle or not sniffed.inspectable:
        reason = sniffed.format if not policy.allow_pickle else f"{sniffed.format}: its contents cannot be checked"
        return [Finding(rel, "pickle", reason, True)]
    return [Finding(rel, "pickle", f"{sniffed.format}, allowed; checked in full when synced", False)]


def _scan_one(rel: str, local: Path, policy: Policy) -> list[Finding]:
    out: list[Finding] = []
    prefix = _pickle.read_prefix(local)  # read once: many small files make opens the cost here
    sniffed = _pickle.sniff(local, prefix)
    if sniffed is not None:
        if not policy.allow_pickle:
            out.append(Finding(rel, "pickle", sniffed.format, True))
        else:
            problems = _pickle.deep_check(local, sniffed)
            if problems:
                out.append(Finding(rel, "pickle", f"{sniffed.format}, refused by scan: {'; '.join(problems)}", True))
            else:
                out.append(Finding(rel, "pickle", f"{sniffed.format}, allowed; passed picklescan --strict and "
                                   "the opcode allow-list", False))
        return out
    if rel.endswith(".safetensors") or _safetensors_like(prefix):
        why = _pickle.validate_safetensors(local)
        if why is not None:
            # reported, not refused: a malformed safetensors cannot run code, it just fails to load
            out.append(Finding(rel, "invalid-safetensors", why, False))
        return out
    if rel.endswith(".py"):
        out.append(Finding(rel, "remote-code", "Python file (runs with trust_remote_code=True)",
                           not policy.allow_remote_code))
        return out
    if rel.endswith(_KNOWN_EXT) or not _looks_binary(prefix):
        return out
    head = prefix[:16]
    if not any(head.startswith(m) for m, _name in _KNOWN_MAGIC):
        out.append(Finding(rel, "unknown-binary", f"binary content of no known format ({head[:8].hex()}…)"))
    return out


def scan_files(
    files: Sequence[tuple[str, Path]],
    policy: Policy,
    *,
    target: str = "",
    check_licenses: bool = True,
    partial: Collection[str] = (),
) -> ScanReport:
    """Scan (repo path, local path) pairs against `policy`. Reads content; never unpickles.

    `partial`: repo paths whose local copy holds only the file's first bytes (a Range fetch):
    they are judged by `sniff_prefix`, and the full check waits until the bytes are local.
    """
    findings: list[Finding] = []
    for rel, local in sorted(files):
        if rel in partial:
            findings.extend(_scan_prefix(rel, local, policy))
            if rel.endswith(".py"):
                findings.extend(f for f in _scan_one(rel, local, policy) if f.kind == "remote-code")
            continue
        findings.extend(_scan_one(rel, local, policy))
    code_repos: set[str] = set()
    for ref in auto_map_refs(files):
        if ref.repo_id:
            code_repos.add(ref.repo_id)
            findings.append(Finding(ref.file, "cross-repo-code",
                                    f"auto_map {ref.key} → {ref.value}: code from {ref.repo_id}",
                                    not policy.allow_remote_code))
        else:
            findings.append(Finding(ref.file, "remote-code", f"auto_map {ref.key} → {ref.value}",
                                    not policy.allow_remote_code))
    info = license_info(files)
    if info.ids:
        findings.append(Finding(info.sources[0] if info.sources else "README.md", "license",
                                ", ".join(info.ids) + (f" ({info.name})" if info.name else "")))
    if check_licenses and policy.licenses is not None:
        why = license_allowed(info, policy.licenses)
        if why is not None:
            findings = [f for f in findings if f.kind != "license"]
            findings.append(Finding(info.sources[0] if info.sources else "README.md", "license", why, True))
    # violations first, the most dangerous kind first, then by path (stable, diff-friendly output)
    findings.sort(key=lambda f: (not f.violation, _RANK.get(f.kind, 9), f.path))
    return ScanReport(target, policy, tuple(findings), info, tuple(sorted(code_repos)), len(files))


def folder_files(root: Path) -> list[tuple[str, Path]]:
    """Every regular file below `root` as (relative path, path); symlinks are not followed."""
    root = Path(root)
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise BadInput(f"{root}: no such file or folder")
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".cache"))
        for name in names:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                out.append((p.relative_to(root).as_posix(), p))
            elif p.is_symlink() and p.resolve().is_file():
                out.append((p.relative_to(root).as_posix(), p.resolve()))  # an HF snapshot folder
    return sorted(out)


def scan_folder(path: str | os.PathLike[str], policy: Policy | None = None) -> ScanReport:
    """Scan every file under a folder (or one file)."""
    root = Path(path)
    return scan_files(folder_files(root), policy or Policy(), target=str(root))


def locked_files(entry: LockedRepo, cache_dir: Path) -> list[tuple[str, Path]]:
    """The locked files of `entry` as blobs of the HF cache at `cache_dir`; raises if any is missing."""
    blobs = cache_dir / entry.repo.folder / "blobs"
    out: list[tuple[str, Path]] = []
    missing = []
    for f in entry.files:
        blob = blobs / f.etag
        if blob.is_file():
            out.append((f.path, blob))
        else:
            missing.append(f.path)
    if missing:
        raise NotSyncedError(f"{entry.repo}@{entry.commit[:12]}: {len(missing)} locked file(s) not in {cache_dir}, "
                             f"first {missing[0]}", hint="run `hubpin sync` first")
    return out


def scan_locked_repo(entry: LockedRepo, cache_dir: Path, policy: Policy | None = None) -> ScanReport:
    """Scan a locked repo's files as synced in the HF cache (offline)."""
    return scan_files(locked_files(entry, Path(cache_dir)), policy or Policy(), target=str(entry.repo))
