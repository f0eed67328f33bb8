"""Atomic outputs: a crash never leaves a half-written result, and no run silently replaces another's."""

from __future__ import annotations

import json
import os
import secrets
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
    stamp = f"{path.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    backup, count = path.with_name(stamp), 1
    while backup.exists():  # moved twice in one second: rename would replace the first backup
        backup, count = path.with_name(f"{stamp}-{count}"), count + 1
    path.rename(backup)
    warnings.warn(f"{path} already existed; the earlier result was moved to {backup}", stacklevel=2)
    return backup


def check_writable(folder: Path, setting: str) -> None:
    """Fail before any work if results could not be written to `folder`: otherwise they are lost after training."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise PermissionError(
            f"cannot write to {folder} ({error.strerror or error}), where this run saves its results; "
            f"make it writable or set {setting} to a folder you can write to"
        ) from None


def prepare_output(path: Path, setting: str, move: bool) -> None:
    """At the start of a run: check `path` can be written (`setting` names where), and move an earlier one aside
    (where `move`: rank zero), so that an interrupted run never leaves an earlier run's result looking like its own."""
    check_writable(path.parent, setting)
    if move:
        move_aside(path)


def _temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to `path`, to build an output under before renaming it into place."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename it into place (an earlier file is moved aside)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, unlike mkstemp's 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        move_aside(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, payload: dict) -> Path:
    """Write JSON atomically (see atomic_write_bytes)."""
    return atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temporary sibling folder, then rename it to `path` (e.g. save_pretrained)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    tmp.mkdir()  # the umask applies, unlike mkdtemp's 0700
    try:
        write(tmp)
        move_aside(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
