"""Config files that compose: `defaults: [parent.yaml, ...]` names parents, and the file states only what differs.

Renamed arguments: a class lists its deprecated init_args keys in `renamed_args` ({old: new}); `upgrade` renames them
in every file read here, with a FutureWarning naming the new key, for one release.
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import get_loader


def compose(value: str) -> str:
    """`--config`'s value for jsonargparse: a file with `defaults:` becomes its merged YAML, and a file or YAML text
    with a deprecated key its upgraded YAML; anything else stays as it is."""
    if os.path.isfile(value):
        config = _read(Path(value))
        if "defaults" in config:
            return yaml.safe_dump(load_config(value), sort_keys=False)
    else:
        try:
            config = get_loader("yaml")(value)
        except Exception:  # not YAML: jsonargparse reports it
            return value
    upgraded = upgrade(config)
    return value if upgraded == config else yaml.safe_dump(upgraded, sort_keys=False)


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
    return merge(merged, upgrade(config, merged))


def upgrade(config: Any, parent: Any = None, where: str = "") -> Any:
    """`config` with each class's deprecated init_args keys renamed to the new ones (`renamed_args` of the class named
    by `class_path`, here or in `parent`, the config it will be merged onto), warning once per key renamed.

    Raises:
        ValueError: a section gives both a deprecated key and its new name.
    """
    if isinstance(config, list):
        return [upgrade(item, None, f"{where}[{i}]") for i, item in enumerate(config)]
    if not isinstance(config, dict):
        return config
    parent = parent if isinstance(parent, dict) and not _switches_class(parent, config) else {}
    upgraded = {
        key: upgrade(value, parent.get(key), f"{where}.{key}" if where else key) for key, value in config.items()
    }
    class_path = config.get("class_path", parent.get("class_path"))
    if isinstance(class_path, str) and isinstance(upgraded.get("init_args"), dict):
        upgraded["init_args"] = _renamed(upgraded["init_args"], _class(class_path), where or "config")
    return upgraded


def _renamed(init_args: dict[str, Any], cls: type | None, where: str) -> dict[str, Any]:
    """init_args with the keys that `cls.renamed_args` maps renamed in place (the order kept)."""
    for old, new in getattr(cls, "renamed_args", {}).items():
        if old not in init_args:
            continue
        if new in init_args:
            raise ValueError(
                f"{where}.init_args gives both {old} and {new}; {old} is the old name of {new}: keep only {new}"
            )
        warnings.warn(
            f"{where}.init_args.{old} is deprecated and will be removed in the next release: rename it to {new} "
            f"({cls.__name__} reads it as {new} until then)",
            FutureWarning,
            stacklevel=2,
        )
        init_args = {new if key == old else key: value for key, value in init_args.items()}
    return init_args


def _class(class_path: str) -> type | None:
    """The class a class_path names (a bare name as jsonargparse finds it among the methods, eval tasks and attacks),
    or None when it names none: jsonargparse reports that."""
    module, _, name = class_path.rpartition(".")
    for candidate in [module] if module else ["unlearn.methods", "unlearn.eval", "unlearn.robustness"]:
        try:
            found = getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(found, type):
            return found
    return None


def _read(path: Path) -> dict[str, Any]:
    """One YAML mapping, read by jsonargparse's own loader so that values mean what they would to it (e.g. 1e-4)."""
    config = get_loader("yaml")(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config file must be a mapping, got {type(config).__name__}")
    return config
