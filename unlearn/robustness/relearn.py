"""Relearning on a few forget rows (Hu et al. 2024, "Jogging the memory of unlearned LLMs", arXiv:2406.13356)."""

from __future__ import annotations

from unlearn.robustness.base import Attack, Target
from unlearn.robustness.finetune import finetune, held_out_split


class Relearn(Attack):
    """Fine-tune on k rows of the forget set; the evaluation sees only the held-out rest (Unlearn-FullStack's setup)."""

    def __init__(self, k: int = 20, steps: int = 100, batch_size: int = 4, lr: float = 2.0e-5, seed: int = 0) -> None:
        """
        Args:
            k: forget rows to relearn on, drawn by `seed`; their questions are left out of every evaluation task.
            steps: AdamW steps over the k rows.
            batch_size: rows per step.
            lr: AdamW learning rate.
            seed: chooses the k rows and their order.
        """
        self.k, self.steps, self.batch_size, self.lr, self.seed = k, steps, batch_size, lr, seed

    def seen(self, forget: list[dict]) -> list[dict]:
        return held_out_split(forget, self.k, self.seed, "Relearn")

    def run(self, target: Target) -> dict:
        rows = self.seen(target.forget)
        losses = finetune(
            target.model, target.data.collator, rows, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
            seed=self.seed,
        )  # fmt: skip
        return {
            "split": {"seed": self.seed, "trained": [row["question"] for row in rows],
                      "held_out": len(target.forget) - len(rows)},
            "loss_first": losses[0],
            "loss_last": losses[-1],
        }  # fmt: skip
