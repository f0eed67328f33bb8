"""Self-distillation to a target with the true token's logit lowered: forget one token, keep the rest of the ranking."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses.nll import token_denominator


def undial_loss(
    policy_logits: Tensor,
    reference_logits: Tensor,
    labels: Tensor,
    *,
    beta: float = 10.0,
    num_tokens: Tensor | None = None,
) -> Tensor:
    """UNDIAL: distil the reference with the answer token's logit lowered by β, a bounded target, unlike ascent.

    Paper: Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
    Language Models", arXiv:2402.10052.

    ``L = Σ_{b,t} m_{b,t} · CE(q_{b,t}, π_{b,t}) / Σ_{b,t} m_{b,t}``, ``q_{b,t} = softmax(z^ref_{b,t} − β·e_{y})``,
    ``CE(q, π) = −Σ_v q_v log π_v``, ``y = labels[b, t+1]``.

    The value is the cross entropy, as in the public code (open-unlearning ``compute_undial_loss``); KL(q ‖ π) differs
    by the constant H(q) and has the same gradient. That code averages over every position, prompt and padding
    included; here only answer tokens count, the tokens whose logits the paper adjusts.

    Legend: z^ref reference logits (constants); π = softmax(policy logits); e_y one-hot of the answer token;
    β ≥ 0 how far the answer logit is lowered; m_{b,t} = 1 where ``labels[b, t+1]`` is an answer token.

    Args:
        policy_logits: (B, T, V) policy logits on forget sequences.
        reference_logits: (B, T, V) reference logits; detached.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        beta: β.
        num_tokens: the denominator (default the answer tokens here); the global batch's per rank when sharded.

    Returns:
        Scalar tensor; 0.0 when no answer token exists.
    """
    return _cross_entropy_to_lowered(policy_logits, reference_logits, labels, beta, num_tokens)


def ceu_loss(logits: Tensor, labels: Tensor, *, num_tokens: Tensor | None = None) -> Tensor:
    """CE-U: distil the policy's own distribution with the answer token removed, a loss whose gradient stays bounded.

    Paper: Yang et al. 2025, "CE-U: Cross Entropy Unlearning", arXiv:2503.01224.

    ``L = Σ_{b,t} m_{b,t} · CE(q_{b,t}, π_{b,t}) / N``, ``q_{b,t} = softmax(sg(z_{b,t}) − ∞·e_{y})``
    (the answer logit set to −∞), ``CE(q, π) = −Σ_v q_v log π_v``. Its gradient in z is ``π − q``: the answer token
    is pushed down by π_y, the others pulled to their renormalised share.

    Legend: z policy logits; sg stop-gradient; π = softmax(z); e_y one-hot of ``y = labels[b, t+1]``;
    m_{b,t} = 1 where ``labels[b, t+1]`` is an answer token; N = ``num_tokens``, else ``Σ_{b,t} m_{b,t}``.

    Args:
        logits: (B, T, V) policy logits on forget sequences, V ≥ 2.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        num_tokens: the denominator (default the answer tokens here); the global batch's per rank when sharded.

    Returns:
        Scalar tensor; 0.0 when no answer token exists.
    """
    return _cross_entropy_to_lowered(logits, logits, labels, math.inf, num_tokens)


def drop_first_answer_tokens(labels: Tensor, count: int) -> Tensor:
    """Labels with the first `count` answer tokens of each row ignored (CE-U's footnote: they carry little of the fact).

    Args:
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        count: answer tokens to drop per row, ≥ 0.

    Returns:
        (B, T) labels.
    """
    answer = labels != IGNORE_INDEX
    return labels.masked_fill(answer & (answer.cumsum(dim=-1) <= count), IGNORE_INDEX)


def _cross_entropy_to_lowered(
    logits: Tensor, target_logits: Tensor, labels: Tensor, lower_by: float, num_tokens: Tensor | None
) -> Tensor:
    """Answer-token mean of CE(softmax(sg(target) − lower_by·e_y), softmax(logits)); shapes as in the callers."""
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logq = torch.log_softmax(logits[:, :-1].to(dtype), dim=-1)  # (B, T-1, V)
    target = target_logits[:, :-1].detach().to(dtype)  # (B, T-1, V)
    answer = torch.where(mask, labels[:, 1:], 0).unsqueeze(-1)  # (B, T-1, 1); ignore_index never reaches scatter
    lowered = target.scatter_add(-1, answer, torch.full_like(answer, -lower_by, dtype=dtype))
    cross_entropy = -(torch.softmax(lowered, dim=-1) * logq).sum(dim=-1)  # (B, T-1)
    return torch.where(mask, cross_entropy, 0.0).sum() / token_denominator(mask.sum(), num_tokens)
