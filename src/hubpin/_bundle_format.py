"""The bundle container: a plain (GNU) tar that hubpin writes and parses strictly itself.

    hubpin-bundle.json        the manifest: lock entries + blob index (canonical JSON)
    blobs/<sha256>            each distinct content once, in blob-index order
    hubpin-bundle.sig         optional, last: 512 bytes of JSON, ed25519 over the manifest bytes
    two zero blocks           end of archive, nothing after them

Every header is the one `member_header(name, size)` would write (mode 0644, uid/gid 0,
mtime 0): anything else (links, devices, pax/longname headers, other metadata) is refused.
`tar tf`/`tar xf` read it too, but hubpin never extracts it with tarfile.
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass
from typing import Any

from .errors import BundleError, LockfileError, UnsafePathError
from .lockfile import LockedRepo, Lockfile, _parse_repo
from .paths import safe_relpath
from .signing import Signature, b64, fingerprint, unb64

__all__ = [
    "BLOCK",
    "FORMAT",
    "MANIFEST_NAME",
    "MAX_MANIFEST",
    "SIG_NAME",
    "SIG_SIZE",
    "BlobRef",
    "Manifest",
    "blob_member",
    "decode_signature",
    "encode_signature",
    "member_header",
    "padding",
    "parse_header",
]

FORMAT = "hubpin-bundle"
VERSION = 1
BLOCK = 512
MANIFEST_NAME = "hubpin-bundle.json"
SIG_NAME = "hubpin-bundle.sig"
SIG_SIZE = 512
MAX_MANIFEST = 128 * 1024 * 1024  # ~400k files; bounds the memory a hostile header can ask for
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BLOB_MEMBER = re.compile(r"^blobs/([0-9a-f]{64})$")

_TYPE_NAMES = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hardlink",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.DIRTYPE: "a directory",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_LONGNAME: "a GNU long-name header",
    tarfile.GNUTYPE_LONGLINK: "a GNU long-link header",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.XHDTYPE: "a pax extended header",
    tarfile.XGLTYPE: "a pax global header",
    tarfile.SOLARIS_XHDTYPE: "a Solaris extended header",
}


def blob_member(sha256: str) -> str:
    return f"blobs/{sha256}"


def member_header(name: str, size: int) -> bytes:
    """The one 512-byte header hubpin writes for a member (GNU format: sizes ≥ 8 GiB work)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


def padding(size: int) -> int:
    return -size % BLOCK


def parse_header(buf: bytes, offset: int) -> tuple[str, int]:
    """Check one member header strictly; return (name, size). Raise `BundleError` otherwise."""
    try:
        info = tarfile.TarInfo.frombuf(buf, "utf-8", "strict")
    except (tarfile.HeaderError, UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"bundle: bad tar header at byte {offset} ({e})",
                          hint="the file is not a hubpin bundle or was damaged in transit") from e
    name = info.name
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = _TYPE_NAMES.get(info.type, f"type {info.type!r}")
        raise BundleError(f"bundle: member {name!r} is {kind} (expected regular files only)",
                          hint="a bundle holds only regular files; this one was not written by hubpin")
    if name.startswith("/"):
        raise BundleError(f"bundle: member {name!r} has an absolute name (expected a relative name)")
    try:
        safe_relpath(name, what="bundle member")
    except UnsafePathError as e:
        raise BundleError(f"bundle: {e.message}") from e
    if buf != member_header(name, info.size):
        raise BundleError(f"bundle: member {name!r} at byte {offset} has a non-canonical header "
                          "(expected mode 0644, owner 0, mtime 0)",
                          hint="the bundle was modified or not written by hubpin")
    return name, info.size


def blob_sha(name: str) -> str | None:
    m = _BLOB_MEMBER.match(name)
    return m.group(1) if m else None


