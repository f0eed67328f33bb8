"""PeakMemory: the peak it reports covers what a training step allocates, and it writes one entry per rank."""

import json

import lightning as L
import torch

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA
from unlearn.memory import PeakMemory
from unlearn.methods import GradientAscent

BLOCK = 256 * 2**20


class Allocates(L.Callback):
    """Holds a 256 MiB tensor, touched so it is resident, for the length of one training step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.block = torch.ones(BLOCK // 4)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        del self.block


def peak(tmp_path, callbacks) -> dict:
    L.seed_everything(0)
    module = GradientAscent(model="tiny-scratch", optimizer=lambda p: torch.optim.SGD(p, lr=1e-3))
    data = UnlearnDataModule("tiny-scratch", forget=SyntheticQA("forget01"), batch_size=2)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[PeakMemory(), *callbacks],
    )
    trainer.fit(module, datamodule=data)
    return json.loads((tmp_path / "memory.json").read_text())


def test_peak_memory_sees_what_a_step_allocates(tmp_path):
    quiet = peak(tmp_path / "quiet", [])
    busy = peak(tmp_path / "busy", [Allocates()])
    assert quiet["world_size"] == 1 and len(quiet["rank_bytes"]) == len(busy["rank_bytes"]) == 1
    assert quiet["rank_bytes"][0] >= quiet["start_bytes"][0] > 0
    quiet_growth = quiet["rank_bytes"][0] - quiet["start_bytes"][0]
    growth = busy["rank_bytes"][0] - busy["start_bytes"][0]
    # Pages freed after the start reading can shave a little off the difference: allow 10% of the block.
    assert growth >= 0.9 * BLOCK, f"the peak rose {growth / 2**20:.0f} MiB above the start; the block is 256 MiB"
    assert quiet_growth < 0.5 * BLOCK, f"without the block the peak still rose {quiet_growth / 2**20:.0f} MiB"
