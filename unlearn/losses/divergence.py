"""Forget objectives that push the policy's answer likelihood down, and the KL that keeps retain close."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses.nll import LMHeadInputs, mean_token_nll, token_denominator


def gradient_ascent_loss(logits: Tensor | LMHeadInputs, labels: Tensor, *, num_tokens: Tensor | None = None) -> Tensor:
    """Gradient ascent: the simplest forget baseline, unbounded below, so it collapses the model if run long.

    Paper: Jang et al. 2023, "Knowledge Unlearning for Mitigating Privacy Risks in LMs", arXiv:2210.01504.

    ``L = −NLL_π(f)``, NLL the token-mean answer NLL (``mean_token_nll``).

    Args:
        logits: (B, T, V) policy logits on forget sequences, or ``LMHeadInputs``.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        num_tokens: the token-mean denominator (see ``mean_token_nll``).

    Returns:
        Scalar tensor; 0.0 when no answer token exists.
    """
    return -mean_token_nll(logits, labels, num_tokens=num_tokens)


def npo_loss(nll_policy: Tensor, nll_reference: Tensor, *, beta: float = 0.1) -> Tensor:
    """NPO: a bounded gradient ascent whose push fades once the policy is below the reference.

    Paper: Zhang et al. 2024, "Negative Preference Optimization", arXiv:2404.05868.

    ``L = −(2/β) · mean_b log σ(−β · (−S_π + S_ref))``, where ``−S_π + S_ref = log π(y|x) − log π_ref(y|x)``.

    Legend: S_π, S_ref summed answer NLL of a forget sequence under policy and reference;
    β inverse temperature.

    Args:
        nll_policy: (B,) S_π.
        nll_reference: (B,) S_ref; a constant (detached).
        beta: β.

    Returns:
        Scalar tensor.
    """
    log_ratio = -nll_policy + nll_reference.detach()  # (B,)
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def simnpo_loss(nll_policy: Tensor, lengths: Tensor, *, beta: float = 2.5, gamma: float = 0.0) -> Tensor:
    """SimNPO: NPO without a reference, length-normalised so short answers are not over-forgotten.

    Paper: Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
    Unlearning", arXiv:2410.07163.

    ``L = −(2/β) · mean_{b: |y_b|>0} log σ(β · S_π,b / |y_b| − γ)``; 0.0 when every |y_b| is 0.

    Legend: S_π summed answer NLL under the policy; |y| answer length in tokens; β inverse temperature;
    γ reward margin.

    Args:
        nll_policy: (B,) S_π.
        lengths: (B,) |y|, int or float; rows with 0 are skipped.
        beta: β.
        gamma: γ.

    Returns:
        Scalar tensor.
    """
    lengths = lengths.to(nll_policy.dtype)
    valid = lengths > 0
    per_row = -F.logsigmoid(beta * nll_policy / lengths.clamp(min=1.0) - gamma)  # (B,)
    per_row = torch.where(valid, per_row, 0.0)
    return (2.0 / beta) * per_row.sum() / valid.sum().clamp(min=1)


def kl_to_reference(
    policy_logits: Tensor, reference_logits: Tensor, labels: Tensor, *, num_tokens: Tensor | None = None
) -> Tensor:
    """KL to the reference on answer tokens: a retain loss that keeps the whole distribution, not one label.

    Paper: used as the retain term of GradDiff/NPO in Maini et al. 2024, "TOFU", arXiv:2401.06121.

    ``L = Σ_{b,t} m_{b,t} · KL(π_ref(·|t) ‖ π(·|t)) / N``, N = ``num_tokens`` or else ``Σ_{b,t} m_{b,t}``,
    ``KL(p ‖ q) = Σ_v p_v (log p_v − log q_v)``.

    Legend: m_{b,t} = 1 where ``labels[b, t+1]`` is an answer token (logits at t predict token t+1).

    Args:
        policy_logits: (B, T, V) policy logits.
        reference_logits: (B, T, V) reference logits; constants (detached).
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        num_tokens: the denominator; the global batch's answer tokens per rank under data parallelism.

    Returns:
        Scalar tensor; 0.0 when no answer token exists.
    """
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
    dtype = torch.promote_types(policy_logits.dtype, torch.float32)
    logq = torch.log_softmax(policy_logits[:, :-1].to(dtype), dim=-1)  # (B, T-1, V)
    logp = torch.log_softmax(reference_logits[:, :-1].detach().to(dtype), dim=-1)  # (B, T-1, V)
    kl = F.kl_div(logq, logp, reduction="none", log_target=True).sum(dim=-1)  # (B, T-1)
    return torch.where(mask, kl, 0.0).sum() / token_denominator(mask.sum(), num_tokens)


def logit_margin_flattening_loss(logits: Tensor, labels: Tensor, *, num_tokens: Tensor | None = None) -> Tensor:
    """Logit-margin flattening: drive forget next-token distributions to uniform without a softmax to saturate.

    Paper: Entesari et al. 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language
    Models", arXiv:2506.05314 (the forget objective of PDU).

    ``L = Σ_{b,t} m_{b,t} · (max_v z_{b,t,v} − mean_v z_{b,t,v})² / N``; 0 exactly when every logit of a counted
    position is equal, i.e. the distribution is uniform (maximal entropy).

    Legend: z logits; m_{b,t} = 1 where ``labels[b, t+1]`` is an answer token (the positions that predict answer
    tokens, as everywhere in unlearn.losses). The public code (open-unlearning ``PDU``) masks the unshifted positions
    (those where ``labels[b, t]`` is an answer token), one position later. N = ``num_tokens``, else ``Σ_{b,t} m_{b,t}``.

    Args:
        logits: (B, T, V) policy logits on forget sequences.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        num_tokens: the denominator (default the answer tokens here); the global batch's per rank when sharded.

    Returns:
        Scalar tensor; 0.0 when no answer token exists.
    """
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
    z = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))  # (B, T-1, V)
    margin = z.amax(dim=-1) - z.mean(dim=-1)  # (B, T-1)
    return torch.where(mask, margin.square(), 0.0).sum() / token_denominator(mask.sum(), num_tokens)
