"""Rejection-based methods: teach the model to refuse on the forget questions instead of pushing it away."""

from __future__ import annotations

import torch

from unlearn.losses import dpo_loss, mean_token_nll, sequence_nll
from unlearn.methods.divergence import ReferenceScored, RetainRegularised


class IDKFineTune(RetainRegularised):
    """IDK fine-tuning (Maini et al. 2024, TOFU): NLL of refusals on forget questions + α·L_r.

    The forget source supplies the refusals, e.g. `unlearn.data.sources.Refusals(source=...)`.
    """

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        return self.with_retain(mean_token_nll(self(forget), forget["labels"]), batch)


class DPO(ReferenceScored):
    """DPO / IDK-DPO (Rafailov et al. 2023; Maini et al. 2024): prefer `forget_alt` (a refusal) to the forget answer.

    The data module's `forget_alt` source gives, row for row, the preferred answer to each forget question.
    """

    reference_roles = ("forget", "forget_alt")

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        rejected, chosen = batch["forget"], batch["forget_alt"]
        nll_chosen, _ = sequence_nll(self(chosen), chosen["labels"])
        nll_rejected, _ = sequence_nll(self(rejected), rejected["labels"])
        loss = dpo_loss(
            nll_chosen,
            nll_rejected,
            self.reference_nll(chosen, "forget_alt"),
            self.reference_nll(rejected),
            beta=self.beta,
        )
        return self.with_retain(loss, batch)
