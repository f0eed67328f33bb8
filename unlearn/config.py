"""Config files that compose: `defaults: [parent.yaml, ...]` names parents, and the file states only what differs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import get_loader


def compose(value: str) -> str:
    """`--config`'s value for jsonargparse: a file with `defaults:` becomes its merged YAML, anything else stays."""
    if not os.path.isfile(value) or "defaults" not in _read(Path(value)):
        return value
    return yaml.safe_dump(load_config(value), sort_keys=False)


def load_config(path: str | Path) -> dict[str, Any]:
    """The file on top of its `defaults:` parents (paths relative to the file), merged in order, recursively."""
    return _load(Path(path).resolve(), ())


def merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Dicts merge key by key; lists and scalars replace; a dict naming another `class_path` replaces wholesale."""
    merged = dict(parent)
    for key, value in child.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and not _switches_class(old, value):
            value = merge(old, value)
        merged[key] = value
    # class_path leads, as written by hand: jsonargparse keeps a subclass dict's key order in what it prints.
    return {"class_path": merged.pop("class_path"), **merged} if "class_path" in merged else merged


def _switches_class(parent: dict[str, Any], child: dict[str, Any]) -> bool:
    """Another class takes other init_args: the parent's must not leak into it."""
    return "class_path" in parent and "class_path" in child and parent["class_path"] != child["class_path"]


def _load(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """One file with its parents resolved; `chain` holds the files that named it, to report a cycle."""
    if path in chain:
        raise ValueError("config defaults form a cycle: " + " -> ".join(str(p) for p in (*chain, path)))
    config = _read(path)
    parents = config.pop("defaults", [])
    if not isinstance(parents, list):
        raise ValueError(f"{path}: `defaults` must be a list of config paths, got {parents!r}")
    merged: dict[str, Any] = {}
    for parent in parents:
        parent_path = path.parent / parent
        if not parent_path.is_file():
            raise FileNotFoundError(f"{path}: defaults entry {parent!r} not found (looked for {parent_path})")
        merged = merge(merged, _load(parent_path.resolve(), (*chain, path)))
    return merge(merged, config)


def _read(path: Path) -> dict[str, Any]:
    """One YAML mapping, read by jsonargparse's own loader so that values mean what they would to it (e.g. 1e-4)."""
    config = get_loader("yaml")(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config file must be a mapping, got {type(config).__name__}")
    return config
