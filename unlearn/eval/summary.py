"""The run's result: the metrics.json summary (keys are only ever added) and a before/after table."""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback

from unlearn.checks import run_warnings


def run_summary(pl_module: L.LightningModule, trainer: L.Trainer, results: dict, items: dict | None) -> dict:
    """{"complete", "method", "model", "config", "resolved_config"?, "warnings", "before"?, "after", "items"?}: add
    keys, never rename. Written only when a run has finished (after its model is saved), so `complete` is always
    true: a folder without metrics.json, or one whose metrics.json lacks `complete` (older versions), holds no
    finished result."""
    config = {"model": dict(pl_module.hparams)}
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and getattr(datamodule, "hparams", None):
        config["data"] = dict(datamodule.hparams)
    summary = {
        "complete": True,
        "method": type(pl_module).__name__,
        "model": str(getattr(pl_module, "model_name", "")),
        "config": json.loads(json.dumps(config, default=repr)),
        **resolved_config(trainer),
        "warnings": run_warnings(trainer),  # why the run may not mean what it seems (unlearn.checks.degenerate)
        **results,
    }
    if items is not None:
        summary["items"] = items
    return summary


def resolved_config(trainer: L.Trainer) -> dict:
    """{"resolved_config": the whole config (trainer, model, data, seed) as config.yaml holds it} under the CLI, so
    that the result alone says how it was made; {} for a Trainer made in Python."""
    saver = next((c for c in trainer.callbacks if isinstance(c, SaveConfigCallback)), None)
    if saver is None:
        return {}
    return {"resolved_config": json.loads(saver.parser.dump(saver.config, skip_none=False, format="json"))}


def format_table(before: dict[str, float] | None, after: dict[str, float]) -> str:
    """A fixed-width table, one metric a row, with before, after and their change."""
    name_width = max(len(n) for n in after) + 2
    if before is None:
        lines = [f"{'metric':<{name_width}}{'value':>8}"]
        lines += [f"{n:<{name_width}}{v:>8.3f}" for n, v in after.items()]
    else:
        lines = [f"{'metric':<{name_width}}{'before':>8}{'after':>8}{'change':>9}"]
        lines += [
            f"{n:<{name_width}}{before.get(n, float('nan')):>8.3f}{v:>8.3f}{v - before.get(n, float('nan')):>+9.3f}"
            for n, v in after.items()
        ]
    rule = "-" * len(lines[0])
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])
