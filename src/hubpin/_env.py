"""Settings read from the environment at call time (never at import time, unlike huggingface_hub)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir", "default_endpoint", "hf_home", "hf_token"]

DEFAULT_ENDPOINT = "https://huggingface.co"


def hf_home() -> Path:
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface"


def default_cache_dir() -> Path:
    """`HF_HUB_CACHE`, then legacy `HUGGINGFACE_HUB_CACHE`, then `$HF_HOME/hub`: what huggingface_hub uses."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return hf_home() / "hub"


def default_endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def hf_token() -> str | None:
    """The token huggingface_hub would send: `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, then the token file."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var):
            return os.environ[var].strip()
    path = Path(os.environ["HF_TOKEN_PATH"]).expanduser() if os.environ.get("HF_TOKEN_PATH") else hf_home() / "token"
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None
