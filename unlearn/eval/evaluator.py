"""Evaluator callbacks: score the model before and after unlearning (or alone in `test`) and report."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import lightning as L
import torch

from unlearn.data.sources import SyntheticMCQ, SyntheticQA
from unlearn.data.tofu import SyntheticPerturbedQA
from unlearn.eval.summary import format_table, run_summary
from unlearn.eval.tasks import EvalTask, MCQTask, MIATask, QATask
from unlearn.eval.tofu import TOFUTask
from unlearn.io import atomic_write_json, prepare_output
from unlearn.strategies import lockstep


class Evaluator(L.Callback):
    """Owns one torchmetrics metric per task, shards rows across ranks, writes <root>/metrics.json."""

    def __init__(self, tasks: list[EvalTask], batch_size: int = 64, progress: bool = True, save_items: bool = True):
        """
        Args:
            tasks: what to measure; each gives one `<split>/<metric>` number.
            batch_size: rows per forward or generate call.
            progress: show a progress bar per task, named by its split and task ("forget MCQ", "retain QA
                generate"); rank zero only, and never with `trainer.enable_progress_bar: false`.
            save_items: keep per-item results (questions, predictions) in metrics.json.
        """
        names = [n for t in tasks for n in t.metric_names]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two evaluation tasks report the same metric {duplicates}; give them distinct splits")
        self.tasks = tasks
        self.batch_size = batch_size
        self.progress = progress
        self.save_items = save_items
        self.results: dict[str, dict] = {}
        self.items: dict[str, dict] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check metrics.json can be written (moving an earlier one aside), load each task's rows once, keep this
        rank's shard, and place one metric per task on the device."""
        prepare_output(self.metrics_path(trainer), "trainer.default_root_dir", move=trainer.is_global_zero)
        if hasattr(self, "rows"):
            return
        rank, world = trainer.global_rank, trainer.world_size
        self.rows = {t.metric_name: t.load()[rank::world] for t in self.tasks}
        self.metrics = torch.nn.ModuleDict({_module_key(t): t.make_metric() for t in self.tasks})

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, phase: str) -> dict[str, float]:
        """Every task's number for this phase (before / after), synchronised across ranks."""
        self.metrics.to(pl_module.device)
        results, items = {}, {}
        start = time.perf_counter()
        show = self.progress and trainer.is_global_zero and trainer.progress_bar_callback is not None
        for task in self.tasks:
            metric = self.metrics[_module_key(task)]
            metric.reset()
            with lockstep(pl_module.model):  # ZeRO-3: ranks with different rows still gather parameters together
                items[task.metric_name] = task.run(
                    pl_module.model,
                    pl_module.tokenizer,
                    self.rows[task.metric_name],
                    metric,
                    self.batch_size,
                    show,
                    pl_module.prompt_format,
                )
            results.update(task.results(metric))
            metric.reset()
        if trainer.is_global_zero:
            print(f"evaluated {phase} in {time.perf_counter() - start:.1f}s")
        self.items[phase] = items
        return results

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure "before", unless resuming: the checkpoint's model is not the original (load_state_dict restores)."""
        if trainer.ckpt_path is None:
            self.results = {"before": self.evaluate(trainer, pl_module, "before")}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure "after" once training ends; a resumed run whose checkpoint has no "before" warns so."""
        if "before" not in self.results:
            warnings.warn(
                f"resumed from {trainer.ckpt_path}, which holds no 'before' numbers (saved by an older version): "
                "metrics.json and the table have none; rerun from the start for them",
                stacklevel=2,
            )
        self.results["after"] = self.evaluate(trainer, pl_module, "after")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Write fit's metrics.json last, after the module's on_fit_end saved the model (not reached on failure)."""
        if stage == "fit":
            self.report(trainer, pl_module)

    def state_dict(self) -> dict:
        """Saved with every checkpoint, so that a resumed run reports the original model's "before" numbers."""
        return {"before": self.results.get("before"), "before_items": self.items.get("before")}

    def load_state_dict(self, state_dict: dict) -> None:
        """Take "before" from the checkpoint of the run being resumed."""
        if state_dict.get("before") is not None:
            self.results = {"before": state_dict["before"]}
            self.items["before"] = state_dict["before_items"]

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """`test` has no "before": score the model once as "after" and write metrics.json now."""
        self.results = {"after": self.evaluate(trainer, pl_module, "after")}
        self.report(trainer, pl_module)

    def report(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the table and write metrics.json atomically (rank zero)."""
        if not trainer.is_global_zero:
            return
        summary = run_summary(pl_module, trainer, self.results, self.items if self.save_items else None)
        path = atomic_write_json(self.metrics_path(trainer), summary)
        print(format_table(self.results.get("before"), self.results["after"]))
        print(f"wrote {path}")

    @staticmethod
    def metrics_path(trainer: L.Trainer) -> Path:
        """Where the run's result goes: <default_root_dir>/metrics.json."""
        return Path(trainer.default_root_dir) / "metrics.json"


class SyntheticEvaluator(Evaluator):
    """The standard tasks on the embedded benchmark: QA and MCQ on forget and retain; QA and Min-K% MIA with holdout.

    `full` adds TOFU's metrics (answer probability, truth ratio, forget quality, model utility) and MUSE's PrivLeak,
    both against a retain model, at about twice the time of the quick default.
    """

    def __init__(
        self,
        forget: str = "forget10",
        retain: str = "retain",
        holdout: str | None = "holdout",
        limit: int | None = None,
        full: bool = False,
        retain_model: str = "tiny-retain",
        nli_model: str | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            forget: the benchmark split that was unlearned.
            retain: the split that must be kept.
            holdout: a split the model never saw (None to skip).
            limit: evaluate at most N rows per task.
            full: also report TOFU's and MUSE's metrics against `retain_model`.
            retain_model: the model trained without the forget split (built-in name, hub id or path); `full` only.
            nli_model: an NLI model (hub id or path) to also report `<split>/qa_entailment`; None skips it.
            **kwargs: see Evaluator.
        """
        tasks: list[EvalTask] = []
        for label, split in (("forget", forget), ("retain", retain)):
            if full:
                source = SyntheticPerturbedQA(split)
                qa = TOFUTask(label, source, side=label, retain_model=retain_model, nli_model=nli_model, limit=limit)
            else:
                qa = QATask(label, SyntheticQA(split), nli_model=nli_model, limit=limit)
            tasks += [qa, MCQTask(label, SyntheticMCQ(split), limit=limit)]
        if holdout:
            tasks.append(QATask("holdout", SyntheticQA(holdout), nli_model=nli_model, limit=limit))
            members, nonmembers = SyntheticQA(forget), SyntheticQA(holdout)
            mia_retain = retain_model if full else None
            tasks.append(MIATask("forget", members, nonmembers=nonmembers, retain_model=mia_retain, limit=limit))
        super().__init__(tasks, **kwargs)


def _module_key(task: EvalTask) -> str:
    """ModuleDict keys may not contain "/" or ".", which metric names do."""
    return task.metric_name.replace("/", "__")
