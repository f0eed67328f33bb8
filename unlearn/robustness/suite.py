"""Several attacks against one model, each on a fresh copy of it, sharing the unattacked evaluation."""

from __future__ import annotations

import copy
import re
import sys
import traceback
from pathlib import Path

import lightning as L

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.eval.summary import format_table
from unlearn.methods.base import UnlearnModule
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.runner import jsonable, prepare

RECOVERED = "forget/mcq_acc"  # the number the table and the plot lead with


def labels(attacks: list[Attack]) -> list[str]:
    """Each attack's class name, with the arguments that tell it apart from others of its class (Quantize bits=4)."""
    configs = [jsonable(vars(attack)) for attack in attacks]
    names = [type(attack).__name__ for attack in attacks]
    out = []
    for name, config in zip(names, configs, strict=True):
        peers = [c for n, c in zip(names, configs, strict=True) if n == name]
        differing = [key for key in config if any(peer.get(key) != config[key] for peer in peers)]
        out.append(" ".join([name, *(f"{key}={config[key]}" for key in differing)]))
    duplicates = sorted({label for label in out if out.count(label) > 1})
    if duplicates:
        raise ValueError(f"the suite lists the same attack twice: {duplicates}")
    return out


def run_suite(
    trainer: L.Trainer, module: UnlearnModule, data: UnlearnDataModule, attacks: list[Attack], out: Path
) -> dict:
    """{"model", "before", "attacks": [{"name", "before", "after", "recovered", "attack"} or {"name", "error"}]}.

    `before` is evaluated once and shared by every attack that scores all rows; one that learns from forget rows
    (Relearn) gets its own on the held-out rest. The model is copied for each attack (twice its memory), and an
    attack that fails records its error and the suite goes on.
    """
    names = labels(attacks)
    evaluator, held_out = prepare(trainer, module, data, attacks)
    every_row, pristine = evaluator.rows, module.model
    shared_before, entries = None, []
    for name, attack, rows in zip(names, attacks, held_out, strict=True):
        entry = {"name": name, "class": type(attack).__name__, "config": jsonable(vars(attack))}
        evaluator.rows, module.model = rows, copy.deepcopy(pristine)
        try:
            if rows == every_row:
                shared_before = shared_before or evaluator.evaluate(trainer, module, "before")
                before = shared_before
            else:
                before = evaluator.evaluate(trainer, module, "before")
            numbers = attack.run(Target(module, data, evaluator, out / _folder(name)))
            after = evaluator.evaluate(trainer, module, "after")
            print(f"{name} on {module.model_name}\n{format_table(before, after)}")
            recovered = {metric: after[metric] - before[metric] for metric in after if metric in before}
            entry.update(before=before, after=after, recovered=recovered, attack=numbers)
        except Exception as error:  # one failing attack must not lose the others' results
            traceback.print_exc(file=sys.stderr)
            entry["error"] = f"{type(error).__name__}: {error}"
        finally:
            evaluator.rows, module.model = every_row, pristine
        entries.append(entry)
    return {"model": module.model_name, "before": shared_before, "attacks": entries}


def _folder(name: str) -> str:
    """An attack's label as a folder name for what it writes (logit_lens.png)."""
    return re.sub(r"[^\w.=-]+", "_", name)
