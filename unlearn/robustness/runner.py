"""One attack run: check the inputs, evaluate, attack, evaluate again, write metrics.json with an `attack` section."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.eval.evaluator import Evaluator
from unlearn.eval.summary import format_table, run_summary
from unlearn.io import atomic_write_json
from unlearn.methods.base import UnlearnModule
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.checks import check_model

Rows = dict[str, list[dict]]


def prepare(
    trainer: L.Trainer, module: UnlearnModule, data: UnlearnDataModule, attacks: list[Attack]
) -> tuple[Evaluator, list[Rows]]:
    """Check every input before loading, then load the model; the evaluator and, per attack, the evaluation rows
    without the questions it learns from."""
    check_model(module.model_name, "model.init_args.model")
    for attack in attacks:
        for role, name in attack.models().items():
            check_model(name, role)
    evaluators = [c for c in trainer.callbacks if isinstance(c, Evaluator)]
    if len(evaluators) != 1:
        raise ValueError(f"an attack needs exactly one evaluator in trainer.callbacks; found {len(evaluators)}")
    if trainer.world_size != 1:
        raise ValueError(f"attacks run on one device; the trainer has {trainer.world_size} (set trainer.devices: 1)")
    evaluator = evaluators[0]
    data.setup("fit")
    seen = [{row["question"] for row in attack.seen(data.rows.get("forget", []))} for attack in attacks]
    evaluator.setup(trainer, module, "test")  # before the model loads: metrics.json's folder must be writable
    held_out = [_without(evaluator.rows, questions) for questions in seen]
    module.configure_model()
    module.to(trainer.strategy.root_device).eval()
    return evaluator, held_out


def _without(rows: Rows, questions: set[str]) -> Rows:
    """Every task's rows but those asking one of `questions`; a task left with none is an error."""
    kept = {name: [r for r in task_rows if r.get("question") not in questions] for name, task_rows in rows.items()}
    empty = [name for name, task_rows in kept.items() if not task_rows]
    if empty:
        raise ValueError(f"the attack learns from every row of {empty}; lower its k")
    return kept


def run_attack(trainer: L.Trainer, module: UnlearnModule, data: UnlearnDataModule, attack: Attack) -> dict:
    """metrics.json's `before` (unattacked) and `after` (attacked) on the same rows, and the attack's numbers."""
    evaluator, (rows,) = prepare(trainer, module, data, [attack])
    evaluator.rows = rows
    results = {"before": evaluator.evaluate(trainer, module, "before")}
    target = Target(module, data, evaluator, Path(trainer.default_root_dir))
    numbers = attack.run(target)
    results["after"] = evaluator.evaluate(trainer, module, "after")
    summary = run_summary(module, trainer, results, evaluator.items if evaluator.save_items else None)
    summary["attack"] = {"name": type(attack).__name__, "config": jsonable(vars(attack)), **numbers}
    path = atomic_write_json(target.root / "metrics.json", summary)
    print(format_table(results["before"], results["after"]))
    print(f"wrote {path}")
    return summary


def jsonable(config: dict) -> dict:
    """An attack's arguments as JSON; a data source by its name."""
    return json.loads(json.dumps(config, default=lambda value: getattr(value, "name", repr(value))))
