"""Fine-tuning on unrelated data (Łucki et al. 2024, "An adversarial perspective on unlearning", arXiv:2409.18025)."""

from __future__ import annotations

from unlearn.data.sources import Source
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.finetune import finetune


class OutOfDomainFineTune(Attack):
    """Fine-tune on data that never mentions the forget set, then see whether the forgotten answers come back."""

    def __init__(
        self, source: Source | None = None, steps: int = 250, batch_size: int = 4, lr: float = 2.0e-5, seed: int = 0
    ) -> None:
        """
        Args:
            source: the unrelated data (QASource / TextSource by hub id or local file, e.g. GSM8K or wikitext);
                None fine-tunes on the data module's retain rows.
            steps: AdamW steps.
            batch_size: rows per step.
            lr: AdamW learning rate.
            seed: the order of the rows.
        """
        self.source, self.steps, self.batch_size, self.lr, self.seed = source, steps, batch_size, lr, seed

    def run(self, target: Target) -> dict:
        rows = self.source.load() if self.source is not None else target.retain
        if not rows:
            raise ValueError("OutOfDomainFineTune has no rows: give `source` or a data.retain source")
        losses = finetune(
            target.model, target.data.collator, rows, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
            seed=self.seed,
        )  # fmt: skip
        name = self.source.name if self.source is not None else f"retain: {target.data.sources['retain'].name}"
        return {"data": name, "rows": len(rows), "loss_first": losses[0], "loss_last": losses[-1]}
