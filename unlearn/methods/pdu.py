"""PDU: forget as hard as possible while the retain loss stays under a bound, enforced by a learned multiplier."""

from __future__ import annotations

import torch

from unlearn.checks import refuse
from unlearn.losses import logit_margin_flattening_loss
from unlearn.methods.base import token_count
from unlearn.methods.divergence import RetainRegularised
from unlearn.strategies import mean_over_ranks


class PDU(RetainRegularised):
    """Primal-dual unlearning: min L_f subject to L_r ≤ ε, with the multiplier λ learned by projected dual ascent.

    Paper: Entesari et al. 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language
    Models", arXiv:2506.05314.

    Primal: ``L = L_f + λ·L_r`` minimised by the optimiser. Dual, after every training step's loss:
    ``λ ← max(0, λ + η·(L_r − ε))``, so λ grows while the retain loss is above ε and decays to 0 once it is below.
    L_f is the paper's logit-margin flattening (``logit_margin_flattening_loss``), which pushes forget next-token
    distributions to uniform; L_r is the retain term of RetainRegularised (NLL, the paper's choice, or KL). λ is a
    buffer, so checkpoints keep it and a resumed run continues the dual ascent where it stopped; it stays fp32 under
    bf16 (where 1.0 + 0.003 rounds to 1.0). The paper suggests ε = (1 + τ)·L_r(π_ref) for a small tolerance τ; set
    `epsilon` from the retain loss the first step logs.
    """

    full_logits = True

    renamed_args = {"alpha": "dual_init"}

    def __init__(self, *, epsilon: float, dual_step_size: float = 1.0, dual_init: float = 1.0, **kwargs) -> None:
        """
        Args:
            epsilon: ε, the bound on the retain loss.
            dual_step_size: η > 0, the dual ascent step.
            dual_init: λ₀ ≥ 0, the multiplier's initial value (λ then follows the dual ascent).
            **kwargs: see RetainRegularised; its `retain_weight` does not apply: λ weights the retain term.
        """
        super().__init__(**kwargs)
        if dual_init < 0:
            refuse([f"model.init_args.dual_init={dual_init} would reward a worse retain loss; set dual_init >= 0"])
        if self.retain_weight != 1.0:  # the other methods' alpha became retain_weight; PDU's became dual_init
            refuse(
                [
                    f"model.init_args.retain_weight={self.retain_weight} does not apply to PDU, whose retain term is "
                    "weighted by the learned λ; set model.init_args.dual_init, λ's initial value, instead"
                ]
            )
        if dual_step_size <= 0:
            raise ValueError(f"dual_step_size must be > 0, got {dual_step_size}")
        self.epsilon = epsilon
        self.dual_step_size = dual_step_size
        self.dual_init = dual_init
        self.register_fp32_buffer("dual", torch.tensor(float(dual_init), dtype=torch.float32))

    def needs_frozen_reference(self) -> bool:
        return self.retain_loss == "kl"  # λ may start at 0 and grow: dual_init alone does not decide

    def needed_data(self) -> dict[str, str]:
        missing = "PDU constrains the retain loss on data.retain, which is not set; add a retain source"
        return {**super().needed_data(), "retain": missing}

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        """The Lagrangian at the current λ; then one projected dual-ascent step on λ."""
        forget = batch["forget"]
        logits = self.lm_outputs(forget, "forget")
        forget_loss = logit_margin_flattening_loss(logits, forget["labels"], num_tokens=token_count(forget))
        retain = self.retain_term(batch)
        dual = self.dual.clone()
        # The global batch's retain loss (each rank's term is its share of the global mean), so λ is one on all ranks.
        global_retain = mean_over_ranks(retain.detach(), torch.ones((), device=retain.device))
        with torch.no_grad():
            self.dual.add_(self.dual_step_size * (global_retain - self.epsilon)).clamp_(min=0.0)
        return {"loss": forget_loss + dual * retain, "forget": forget_loss, "retain": retain, "dual": dual}
