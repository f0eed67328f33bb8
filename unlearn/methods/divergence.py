"""Divergence-driven methods: push the policy away from the forget answers, hold it on the retain data."""

from __future__ import annotations

from typing import Literal

import torch

from unlearn.losses import gradient_ascent_loss, kl_to_reference, mean_token_nll, npo_loss, sequence_nll, simnpo_loss
from unlearn.methods.base import UnlearnModule
from unlearn.methods.reference import cache_sequence_nll, frozen_copy


class GradientAscent(UnlearnModule):
    """GA: maximise the forget NLL; the simplest baseline, and the one that collapses fastest."""

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        return {"loss": gradient_ascent_loss(self.lm_outputs(forget), forget["labels"])}


class RetainRegularised(UnlearnModule):
    """Adds α·L_r on retain data (NLL, or KL to the reference) to a forget objective."""

    def __init__(self, *, alpha: float = 1.0, retain_loss: Literal["nll", "kl"] = "nll", **kwargs) -> None:
        """
        Args:
            alpha: weight of the retain term; 0 drops it (and the need for retain data).
            retain_loss: nll on retain answers, or kl = KL(π_ref ‖ π) on retain answer tokens (frozen reference).
            **kwargs: see UnlearnModule.
        """
        super().__init__(**kwargs)
        self.alpha = alpha
        self.retain_loss = retain_loss

    def needs_frozen_reference(self) -> bool:
        """Whether the objective reads a frozen copy of the initial model during training."""
        return self.alpha > 0 and self.retain_loss == "kl"

    def prepare(self) -> None:
        if self.needs_frozen_reference():
            self.reference = frozen_copy(self.model)

    def on_fit_start(self) -> None:
        if self.alpha > 0 and "retain" not in self.trainer.datamodule.rows:
            raise ValueError(f"{type(self).__name__} with alpha={self.alpha} needs data.retain; add one or set alpha=0")

    def retain_term(self, batch: dict) -> torch.Tensor:
        """α-free retain loss on this step's retain rows."""
        retain = batch["retain"]
        if self.retain_loss == "nll":
            return mean_token_nll(self.lm_outputs(retain), retain["labels"])
        logits = self(retain)
        with torch.no_grad():
            reference_logits = self.reference(
                input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]
            ).logits
        return kl_to_reference(logits, reference_logits, retain["labels"])

    def with_retain(self, forget_loss: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Total loss and its terms, for logging."""
        if self.alpha == 0:
            return {"loss": forget_loss, "forget": forget_loss}
        retain = self.retain_term(batch)
        return {"loss": forget_loss + self.alpha * retain, "forget": forget_loss, "retain": retain}


class GradDiff(RetainRegularised):
    """GradDiff: γ·(−NLL on forget) + α·L_r, ascent on forget balanced by descent on retain."""

    def __init__(self, *, gamma: float = 1.0, **kwargs) -> None:
        """
        Args:
            gamma: weight of the forget (ascent) term.
            **kwargs: see RetainRegularised.
        """
        super().__init__(**kwargs)
        self.gamma = gamma

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        return self.with_retain(self.gamma * gradient_ascent_loss(self.lm_outputs(forget), forget["labels"]), batch)


class ReferenceScored(RetainRegularised):
    """A forget objective that compares sequence NLLs with the reference's, cached or from a frozen copy."""

    reference_roles: tuple[str, ...] = ("forget",)

    def __init__(self, *, beta: float = 0.1, reference: Literal["cached", "frozen"] = "cached", **kwargs) -> None:
        """
        Args:
            beta: inverse temperature of the log-ratio.
            reference: cached = reference NLLs of the forget rows computed once before training (no second
                model); frozen = a frozen copy of the initial model scores every batch.
            **kwargs: see RetainRegularised.
        """
        super().__init__(**kwargs)
        self.beta = beta
        self.reference_strategy = reference

    def needs_frozen_reference(self) -> bool:
        return self.reference_strategy == "frozen" or super().needs_frozen_reference()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        data = self.trainer.datamodule
        missing = [role for role in self.reference_roles if role not in data.rows]
        if missing:
            raise ValueError(f"{type(self).__name__} needs data.{missing[0]}; add that source to the data section")
        if self.reference_strategy == "cached":
            for role in self.reference_roles:
                cache = cache_sequence_nll(self.model, data.ordered_dataloader(role), role, len(data.rows[role]))
                self.register_buffer(f"reference_cache_{role}", cache, persistent=False)

    def reference_nll(self, inputs: dict, role: str = "forget") -> torch.Tensor:
        """Summed answer NLL of a batch's rows under the reference (B,)."""
        if self.reference_strategy == "cached":
            return getattr(self, f"reference_cache_{role}")[inputs["index"]]
        with torch.no_grad():
            logits = self.reference(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            return sequence_nll(logits, inputs["labels"])[0]


class NPO(ReferenceScored):
    """NPO: a bounded, reference-relative ascent that slows down once the forget answers are unlikely."""

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        policy_nll, _ = sequence_nll(self.lm_outputs(forget), forget["labels"])
        return self.with_retain(npo_loss(policy_nll, self.reference_nll(forget), beta=self.beta), batch)


class SimNPO(RetainRegularised):
    """SimNPO: NPO without a reference, length-normalised, with a margin γ."""

    def __init__(self, *, beta: float = 2.5, gamma: float = 0.0, **kwargs) -> None:
        """
        Args:
            beta: inverse temperature.
            gamma: reward margin.
            **kwargs: see RetainRegularised.
        """
        super().__init__(**kwargs)
        self.beta = beta
        self.gamma = gamma

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        policy_nll, lengths = sequence_nll(self.lm_outputs(forget), forget["labels"])
        return self.with_retain(simnpo_loss(policy_nll, lengths, beta=self.beta, gamma=self.gamma), batch)
