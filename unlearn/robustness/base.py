"""What every robustness attack shares: the model it attacks and the rows it may learn from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.eval.evaluator import Evaluator
from unlearn.methods.base import UnlearnModule


@dataclass
class Target:
    """The loaded model under attack, its data module (set up) and the evaluator that scores it."""

    module: UnlearnModule
    data: UnlearnDataModule
    evaluator: Evaluator
    root: Path

    @property
    def model(self) -> torch.nn.Module:
        """The policy itself, which weight attacks change in place."""
        return self.module.model

    @property
    def forget(self) -> list[dict]:
        """The rows of `data.forget` (empty without a forget source)."""
        return self.data.rows.get("forget", [])

    @property
    def retain(self) -> list[dict]:
        """The rows of `data.retain` (empty without a retain source)."""
        return self.data.rows.get("retain", [])

    def ask_instead(self, rewrite: Callable[[str], str]) -> None:
        """Have every evaluation task ask `rewrite(question)` for each row's question: what a prompt attack changes."""
        self.evaluator.rows = {
            name: [{**row, "question": rewrite(row["question"])} for row in rows]
            for name, rows in self.evaluator.rows.items()
        }


class Attack(ABC):
    """An attempt to bring unlearned knowledge back; `run` changes the model in place (weights or hooks) or, for a
    prompt attack, the questions the evaluator asks (`Target.ask_instead`)."""

    def models(self) -> dict[str, str]:
        """Other models the attack loads, by role: the runner checks they exist before loading anything."""
        return {}

    def seen(self, forget: list[dict]) -> list[dict]:
        """The forget rows the attack learns from; the evaluation leaves their questions out, before and after."""
        return []

    @abstractmethod
    def run(self, target: Target) -> dict:
        """Attack `target.model` and return the attack's own numbers (JSON-ready) for metrics.json."""
