"""Pair every forget batch with a retain batch drawn by a per-rank generator."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from unlearn.data.collate import Collator
from unlearn.data.sources import Source
from unlearn.models import load_tokenizer


class UnlearnDataModule(L.LightningDataModule):
    """Batches {"forget": ..., "retain": ...}; with no forget source it serves "retain" alone (fine-tuning)."""

    def __init__(
        self,
        tokenizer: str,
        forget: Source | None = None,
        retain: Source | None = None,
        forget_alt: Source | None = None,
        batch_size: int = 8,
        retain_batch_size: int | None = None,
        max_length: int = 256,
        seed: int = 0,
    ) -> None:
        """
        Args:
            tokenizer: hub id, path or built-in name of the tokenizer (linked to the model's by the CLI).
            forget: the data to unlearn; each epoch walks it once in a seeded order.
            retain: the data to keep; sampled with replacement, a different stream on every rank.
            forget_alt: row for row, an alternative answer to each forget question (e.g. a refusal), for
                preference methods such as DPO; it travels as batch["forget_alt"].
            batch_size: forget rows per step (retain rows too, unless retain_batch_size is set).
            retain_batch_size: retain rows per step.
            max_length: longest tokenised row; longer rows are cut at the end.
            seed: seeds the forget order and, offset by the rank, the retain draws.
        """
        super().__init__()
        if forget is None and retain is None:
            raise ValueError("UnlearnDataModule needs a forget source, a retain source, or both")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.tokenizer_name = tokenizer
        if forget_alt is not None and forget is None:
            raise ValueError("data.forget_alt pairs alternatives with forget rows; set data.forget too")
        self.sources = {"forget": forget, "retain": retain, "forget_alt": forget_alt}
        self.batch_size = batch_size
        self.retain_batch_size = retain_batch_size or batch_size
        self.max_length = max_length
        self.seed = seed
        self.rows: dict[str, list[dict]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.rows:
            return
        self.tokenizer = load_tokenizer(self.tokenizer_name)
        self.collator = Collator(self.tokenizer, self.max_length)
        for role, source in self.sources.items():
            if source is None:
                continue
            rows = source.load()
            if not rows:
                raise ValueError(f"the {role} set {source.name} is empty; check its split, path or filters")
            self.rows[role] = [{**row, "index": i} for i, row in enumerate(rows)]
        if "forget_alt" in self.rows and len(self.rows["forget_alt"]) != len(self.rows["forget"]):
            raise ValueError(
                f"forget_alt has {len(self.rows['forget_alt'])} rows but forget has {len(self.rows['forget'])}; "
                "they must pair row for row"
            )
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.retain_generator = torch.Generator().manual_seed(self.seed + 7919 * (rank + 1))

    @property
    def main_role(self) -> str:
        """The set an epoch walks through: forget when unlearning, retain when fine-tuning."""
        return "forget" if "forget" in self.rows else "retain"

    def train_dataloader(self) -> DataLoader:
        order = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.rows[self.main_role],
            batch_size=self.batch_size,
            shuffle=True,
            generator=order,
            collate_fn=self._collate_train,
        )

    def val_dataloader(self) -> DataLoader:
        return self.ordered_dataloader(self.main_role)

    def test_dataloader(self) -> DataLoader:
        return self.ordered_dataloader(self.main_role)

    def ordered_dataloader(self, role: str) -> DataLoader:
        """One pass over a set in its stored order, e.g. to cache reference log-probs by row index."""
        return DataLoader(
            self.rows[role], batch_size=self.batch_size, collate_fn=lambda rows: {role: self.collator(rows)}
        )

    def sample_retain(self) -> list[dict]:
        """Retain rows for one step, drawn with this rank's generator."""
        rows = self.rows["retain"]
        picks = torch.randint(len(rows), (self.retain_batch_size,), generator=self.retain_generator)
        return [rows[i] for i in picks.tolist()]

    def _collate_train(self, rows: list[dict]) -> dict[str, dict[str, torch.Tensor]]:
        batch = {self.main_role: self.collator(rows)}
        if "forget_alt" in self.rows:
            batch["forget_alt"] = self.collator([self.rows["forget_alt"][row["index"]] for row in rows])
        if self.main_role == "forget" and "retain" in self.rows:
            batch["retain"] = self.collator(self.sample_retain())
        return batch
