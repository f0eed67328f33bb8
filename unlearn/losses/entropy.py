"""Entropy of next-token distributions on answer tokens: lower it on forget so sampling cannot leak."""

from __future__ import annotations

import torch
from torch import Tensor

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses.nll import LMHeadInputs, token_denominator


def token_entropy(
    logits: Tensor | LMHeadInputs, labels: Tensor, *, temperature: float = 1.0, num_tokens: Tensor | None = None
) -> Tensor:
    """Mean entropy of the tempered next-token distribution over answer tokens, how spread sampling is.

    Paper: Scholten et al. 2025, "A Probabilistic Perspective on Unlearning and Alignment for Large Language
    Models", ICLR 2025, arXiv:2410.03523.

    ``H = Σ_{b,t} m_{b,t} · (−Σ_v p_{b,t,v} log p_{b,t,v}) / Σ_{b,t} m_{b,t}``, ``p_{b,t} = softmax(z_{b,t} / T)``;
    0.0 (still attached to ``logits``) when no answer token exists.

    Legend: z logits; T temperature; m_{b,t} = 1 where ``labels[b, t+1]`` is an answer token (logits at t
    predict token t+1, as in ``shifted_logprobs``). Uniform over V gives log V; one-hot gives 0.

    Args:
        logits: (B, T, V) next-token logits, or ``LMHeadInputs`` (the fused kernel, no (B, T, V) tensor).
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        temperature: T > 0.
        num_tokens: the denominator instead of the batch's answer tokens (see ``mean_token_nll``).

    Returns:
        Scalar tensor, in at least float32.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if isinstance(logits, LMHeadInputs):
        _, entropy, mask = logits.answer_token_outputs(
            labels, ignore_index=IGNORE_INDEX, temperature=temperature, with_entropy=True
        )
        return entropy.sum() / token_denominator(mask.sum(dim=-1).to(entropy.dtype), num_tokens)
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = torch.log_softmax(logits[:, :-1].to(dtype) / temperature, dim=-1)  # (B, T-1, V)
    entropy = -(logp.exp() * logp).sum(dim=-1)  # (B, T-1)
    return torch.where(mask, entropy, 0.0).sum() / token_denominator(mask.sum(dim=-1).to(entropy.dtype), num_tokens)


def entropy_objective(
    forget_logits: Tensor | LMHeadInputs,
    forget_labels: Tensor,
    retain_logits: Tensor | LMHeadInputs,
    retain_labels: Tensor,
    *,
    lambda_forget: float = 1.0,
    lambda_retain: float = -0.25,
    temperature: float = 1.0,
    forget_tokens: Tensor | None = None,
    retain_tokens: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Entropy regulariser added to an unlearning loss: concentrate forget outputs, keep retain outputs diverse.

    Paper: Scholten et al. 2025, "A Probabilistic Perspective on Unlearning and Alignment for Large Language
    Models", ICLR 2025, arXiv:2410.03523.

    ``L_H = λ_f · H(f) + λ_r · H(r)``, H the answer-token mean entropy of ``token_entropy``.

    Sign convention: L_H is ADDED to a loss that is minimised. λ_f > 0 therefore lowers the entropy on forget
    answers, so samples concentrate on the (unlearned) mode and repeated sampling stops surfacing the
    forgotten answer; λ_r < 0 raises the entropy on retain answers, counteracting the entropy collapse that
    the forget term spreads to other inputs so retain outputs stay diverse. The defaults are the paper's
    (λ_f = 1, λ_r = −0.25). Note that λ_r < 0 is a push, not an anchor: alone it drives retain entropy towards
    log V, so it relies on the retain loss beside it to keep the retain distribution in place. Both signs are
    configurable.

    Legend: f forget, r retain answer tokens; λ_f, λ_r weights; T temperature.

    Args:
        forget_logits: (B, T, V) policy logits on forget sequences.
        forget_labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        retain_logits: (B', T', V) policy logits on retain sequences.
        retain_labels: (B', T') token ids, ``IGNORE_INDEX`` outside answers.
        lambda_forget: λ_f.
        lambda_retain: λ_r.
        temperature: T > 0.
        forget_tokens: `num_tokens` of the forget mean (default its answer tokens); retain_tokens likewise.
        retain_tokens: see forget_tokens.

    Returns:
        (total, H_forget, H_retain), scalar tensors; an all-masked side contributes 0.0.
    """
    h_forget = token_entropy(forget_logits, forget_labels, temperature=temperature, num_tokens=forget_tokens)
    h_retain = token_entropy(retain_logits, retain_labels, temperature=temperature, num_tokens=retain_tokens)
    return lambda_forget * h_forget + lambda_retain * h_retain, h_forget, h_retain
