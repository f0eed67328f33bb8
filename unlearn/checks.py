"""User errors and degenerate runs: every problem found before any model loads, reported at once with its fix."""

from __future__ import annotations

import warnings

import lightning as L


class UsageError(ValueError):
    """A problem with the settings or the data, not a bug: the CLI prints it as one paragraph, without a traceback."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n{listed}")


class DegenerateRunWarning(UserWarning):
    """A run that can go ahead but will probably not mean what it seems; metrics.json lists it under `warnings`."""


def refuse(problems: list[str]) -> None:
    """Raise one UsageError listing every problem (each names its setting and fix), so that one retry fixes all."""
    if problems:
        raise UsageError(*problems)


def degenerate(trainer: L.Trainer | None, message: str) -> None:
    """Warn loudly and keep the message for metrics.json's `warnings` (on the trainer, which run_summary reads)."""
    warnings.warn(message, DegenerateRunWarning, stacklevel=2)
    if trainer is not None:
        vars(trainer).setdefault("run_warnings", []).append(message)


def run_warnings(trainer: L.Trainer) -> list[str]:
    """What `degenerate` recorded during this run."""
    return list(vars(trainer).get("run_warnings", []))
