"""hubpin: pin, verify, bundle and mirror Hugging Face Hub repos for production.

The CLI (`hubpin ...`) is a thin layer over the functions re-exported here.
"""

from __future__ import annotations

from ._remote_publish import RemotePublishResult, publish_http
from .api import commit, snapshot
from .bundle import bundle_info, export_bundle, export_dir, import_bundle, sync_from_bundle
from .config import Project, RepoDecl, find_project
from .doctor import diagnose
from .errors import (
    BadInput,
    BundleError,
    CheckFailed,
    ConfigError,
    DriftError,
    HashMismatchError,
    HubpinError,
    LockfileError,
    NotFoundError,
    NotSyncedError,
    PolicyError,
    RemoteError,
    UnsafePathError,
)
from .hub import HubClient, RemoteFile
from .lock import lock_project, outdated
from .lockfile import LockedRepo, Lockfile, read_lock, write_lock
from .objects import Commit, FileEntry, RepoKey
from .policy import Policy
from .publish import PublishResult, publish
from .scan import ScanReport, scan_folder
from .store import LocalStore, Store, open_store
from .tokens import TokenRecord, create_token, list_tokens, revoke_token

__version__ = "0.1.0"

__all__ = [
    "BadInput",
    "BundleError",
    "CheckFailed",
    "Commit",
    "ConfigError",
    "DriftError",
    "FileEntry",
    "HashMismatchError",
    "HubClient",
    "HubpinError",
    "LocalStore",
    "LockedRepo",
    "Lockfile",
    "LockfileError",
    "NotFoundError",
    "NotSyncedError",
    "Policy",
    "PolicyError",
    "Project",
    "PublishResult",
    "RemoteError",
    "RemoteFile",
    "RemotePublishResult",
    "RepoDecl",
    "RepoKey",
    "ScanReport",
    "Store",
    "TokenRecord",
    "UnsafePathError",
    "bundle_info",
    "commit",
    "create_token",
    "diagnose",
    "export_bundle",
    "export_dir",
    "find_project",
    "import_bundle",
    "list_tokens",
    "lock_project",
    "open_store",
    "outdated",
    "publish",
    "publish_http",
    "read_lock",
    "revoke_token",
    "scan_folder",
    "snapshot",
    "sync_from_bundle",
    "write_lock",
]
