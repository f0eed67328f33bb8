"""Rejection-based methods: teach the model to refuse on the forget questions instead of pushing it away."""

from __future__ import annotations

import torch

from unlearn.losses import mean_token_nll
from unlearn.methods.divergence import RetainRegularised


class IDKFineTune(RetainRegularised):
    """IDK fine-tuning (Maini et al. 2024, TOFU): NLL of refusals on forget questions + α·L_r.

    The forget source supplies the refusals, e.g. `unlearn.data.sources.Refusals(source=...)`.
    """

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        return self.with_retain(mean_token_nll(self(forget), forget["labels"]), batch)
