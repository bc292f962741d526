"""Where talr looks for benchmark data and caches its converted models."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The folder laid out like the project's ``../shared/data`` (one subfolder per benchmark).

    ``TALR_DATA_DIR`` wins; otherwise ``../shared/data`` beside the current directory, then beside the
    source checkout. Callers that need a file check it exists and name it in their error.
    """
    env = os.environ.get("TALR_DATA_DIR")
    if env:
        return Path(env).expanduser()
    candidates = [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def cache_dir() -> Path:
    """User cache for converted checkpoints and precomputed weights (``TALR_CACHE_DIR`` or ``~/.cache/talr``)."""
    env = os.environ.get("TALR_CACHE_DIR")
    root = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "talr"
    root.mkdir(parents=True, exist_ok=True)
    return root
