"""hubpin: pin, verify, bundle and mirror Hugging Face Hub repos for production.

The CLI (`hubpin ...`) is a thin layer over the functions re-exported here.
"""

from __future__ import annotations

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
    "RepoDecl",
    "RepoKey",
    "ScanReport",
    "Store",
    "UnsafePathError",
    "bundle_info",
    "commit",
    "diagnose",
    "export_bundle",
    "export_dir",
    "find_project",
    "import_bundle",
    "lock_project",
    "open_store",
    "outdated",
    "publish",
    "read_lock",
    "scan_folder",
    "snapshot",
    "sync_from_bundle",
    "write_lock",
]
