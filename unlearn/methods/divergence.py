"""Divergence-driven methods: push the policy away from the forget answers, hold it on the retain data."""

from __future__ import annotations

from typing import Literal

import torch

from unlearn.checks import refuse
from unlearn.losses import (
    ceu_loss,
    drop_first_answer_tokens,
    gradient_ascent_loss,
    kl_to_reference,
    mean_token_nll,
    npo_loss,
    satimp_loss,
    sequence_nll,
    simnpo_loss,
    undial_loss,
    wga_loss,
)
from unlearn.methods.base import FUSED_ONLY, UnlearnModule, token_count, token_count_in
from unlearn.methods.reference import cache_sequence_nll, frozen_copy


class GradientAscent(UnlearnModule):
    """GA: maximise the forget NLL; the simplest baseline, and the one that collapses fastest."""

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        loss = gradient_ascent_loss(self.lm_outputs(forget, "forget"), forget["labels"], num_tokens=token_count(forget))
        return {"loss": loss}


class RetainRegularised(UnlearnModule):
    """Adds retain_weight·L_r on retain data (NLL, or KL to the reference) to a forget objective."""

    renamed_args = {"alpha": "retain_weight"}

    def __init__(self, *, retain_weight: float = 1.0, retain_loss: Literal["nll", "kl"] = "nll", **kwargs) -> None:
        """
        Args:
            retain_weight: weight of the retain term; 0 drops it (and the need for retain data).
            retain_loss: nll on retain answers, or kl = KL(π_ref ‖ π) on retain answer tokens (frozen reference).
            **kwargs: see UnlearnModule.
        """
        super().__init__(**kwargs)
        if retain_weight < 0:
            refuse(
                [
                    f"model.init_args.retain_weight={retain_weight} would reward a worse retain loss; set "
                    "retain_weight >= 0 (0 drops it)"
                ]
            )
        self.retain_weight = retain_weight
        self.retain_loss = retain_loss
        if self.fused_logprob and retain_weight > 0 and retain_loss == "kl":
            refuse([f"retain_loss: kl compares whole next-token distributions, which {FUSED_ONLY} or retain_loss: nll"])

    def needs_frozen_reference(self) -> bool:
        """Whether the objective reads a frozen copy of the initial model during training."""
        return self.retain_weight > 0 and self.retain_loss == "kl"

    def prepare(self) -> None:
        if self.needs_frozen_reference():
            self.reference = frozen_copy(self.model)

    def needed_data(self) -> dict[str, str]:
        if self.retain_weight == 0:
            return super().needed_data()
        missing = (
            f"{type(self).__name__} with retain_weight={self.retain_weight} trains on data.retain, which is not set"
        )
        return {
            **super().needed_data(),
            "retain": f"{missing}; add a retain source or set model.init_args.retain_weight: 0",
        }

    def retain_term(self, batch: dict) -> torch.Tensor:
        """The retain loss on this step's retain rows, before retain_weight."""
        retain = batch["retain"]
        if self.retain_loss == "nll":
            return mean_token_nll(self.lm_outputs(retain, "retain"), retain["labels"], num_tokens=token_count(retain))
        logits = self.lm_outputs(retain, "retain")  # logits: retain_loss kl refuses fused_logprob
        with torch.no_grad():
            reference_logits = self.reference(
                input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]
            ).logits
        return kl_to_reference(logits, reference_logits, retain["labels"], num_tokens=token_count(retain))

    def with_retain(self, forget_loss: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Total loss and its terms, for logging."""
        if self.retain_weight == 0:
            return {"loss": forget_loss, "forget": forget_loss}
        retain = self.retain_term(batch)
        return {"loss": forget_loss + self.retain_weight * retain, "forget": forget_loss, "retain": retain}


class GradDiff(RetainRegularised):
    """GradDiff: γ·(−NLL on forget) + retain_weight·L_r, ascent on forget balanced by descent on retain."""

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
        ascent = gradient_ascent_loss(
            self.lm_outputs(forget, "forget"), forget["labels"], num_tokens=token_count(forget)
        )
        return self.with_retain(self.gamma * ascent, batch)


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
        """The reference roles must be served; cached, the initial model scores their rows before any step."""
        data = self.trainer.datamodule
        missing = [role for role in self.reference_roles if role not in data.roles()]
        if missing:
            raise ValueError(f"{type(self).__name__} needs data.{missing[0]}; add that source to the data section")
        if self.reference_strategy == "cached":
            restored = getattr(self, "restored_caches", {})
            for role in self.reference_roles:
                name = f"reference_cache_{role}"
                cache = restored.get(name)
                if cache is None:
                    loader = data.ordered_dataloader(role)
                    cache = cache_sequence_nll(self.model, loader, role, len(data.rows_of(role)), self.outputs_of)
                # Persistent: a resumed run must score against the initial model, not the one it restores.
                self.register_fp32_buffer(name, cache.to(self.device))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Keep the cached reference scores of a checkpoint: by on_fit_start the policy is no longer the reference."""
        state = checkpoint.get("state_dict", {})
        self.restored_caches = {k: v for k, v in state.items() if k.startswith("reference_cache_")}

    def reference_nll(self, inputs: dict, role: str = "forget") -> torch.Tensor:
        """Summed answer NLL of a batch's rows under the reference (B,)."""
        if self.reference_strategy == "cached":
            return getattr(self, f"reference_cache_{role}")[inputs["index"]]
        with torch.no_grad():
            return sequence_nll(self.outputs_of(self.reference, inputs), inputs["labels"])[0]


class NPO(ReferenceScored):
    """NPO: a bounded, reference-relative ascent that slows down once the forget answers are unlikely."""

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.with_retain(self.forget_loss(batch), batch)

    def forget_loss(self, batch: dict) -> torch.Tensor:
        """NPO's forget term on this step's forget rows."""
        forget = batch["forget"]
        policy_nll, _ = sequence_nll(self.lm_outputs(forget, "forget"), forget["labels"])
        return npo_loss(policy_nll, self.reference_nll(forget), beta=self.beta)


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
        policy_nll, lengths = sequence_nll(self.lm_outputs(forget, "forget"), forget["labels"])
        return self.with_retain(simnpo_loss(policy_nll, lengths, beta=self.beta, gamma=self.gamma), batch)


class WGA(RetainRegularised):
    """WGA: gradient ascent with each answer token weighted by its detached probability^β, so ascent self-limits."""

    def __init__(self, *, beta: float = 1.0, **kwargs) -> None:
        """
        Args:
            beta: power of the token weight p^β, the paper's α (0 is GA).
            **kwargs: see RetainRegularised.
        """
        super().__init__(**kwargs)
        self.beta = beta

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        outputs = self.lm_outputs(forget, "forget")
        loss = wga_loss(outputs, forget["labels"], beta=self.beta, num_tokens=token_count(forget))
        return self.with_retain(loss, batch)


class SatImp(RetainRegularised):
    """SatImp: gradient ascent with token weights p^β₁·(1−p)^β₂, saturation times importance."""

    def __init__(self, *, beta1: float = 5.0, beta2: float = 1.0, **kwargs) -> None:
        """
        Args:
            beta1: saturation power β₁.
            beta2: importance power β₂.
            **kwargs: see RetainRegularised.
        """
        super().__init__(**kwargs)
        self.beta1 = beta1
        self.beta2 = beta2

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        loss = satimp_loss(
            self.lm_outputs(forget, "forget"),
            forget["labels"],
            beta1=self.beta1,
            beta2=self.beta2,
            num_tokens=token_count(forget),
        )
        return self.with_retain(loss, batch)


class CEU(RetainRegularised):
    """CE-U: cross entropy to the policy's own detached distribution with the answer token's logit at −∞."""

    full_logits = True

    def __init__(self, *, ignore_first_answer_tokens: int = 1, **kwargs) -> None:
        """
        Args:
            ignore_first_answer_tokens: answer tokens per row left out of the loss (the paper's footnote and its
                public code skip the first one); 0 counts every answer token.
            **kwargs: see RetainRegularised.
        """
        super().__init__(**kwargs)
        if ignore_first_answer_tokens < 0:
            raise ValueError(f"ignore_first_answer_tokens must be >= 0, got {ignore_first_answer_tokens}")
        self.ignore_first_answer_tokens = ignore_first_answer_tokens

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        labels = drop_first_answer_tokens(forget["labels"], self.ignore_first_answer_tokens)
        loss = ceu_loss(self.lm_outputs(forget, "forget"), labels, num_tokens=token_count_in(labels, forget))
        return self.with_retain(loss, batch)


class UNDIAL(RetainRegularised):
    """UNDIAL: self-distillation to the frozen initial model's logits with the answer token's logit lowered by β."""

    full_logits = True

    def __init__(self, *, beta: float = 10.0, **kwargs) -> None:
        """
        Args:
            beta: how far the answer token's reference logit is lowered (the paper uses 3-30).
            **kwargs: see RetainRegularised; the paper trains without a retain term (retain_weight=0).
        """
        super().__init__(**kwargs)
        self.beta = beta

    def needs_frozen_reference(self) -> bool:
        return True  # full reference logits on every forget batch: too large to cache

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        with torch.no_grad():
            reference = self.reference(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
        logits = self.lm_outputs(forget, "forget")
        loss = undial_loss(logits, reference, forget["labels"], beta=self.beta, num_tokens=token_count(forget))
        return self.with_retain(loss, batch)
