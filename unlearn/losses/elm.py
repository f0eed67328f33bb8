"""ELM (Gandikota et al. 2024, "Erasing Conceptual Knowledge from Language Models", arXiv:2410.02760)."""

from __future__ import annotations

import torch
from torch import Tensor

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses.nll import token_denominator


def elm_target_logits(logits: Tensor, novice_logits: Tensor, expert_logits: Tensor, *, eta: float) -> Tensor:
    """ELM's erased distribution: the original's logits moved away from what an expert's context adds.

    Paper: Gandikota et al. 2024, "Erasing Conceptual Knowledge from Language Models", arXiv:2410.02760.

    ``z* = z + η·(z⁻ − z⁺)``, so ``softmax(z*) ∝ P(x_t|x_<t)·(P(x_t|c⁻, x_<t) / P(x_t|c⁺, x_<t))^η``: by Bayes,
    ``P(x)·(P(c⁻|x) / P(c⁺|x))^η``, the text made likelier to come from a novice (c⁻) than from an expert (c⁺).
    Logits or log-probs give the same softmax (they differ by a constant per position).

    Legend: z, z⁻, z⁺ the original model's logits on x, on c⁻ + x and on c⁺ + x, aligned on the positions of x;
    η ≥ 0 the erasure strength (0 gives z back).

    Args:
        logits: (B, T, V) z.
        novice_logits: (B, T, V) z⁻.
        expert_logits: (B, T, V) z⁺.
        eta: η.

    Returns:
        (B, T, V) z*, detached, at least float32.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    z, novice, expert = (t.detach().to(dtype) for t in (logits, novice_logits, expert_logits))
    return z + eta * (novice - expert)


def elm_erase_loss(
    policy_logits: Tensor,
    logits: Tensor,
    novice_logits: Tensor,
    expert_logits: Tensor,
    labels: Tensor,
    *,
    eta: float = 1000.0,
    num_tokens: Tensor | None = None,
) -> Tensor:
    """ELM's erase term: cross entropy of the policy to the original's distribution with the concept erased.

    Paper: Gandikota et al. 2024, "Erasing Conceptual Knowledge from Language Models", arXiv:2410.02760.

    ``L = Σ_{b,t} m_{b,t} · CE(softmax(z*_{b,t}), π_{b,t}) / N``, ``z* = z + η·(z⁻ − z⁺)`` (``elm_target_logits``),
    ``CE(q, π) = −Σ_v q_v log π_v``. KL(q ‖ π) differs by the constant H(q) and has the same gradient.

    Legend: π = softmax(policy logits); z, z⁻, z⁺ the original model's logits on x, c⁻ + x and c⁺ + x (constants);
    η erasure strength; m_{b,t} = 1 where ``labels[b, t+1]`` is an answer token; N = ``num_tokens``, else
    ``Σ_{b,t} m_{b,t}``.

    Args:
        policy_logits: (B, T, V) policy logits on forget sequences x.
        logits: (B, T, V) z.
        novice_logits: (B, T, V) z⁻.
        expert_logits: (B, T, V) z⁺.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        eta: η.
        num_tokens: the denominator (default the answer tokens here); the global batch's per rank when sharded.

    Returns:
        Scalar tensor; 0.0 when no answer token exists.
    """
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
    target = elm_target_logits(logits[:, :-1], novice_logits[:, :-1], expert_logits[:, :-1], eta=eta)  # (B, T-1, V)
    logq = torch.log_softmax(policy_logits[:, :-1].to(target.dtype), dim=-1)  # (B, T-1, V)
    cross_entropy = -(torch.softmax(target, dim=-1) * logq).sum(dim=-1)  # (B, T-1)
    return torch.where(mask, cross_entropy, 0.0).sum() / token_denominator(mask.sum(), num_tokens)
