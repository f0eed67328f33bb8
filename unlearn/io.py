"""Atomic outputs: a crash never leaves a half-written result, and no run silently replaces another's."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path


def move_aside(path: Path) -> Path | None:
    """Rename an existing output to `<name>.prev-<timestamp>` and say so, instead of overwriting it."""
    if not path.exists():
        return None
    backup = path.with_name(f"{path.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    path.rename(backup)
    warnings.warn(f"{path} already existed; the earlier result was moved to {backup}", stacklevel=2)
    return backup


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename it into place (an earlier file is moved aside)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        move_aside(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, payload: dict) -> Path:
    """Write JSON atomically (see atomic_write_bytes)."""
    return atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temporary sibling folder, then rename it to `path` (e.g. save_pretrained)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        move_aside(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
