"""The `hubpin` command: thin click commands over the library.

Exit codes (DESIGN.md): 0 ok · 1 a check failed · 2 bad usage or input · 3 remote error.
Each command lives in its own `_<name>.py` module and is registered below.
"""

from __future__ import annotations

from ._app import main
from . import _publish, _serve, _token, _lock, _bundle, _sync  # noqa: F401,E402  (registers commands)

from . import _policy  # noqa: F401,E402  (scan, licenses, doctor)

__all__ = ["main"]
