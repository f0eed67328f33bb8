"""The entropy objective added to a forget method: concentrate forget outputs so sampling cannot leak the answer."""

from __future__ import annotations

import torch

from unlearn.losses import entropy_objective, token_entropy
from unlearn.methods.base import token_count
from unlearn.methods.divergence import NPO, GradDiff, RetainRegularised


class EntropyRegularised(RetainRegularised):
    """Adds ``λ_f·H(forget) + λ_r·H(retain)`` to the objective of the method it is combined with.

    Paper: Scholten et al. 2025, "A Probabilistic Perspective on Unlearning and Alignment for Large Language
    Models", ICLR 2025, arXiv:2410.03523.

    Combine by inheritance, entropy first (see NPOEntropy below): the method's objective is unchanged and, as a
    training step shares each role's outputs (`sharing_outputs`), the entropies read the very policy outputs it
    computed this step, one forward per role, so the fused kernel serves both.
    """

    def __init__(
        self, *, lambda_forget: float = 1.0, lambda_retain: float = -0.25, temperature: float = 1.0, **kwargs
    ) -> None:
        """
        Args:
            lambda_forget: λ_f; > 0 lowers the entropy on forget answers.
            lambda_retain: λ_r; < 0 raises the entropy on retain answers; 0 drops the retain entropy.
            temperature: T > 0 of the next-token distributions.
            **kwargs: see the method combined with it.
        """
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.lambda_forget = lambda_forget
        self.lambda_retain = lambda_retain
        self.temperature = temperature

    def needed_data(self) -> dict[str, str]:
        if self.lambda_retain == 0:
            return super().needed_data()
        missing = f"lambda_retain={self.lambda_retain} raises the entropy on data.retain, which is not set"
        return {**super().needed_data(), "retain": f"{missing}; add a retain source or set lambda_retain: 0"}

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.fused_logprob:  # one kernel call gives each role its log-probs and entropies
            for role in ["forget"] + (["retain"] if self.lambda_retain != 0 else []):
                self.lm_outputs(batch[role], role).entropy_temperature = self.temperature
        terms = super().objective(batch)
        forget = batch["forget"]
        if self.lambda_retain == 0:  # no retain entropy, so no retain forward for it
            h_forget = token_entropy(
                self.lm_outputs(forget, "forget"),
                forget["labels"],
                temperature=self.temperature,
                num_tokens=token_count(forget),
            )
            return {**terms, "loss": terms["loss"] + self.lambda_forget * h_forget, "entropy_forget": h_forget}
        retain = batch["retain"]
        total, h_forget, h_retain = entropy_objective(
            self.lm_outputs(forget, "forget"),
            forget["labels"],
            self.lm_outputs(retain, "retain"),
            retain["labels"],
            lambda_forget=self.lambda_forget,
            lambda_retain=self.lambda_retain,
            temperature=self.temperature,
            forget_tokens=token_count(forget),
            retain_tokens=token_count(retain),
        )
        return {**terms, "loss": terms["loss"] + total, "entropy_forget": h_forget, "entropy_retain": h_retain}


class NPOEntropy(EntropyRegularised, NPO):
    """NPO plus the entropy objective: NPO lowers the answer's likelihood, the entropy concentrates what replaces it."""


class GradDiffEntropy(EntropyRegularised, GradDiff):
    """GradDiff plus the entropy objective (retain_weight=0 makes the forget part plain GA)."""
