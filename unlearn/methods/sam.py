"""NPO+SAM: the forget gradient taken at the worst nearby weights, so a few relearning steps cannot undo it."""

from __future__ import annotations

import torch

from unlearn.methods.base import SelfBackward
from unlearn.methods.divergence import NPO
from unlearn.strategies import average_over_ranks_


class NPOSAM(SelfBackward, NPO):
    """NPO with sharpness-aware minimisation of the forget term; the retain term keeps its plain gradient.

    Paper: Fan et al. 2025, "Towards LLM Unlearning Resilient to Relearning Attacks: A Sharpness-Aware Minimization
    Perspective and Beyond", arXiv:2502.05374.

    ``min_θ max_{‖δ‖≤ρ} L_f(θ + δ) + w·L_r(θ)`` (w = retain_weight), δ to first order ``ε = ρ·g/‖g‖``,
    ``g = ∇L_f(θ)``; each step applies ``∇L_f(θ + ε) + w·∇L_r(θ)`` at θ. Costs two forget forward/backward passes per
    step. Manual optimisation: the trainer's gradient clipping and accumulation do not apply; θ is restored from a
    copy, exactly in any dtype (in bf16, θ + ε − ε is not θ). The copy replaces ε's own buffer: ε is built in the
    gradients' memory.
    """

    whole_weights_use = "perturbs every trainable weight in place by the all-reduced gradient"
    whole_weights_instead = ", or use NPO (unlearn.methods.NPO) under DeepSpeed or FSDP"

    def __init__(self, *, rho: float = 0.01, **kwargs) -> None:
        """
        Args:
            rho: ρ ≥ 0, radius of the weight perturbation (L2 over all trainable parameters); 0 is plain NPO.
            **kwargs: see NPO.
        """
        super().__init__(**kwargs)
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        self.rho = rho

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        """Back-propagates ∇L_f(θ+ε) + retain_weight·∇L_r(θ) into .grad and returns the terms, detached, for logging."""
        forget_sharp, forget = self.sharpness_aware_forget(batch)
        terms = {"loss": forget_sharp.detach(), "forget": forget.detach(), "forget_sharp": forget_sharp.detach()}
        if self.retain_weight > 0:
            retain = self.retain_term(batch)
            self.manual_backward(self.retain_weight * retain)
            terms |= {"loss": terms["loss"] + self.retain_weight * retain.detach(), "retain": retain.detach()}
        return terms

    def sharpness_aware_forget(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_f(θ+ε), L_f(θ)), with ∇L_f(θ+ε) accumulated into .grad and the parameters back at θ."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        forget = self.forget_loss(batch)
        if self.rho == 0:
            self.manual_backward(forget)
            return forget, forget
        grads = torch.autograd.grad(forget, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        average_over_ranks_(grads)  # the global batch's gradient, so every DDP rank perturbs its weights alike
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        torch._foreach_mul_(grads, (self.rho / norm.clamp(min=1e-12)).item())  # ε, in place
        with torch.no_grad():
            start = [p.detach().clone() for p in params]
            torch._foreach_add_(params, grads)
        del grads
        forget_sharp = self.forget_loss(batch)
        self.manual_backward(forget_sharp)
        with torch.no_grad():
            torch._foreach_copy_(params, start)
        return forget_sharp, forget
