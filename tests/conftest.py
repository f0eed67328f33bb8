"""Shared by the test folders: train a method a few steps on the embedded benchmark and keep its loss terms."""

import lightning as L
import pytest
import torch

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA


class Recorder(L.Callback):
    """Keeps every training step's loss terms."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def fit(module, tmp_path, steps=3, forget=None, retain=None, forget_alt=None, batch_size=4, precision="32-true",
        callbacks=()):
    """Train `module` on CPU for `steps` steps (forget01 against retain by default); each step's logged terms."""
    L.seed_everything(0)
    recorder = Recorder()
    data = UnlearnDataModule(
        "tiny-scratch",
        forget=forget or SyntheticQA("forget01"),
        retain=retain or SyntheticQA("retain"),
        forget_alt=forget_alt,
        batch_size=batch_size,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[recorder, *callbacks],
    )
    trainer.fit(module, datamodule=data)
    return recorder.steps


def adam(lr):
    """AdamW at `lr`, in the form a module's `optimizer` argument takes."""
    return lambda params: torch.optim.AdamW(params, lr=lr)


@pytest.fixture(name="fit")
def fit_fixture():
    """`fit(module, tmp_path, ...)`; a fixture, as `from conftest import` gets whichever conftest loaded last."""
    return fit


@pytest.fixture(name="adam")
def adam_fixture():
    """`adam(lr)`: the optimiser factory the method tests train with."""
    return adam
