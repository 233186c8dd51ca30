"""On-disk cache of arrays that are slow to build (generated data sets, partitions).

Files are written atomically, so Ray actors and processes reading at the same time
never see half a file. ``FEDKD_CACHE`` moves the folder (default ``~/.cache/fedkd``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def cache_dir() -> Path:
    return Path(os.environ.get("FEDKD_CACHE", Path.home() / ".cache" / "fedkd"))


def cached_arrays(name: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays stored under ``name``: loaded if present, else built and saved."""
    path = cache_dir() / f"{name}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return arrays
