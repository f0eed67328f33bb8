"""Shared by the attack tests: one attack run on the embedded benchmark, small enough to take seconds."""

import lightning as L
import pytest

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA
from unlearn.eval.evaluator import SyntheticEvaluator
from unlearn.methods import FineTune
from unlearn.robustness.runner import run_attack


def attack_run(tmp_path, attack, model="tiny-target", forget="forget05", limit=20):
    """run_attack on `model` with forget05 data, every evaluation task cut to `limit` rows; metrics.json's dict."""
    L.seed_everything(0)
    evaluator = SyntheticEvaluator(forget=forget, holdout=None, limit=limit, progress=False)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[evaluator],
    )  # fmt: skip
    data = UnlearnDataModule(model, forget=SyntheticQA(forget), retain=SyntheticQA("retain"))
    return run_attack(trainer, FineTune(model=model), data, attack)


@pytest.fixture(name="attack_run")
def attack_run_fixture():
    """`attack_run(tmp_path, attack, ...)` (see above)."""
    return attack_run
