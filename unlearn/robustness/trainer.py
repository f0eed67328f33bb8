"""Lightning's Trainer with an `attack` method, which LightningCLI turns into `python -m unlearn attack`."""

from __future__ import annotations

import lightning as L

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.methods.base import UnlearnModule
from unlearn.robustness.base import Attack
from unlearn.robustness.runner import run_attack


class UnlearnTrainer(L.Trainer):
    """A Trainer that can also attack a model: every other subcommand runs as in Lightning."""

    def attack(self, model: UnlearnModule, datamodule: UnlearnDataModule, attack: Attack) -> dict:
        """Evaluate a model, run a robustness attack on it and evaluate again (metrics.json: before/after/attack).

        Args:
            model: the method module whose `model` argument is the model to attack (FineTune in configs/attacks/).
            datamodule: forget rows (for relearning, directions) and retain rows.
            attack: the attack, by class_path (unlearn.robustness.Relearn, ...).
        """
        return run_attack(self, model, datamodule, attack)
