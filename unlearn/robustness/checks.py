"""Refuse a model that cannot exist before anything is loaded: a missing folder is one clear error, not a hub trace."""

from __future__ import annotations

from pathlib import Path

from unlearn import smollm2
from unlearn.models import BUILTIN, SCRATCH, names_local_path


def check_model(name: str, role: str) -> None:
    """`name` must be a built-in model, an existing folder, or what the loader reads as a hub id (owner/name)."""
    if name in BUILTIN or name in (SCRATCH, smollm2.NAME) or Path(name).expanduser().is_dir():
        return
    if not names_local_path(name):
        return
    raise ValueError(
        f"{role} {name!r} is not an existing model folder, a built-in name ({', '.join(BUILTIN)}) or a hub id; "
        "give the folder fit saved the unlearned model in (e.g. runs/npo/model)"
    )
