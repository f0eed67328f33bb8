"""Shared by the test folders: a method trained a few steps on the embedded benchmark; SmolLM2 converted once."""

import shutil

import lightning as L
import pytest
import torch

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA
from unlearn.models import load_model, load_tokenizer


class Recorder(L.Callback):
    """Keeps every training step's loss terms."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def fit(
    module,
    tmp_path,
    steps=3,
    forget=None,
    retain=None,
    forget_alt=None,
    batch_size=4,
    precision="32-true",
    callbacks=(),
):
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


@pytest.fixture(scope="session")
def smol(tmp_path_factory):
    """SmolLM2 converted once per session into a fresh cache, as a user's first `model: smollm2-135m` converts it."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("UNLEARN_CACHE", str(cache))
        yield load_model("smollm2-135m"), load_tokenizer("smollm2-135m")
    shutil.rmtree(cache)  # 540 MB of weights; pytest would keep its last three sessions' copies


@pytest.fixture(name="loads")
def loads_fixture(monkeypatch):
    """Every model load of the run, recorded (there must be none)."""
    calls = []
    monkeypatch.setattr("unlearn.methods.saved.load_model", lambda *args, **kwargs: calls.append(args))
    monkeypatch.setattr("unlearn.models.load_model", lambda *args, **kwargs: calls.append(args))
    return calls
