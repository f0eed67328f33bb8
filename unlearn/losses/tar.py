"""Tamper resistance: what the attacked model should still fail at, and how the attack's trajectory is weighted."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from unlearn.losses.entropy import token_entropy
from unlearn.losses.nll import LMHeadInputs, mean_token_nll, token_denominator


def tamper_resistance_loss(
    logits: Tensor | LMHeadInputs,
    labels: Tensor,
    *,
    adversary_loss: Literal["max_entropy", "nll"] = "max_entropy",
    num_tokens: Tensor | None = None,
) -> Tensor:
    """The tamper-resistance loss L_TR on held-out forget data at the attacked weights: low when the attack failed.

    Paper: Tamirisa et al. 2024, "Tamper-Resistant Safeguards for Open-Weight LLMs", arXiv:2408.00761.

    ``max_entropy``: ``L_TR = −H``, H the answer-token mean entropy of ``token_entropy`` (the paper's choice for
    weaponization knowledge, its ``max_entropy`` loss; the authors' code averages over every position, here over the
    answer tokens the attack learns). ``nll``: ``L_TR = −NLL``, the attacked model's forget NLL maximised (unbounded).

    Args:
        logits: (B, T, V) attacked model's next-token logits on held-out forget rows, or ``LMHeadInputs``.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        adversary_loss: max_entropy or nll.
        num_tokens: the denominator instead of the batch's answer tokens (see ``mean_token_nll``).

    Returns:
        Scalar tensor (minimised).
    """
    if adversary_loss == "max_entropy":
        return -token_entropy(logits, labels, num_tokens=num_tokens)
    if adversary_loss == "nll":
        return -mean_token_nll(logits, labels, num_tokens=num_tokens)
    raise ValueError(f"adversary_loss must be max_entropy or nll, got {adversary_loss!r}")


def trajectory_weights(steps: int, *, schedule_lambda: float = 0.0) -> Tensor:
    """How much L_TR after each of the K inner attack steps counts, so that late (stronger) attacks can weigh more.

    Paper: Tamirisa et al. 2024, "Tamper-Resistant Safeguards for Open-Weight LLMs", arXiv:2408.00761.

    ``w_k = exp(λ·k) / Σ_{j=1..K} exp(λ·j)``, k = 1..K; λ = 0 is the plain mean over the trajectory. (The authors'
    ``use_weighting_schedule`` also weighs later steps exponentially; this normalised form is ours.)

    Legend: K inner steps; λ ``schedule_lambda``.

    Args:
        steps: K ≥ 1.
        schedule_lambda: λ; > 0 weighs later steps more.

    Returns:
        (K,) float32 weights summing to 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.softmax(schedule_lambda * torch.arange(1, steps + 1, dtype=torch.float32), dim=0)


def hidden_distance(hidden: Tensor, reference: Tensor, mask: Tensor, *, num_tokens: Tensor | None = None) -> Tensor:
    """TAR's representation retain term: keep every layer's retain activations where the starting model had them.

    Paper: Tamirisa et al. 2024, "Tamper-Resistant Safeguards for Open-Weight LLMs", arXiv:2408.00761.

    ``L = (1/L) Σ_ℓ Σ_{b,t} m_{b,t} ‖h_ℓ,b,t − h^ref_ℓ,b,t‖₂ / N``, N = ``num_tokens`` or else ``Σ m``
    (an L2 norm per token, not squared, as in the authors' code).

    Legend: h, h^ref hidden states of the policy and the frozen reference; ℓ over the L layers given; m the
    tokens that count.

    Args:
        hidden: (L, B, T, D) policy hidden states.
        reference: (L, B, T, D) reference hidden states; a constant (detached).
        mask: (B, T) bool or 0/1.
        num_tokens: the denominator per layer (see ``masked_mse``).

    Returns:
        Scalar tensor.
    """
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    norms = torch.linalg.vector_norm(hidden.to(dtype) - reference.detach().to(dtype), dim=-1)  # (L, B, T)
    mask = mask.bool()
    total = torch.where(mask, norms, 0.0).sum() / hidden.shape[0]
    return total / token_denominator(mask.sum().to(dtype), num_tokens)
