"""Token-reweighted gradient ascent: each answer token's push scaled by a detached function of its probability."""

from __future__ import annotations

import torch
from torch import Tensor

from unlearn.losses.nll import LMHeadInputs, shifted_logprobs, token_denominator


def wga_loss(
    logits: Tensor | LMHeadInputs, labels: Tensor, *, beta: float = 1.0, num_tokens: Tensor | None = None
) -> Tensor:
    """Weighted gradient ascent: tokens the policy already finds unlikely stop pulling, so GA cannot run away.

    Paper: Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond",
    arXiv:2502.19301.

    ``L = Σ_{b,t} m_{b,t} · sg(p_{b,t}^β) · log p_{b,t} / Σ_{b,t} m_{b,t}``; 0.0 when no answer token exists.

    Legend: p_{b,t} = π(y_{t+1} | x, y_{≤t}) the policy's probability of the answer token (``shifted_logprobs``);
    m the answer mask; sg stop-gradient; β ≥ 0 the weight's power (the paper's α; β = 0 is GA).

    Args:
        logits: (B, T, V) policy logits on forget sequences, or ``LMHeadInputs``.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        beta: β.
        num_tokens: the denominator (default the answer tokens here); the global batch's per rank when sharded.

    Returns:
        Scalar tensor.
    """
    logp, mask = shifted_logprobs(logits, labels)
    return _reweighted_ascent(logp, mask, logp.detach().exp() ** beta, num_tokens)


def satimp_loss(
    logits: Tensor | LMHeadInputs,
    labels: Tensor,
    *,
    beta1: float = 5.0,
    beta2: float = 1.0,
    num_tokens: Tensor | None = None,
) -> Tensor:
    """SatImp: weight each token by saturation (still likely) times importance (not yet certain), then ascend.

    Paper: Yang et al. 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", ICML 2025,
    arXiv:2505.11953.

    ``L = Σ_{b,t} m_{b,t} · sg(p_{b,t}^{β₁} · (1 − p_{b,t})^{β₂}) · log p_{b,t} / Σ_{b,t} m_{b,t}``; 0.0 when no
    answer token exists. This is the form of the authors' code (tmlr-group/SatImp, ``satimp``: weight
    ``p**β₁ · (1−p)**β₂`` on the token CE, mean over answer tokens; defaults β₁ = 5, β₂ = 1); the paper's text was not
    reachable from here to compare. p^{β₁} is the saturation weight (low weight once a token is unlikely),
    (1 − p)^{β₂} the importance weight (the opposite); β₁ = β₂ = 0 is GA, β₂ = 0 is WGA with β = β₁.

    Legend: p_{b,t} the policy's probability of answer token t+1 (``shifted_logprobs``); m the answer mask;
    sg stop-gradient.

    Args:
        logits: (B, T, V) policy logits on forget sequences, or ``LMHeadInputs``.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        beta1: β₁ ≥ 0, saturation power.
        beta2: β₂ ≥ 0, importance power.
        num_tokens: the denominator (default the answer tokens here); the global batch's per rank when sharded.

    Returns:
        Scalar tensor.
    """
    logp, mask = shifted_logprobs(logits, labels)
    p = logp.detach().exp()
    return _reweighted_ascent(logp, mask, p**beta1 * (1 - p) ** beta2, num_tokens)


def _reweighted_ascent(logp: Tensor, mask: Tensor, weights: Tensor, num_tokens: Tensor | None) -> Tensor:
    """Token mean of w · log p over answer tokens, the ascent both losses share (all (B, T-1))."""
    return torch.where(mask, weights * logp, 0.0).sum() / token_denominator(mask.sum(), num_tokens)