@dataclass(frozen=True, order=True)
class BlobRef:
    """One blob of the bundle, by content."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """What a bundle carries: lock entries (repos, commits, files) and its blob index."""

    repos: tuple[LockedRepo, ...]
    blobs: tuple[BlobRef, ...]

    @classmethod
    def for_repos(cls, repos: list[LockedRepo] | tuple[LockedRepo, ...]) -> Manifest:
        """The manifest of `repos`, one blob per distinct sha256 (shared blobs stored once)."""
        sizes: dict[str, int] = {}
        for r in repos:
            for f in r.files:
                if f.sha256 is None:
                    raise BundleError(f"{r.repo}: {f.path}: sha256 unknown (expected every file hashed)")
                if sizes.setdefault(f.sha256, f.size) != f.size:
                    raise BundleError(f"{r.repo}: {f.path}: sha256 {f.sha256} with two sizes")
        lock = Lockfile(tuple(repos))  # sorted, duplicates refused
        return cls(lock.repos, tuple(sorted(BlobRef(s, n) for s, n in sizes.items())))

    @property
    def total_size(self) -> int:
        return sum(b.size for b in self.blobs)

    def lock(self) -> Lockfile:
        return Lockfile(self.repos)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "repos": [_repo_json(r) for r in self.repos],
            "blobs": [{"sha256": b.sha256, "size": b.size} for b in self.blobs],
        }

    def to_bytes(self) -> bytes:
        return _canonical(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse strictly: canonical JSON only, every name through hubpin.paths, index consistent."""
        try:
            doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError) as e:
            raise BundleError(f"bundle: manifest is not valid JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BundleError(f"bundle: manifest format expected {FORMAT!r}, got "
                              f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r}")
        if doc.get("version") != VERSION:
            raise BundleError(f"bundle: manifest version expected {VERSION}, got {doc.get('version')!r}",
                              hint="this bundle needs a newer hubpin")
        _keys(doc, {"format", "version", "repos", "blobs"}, "manifest")
        if not isinstance(doc["repos"], list) or not isinstance(doc["blobs"], list):
            raise BundleError("bundle: manifest repos and blobs expected lists")
        repos = []
        for i, raw in enumerate(doc["repos"]):
            _keys(raw, {"type", "id", "revision", "commit", "complete", "required_by", "files"},
                  f"manifest repos[{i}]", optional={"required_by"})
            for j, f in enumerate(raw["files"] if isinstance(raw["files"], list) else []):
                _keys(f, {"path", "size", "etag", "sha256"}, f"manifest repos[{i}].files[{j}]")
            try:
                repos.append(_parse_repo(raw, f"bundle manifest: repos[{i}]"))
            except LockfileError as e:
                raise BundleError(e.message) from e
        blobs = []
        for i, b in enumerate(doc["blobs"]):
            _keys(b, {"sha256", "size"}, f"manifest blobs[{i}]")
            sha, size = b["sha256"], b["size"]
            if not isinstance(sha, str) or not _HEX64.match(sha) or type(size) is not int or size < 0:
                raise BundleError(f"bundle: manifest blobs[{i}] expected a 64-hex sha256 and a size, got {b!r}")
            blobs.append(BlobRef(sha, size))
        try:
            manifest = cls.for_repos(repos)
        except LockfileError as e:
            raise BundleError(f"bundle: manifest: {e.message}") from e
        if tuple(blobs) != manifest.blobs:
            listed = {x.sha256 for x in blobs}
            needed = {x.sha256 for x in manifest.blobs}
            detail = (f"missing {sorted(needed - listed)[:3]}" if needed - listed else
                      f"unused {sorted(listed - needed)[:3]}" if listed - needed else "wrong order or sizes")
            raise BundleError(f"bundle: manifest blob index does not match its files ({detail})")
        if manifest.to_bytes() != data:
            raise BundleError("bundle: manifest is not in canonical form (expected the bytes hubpin writes)",
                              hint="the manifest was edited; get a fresh copy from its source")
        return manifest


def _repo_json(r: LockedRepo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": r.repo.type, "id": r.repo.id, "revision": r.revision, "commit": r.commit,
        "complete": r.complete,
        "files": [{"path": f.path, "size": f.size, "etag": f.etag, "sha256": f.sha256} for f in r.files],
    }
    if r.required_by:
        entry["required_by"] = sorted(r.required_by)
    return entry


def _canonical(obj: object) -> bytes:
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BundleError(f"bundle: manifest key {k!r} appears twice")
        out[k] = v
    return out


def _keys(obj: object, keys: set[str], where: str, optional: set[str] | frozenset[str] = frozenset()) -> None:
    if not isinstance(obj, dict):
        raise BundleError(f"bundle: {where} expected an object, got {type(obj).__name__}")
    extra = set(obj) - keys
    missing = keys - optional - set(obj)
    if extra or missing:
        raise BundleError(f"bundle: {where} expected keys {sorted(keys)}, got extra {sorted(extra)} "
                          f"missing {sorted(missing)}")


def encode_signature(sig: Signature) -> bytes:
    """The signature member's data: JSON padded with spaces to exactly SIG_SIZE bytes."""
    body = _canonical({"algorithm": "ed25519", "fingerprint": sig.fingerprint,
                       "public_key": b64(sig.public_key), "signature": b64(sig.signature)})
    return body[:-1] + b" " * (SIG_SIZE - len(body)) + b"\n"


def decode_signature(data: bytes) -> Signature:
    if len(data) != SIG_SIZE:
        raise BundleError(f"bundle: signature member expected {SIG_SIZE} bytes, got {len(data)}")
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"bundle: signature member is not valid JSON ({e})") from e
    _keys(doc, {"algorithm", "fingerprint", "public_key", "signature"}, "signature")
    if doc["algorithm"] != "ed25519":
        raise BundleError(f"bundle: signature algorithm expected 'ed25519', got {doc['algorithm']!r}")
    sig = Signature(unb64(doc["public_key"], length=32, what="bundle: signature public_key"),
                    unb64(doc["signature"], length=64, what="bundle: signature"))
    if doc["fingerprint"] != fingerprint(sig.public_key):
        raise BundleError(f"bundle: signature fingerprint {doc['fingerprint']!r} does not match its public key "
                          f"({sig.fingerprint})")
    if encode_signature(sig) != data:
        raise BundleError("bundle: signature member is not in canonical form")
    return sig
