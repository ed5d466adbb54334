"""The `hubpin` command: thin click commands over the library.

Exit codes (DESIGN.md): 0 ok · 1 a check failed · 2 bad usage or input · 3 remote error.
Each command lives in its own `_<name>.py` module and is registered below.
"""

from __future__ import annotations

from . import (  # noqa: F401  (importing a module registers its commands)
    _bundle,
    _lock,
    _policy,  # scan, licenses, doctor
    _publish,
    _serve,
    _sync,
    _token,
)
from ._app import main

__all__ = ["main"]
