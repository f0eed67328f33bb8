"""Answer-token log-likelihoods: the one place where logits, labels, shift and mask meet."""

from __future__ import annotations

import torch
from torch import Tensor

from unlearn.data.collate import IGNORE_INDEX


def shifted_logprobs(
    logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Per-token log-likelihood of each answer token, so every objective masks and shifts the same way.

    ``logp[b, t] = log softmax(logits[b, t])[labels[b, t+1]]``, 0 where ``labels[b, t+1] == ignore_index``.
    Computed in at least float32, whatever the dtype of ``logits``.

    Args:
        logits: (B, T, V) next-token logits.
        labels: (B, T) token ids; prompt and padding positions hold ``ignore_index``.
        ignore_index: label value that marks a position the loss never sees.

    Returns:
        logp: (B, T-1) log-probabilities, 0 at ignored positions.
        mask: (B, T-1) bool, True at answer tokens.
    """
    logits = logits[:, :-1]  # (B, T-1, V)
    labels = labels[:, 1:]  # (B, T-1)
    mask = labels != ignore_index
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logprobs = torch.log_softmax(logits.to(dtype), dim=-1)  # (B, T-1, V)
    index = torch.where(mask, labels, 0).unsqueeze(-1)  # ignore_index must never reach gather
    logp = logprobs.gather(-1, index).squeeze(-1)  # (B, T-1)
    return torch.where(mask, logp, 0.0), mask


def sequence_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed answer NLL per sequence, the S of sequence-level objectives (NPO, SimNPO, DPO).

    ``S_b = −Σ_t logp[b, t]``, ``n_b = Σ_t mask[b, t]`` (see ``shifted_logprobs``).

    Args:
        logits: (B, T, V) next-token logits.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.

    Returns:
        S: (B,) summed answer-token NLL.
        n: (B,) answer-token counts, float.
    """
    logp, mask = shifted_logprobs(logits, labels)
    return -logp.sum(dim=-1), mask.sum(dim=-1).to(logp.dtype)


def mean_token_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Token-mean answer NLL over the batch, so long answers weigh by their length (standard LM loss).

    ``NLL = Σ_b S_b / Σ_b n_b``; 0.0 (still attached to ``logits``) when no answer token exists.

    Args:
        logits: (B, T, V) next-token logits.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.

    Returns:
        Scalar tensor.
    """
    nll, count = sequence_nll(logits, labels)
    return nll.sum() / count.sum().clamp(min=1.0)
