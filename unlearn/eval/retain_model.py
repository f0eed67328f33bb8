"""Per-row values of the retain model (a model never trained on the forget set), computed once per task."""

from __future__ import annotations

from collections.abc import Callable

import torch

from unlearn.models import load_model, load_tokenizer


class RetainModelScores:
    """Loads the retain model on first use, scores rows with it, and caches the result for every later phase."""

    def __init__(self, name_or_path: str) -> None:
        """
        Args:
            name_or_path: the retain model: a built-in name ("tiny-retain"), hub id or local directory.
        """
        self.name_or_path = name_or_path
        self._cache: dict[tuple, torch.Tensor] = {}

    def values(self, like, rows: list[dict], score: Callable[..., torch.Tensor]) -> torch.Tensor:
        """`score(model, tokenizer, rows)` under the retain model, placed like the evaluated model `like`."""
        key = tuple((row["question"], row["answer"]) for row in rows)
        if key not in self._cache:
            model = load_model(self.name_or_path).to(device=like.device, dtype=like.dtype)
            self._cache[key] = score(model, load_tokenizer(self.name_or_path), rows).cpu()
            del model
        return self._cache[key]
