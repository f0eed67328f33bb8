"""Plain fine-tuning: how the tiny target and retain models are made, and the base of relearning attacks."""

from __future__ import annotations

import torch

from unlearn.losses import mean_token_nll
from unlearn.methods.base import UnlearnModule, token_count


class FineTune(UnlearnModule):
    """Minimise the answer NLL of the retain set (the data module's only set when there is no forget)."""

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        retain = batch["retain"]
        loss = mean_token_nll(self.lm_outputs(retain, "retain"), retain["labels"], num_tokens=token_count(retain))
        return {"loss": loss}

    def needed_data(self) -> dict[str, str]:
        return {"retain": "FineTune trains on data.retain, which is not set; add a retain source"}
