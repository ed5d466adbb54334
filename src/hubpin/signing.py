"""ed25519 keys and detached signatures for bundles.

A private key is a PKCS#8 PEM file (mode 0600); its public key sits beside it as `KEYFILE.pub`
(SubjectPublicKeyInfo PEM). A key is named by its fingerprint: `sha256:<hex>` of the 32 raw
public-key bytes, the same string whether computed from the private or the public file.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._fsutil import fsync_dir
from .errors import BadInput, BundleError

__all__ = [
    "KeyPair",
    "Signature",
    "fingerprint",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "sign",
    "verify",
]


@dataclass(frozen=True)
class KeyPair:
    """Where `generate_keypair` wrote the key pair, and the key's fingerprint."""

    private: Path
    public: Path
    fingerprint: str


@dataclass(frozen=True)
class Signature:
    """A detached ed25519 signature and the public key that made it."""

    public_key: bytes  # 32 raw bytes
    signature: bytes  # 64 bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def fingerprint(public_key: bytes | Ed25519PublicKey) -> str:
    """`sha256:<hex>` of the raw 32-byte public key."""
    raw = public_key if isinstance(public_key, bytes) else _raw(public_key)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_keypair(keyfile: str | os.PathLike[str]) -> KeyPair:
    """Write a new ed25519 private key to `keyfile` (0600) and its public key to `keyfile.pub`.

    Refuses to overwrite either file (`BadInput`); on failure nothing is left behind.
    """
    priv_path = Path(keyfile)
    pub_path = priv_path.with_name(priv_path.name + ".pub")
    for p in (priv_path, pub_path):
        if p.exists() or p.is_symlink():
            raise BadInput(f"{p}: already exists (expected a new file name)",
                           hint="choose another name, or delete the old key on purpose first")
    if not priv_path.parent.is_dir():
        raise BadInput(f"{priv_path.parent}: no such folder (expected an existing folder for the key)")
    key = Ed25519PrivateKey.generate()
    priv_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    written: list[Path] = []
    try:
        for path, data, mode in ((priv_path, priv_pem, 0o600), (pub_path, pub_pem, 0o644)):
            # O_EXCL: never replace a key someone created meanwhile; the mode is set at creation
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(path, mode)  # the umask may have removed bits we want (never adds any)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    fsync_dir(priv_path.parent)
    return KeyPair(priv_path, pub_path, fingerprint(key.public_key()))


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read an ed25519 private key (PKCS#8 PEM, unencrypted) or raise `BadInput`."""
    p = Path(path)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except FileNotFoundError:
        raise BadInput(f"{p}: no such key file", hint="create one with `hubpin keygen KEYFILE`") from None
    except (ValueError, TypeError) as e:
        raise BadInput(f"{p}: not an unencrypted ed25519 private key PEM ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"{p}: expected an ed25519 private key, got {type(key).__name__}")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read an ed25519 public key (PEM, as `hubpin keygen` writes to KEYFILE.pub)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{p}: no such public key file", hint="pass the KEYFILE.pub written by `hubpin keygen`") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        hint = "pass the .pub file, not the private key" if b"PRIVATE KEY" in data else None
        raise BadInput(f"{p}: not an ed25519 public key PEM ({e})", hint=hint) from e
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput(f"{p}: expected an ed25519 public key, got {type(key).__name__}")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> Signature:
    return Signature(_raw(key.public_key()), key.sign(data))


def verify(sig: Signature, data: bytes, *, what: str = "bundle") -> None:
    """Raise `BundleError` unless `sig` is a valid signature of `data` by its own public key."""
    try:
        Ed25519PublicKey.from_public_bytes(sig.public_key).verify(sig.signature, data)
    except (InvalidSignature, ValueError) as e:
        raise BundleError(
            f"{what}: signature by {sig.fingerprint} does not match the manifest (expected a valid ed25519 "
            "signature, got an invalid one)",
            hint="the bundle was changed after signing; get a fresh copy from its source",
        ) from e


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, *, length: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise BundleError(f"{what}: expected base64 text, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as e:
        raise BundleError(f"{what}: not valid base64") from e
    if len(raw) != length:
        raise BundleError(f"{what}: expected {length} bytes, got {len(raw)}")
    return raw
