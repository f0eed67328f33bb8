"""Membership-inference scores from per-token log-probs: does the model still treat forget text as training data?

Every score is loss-like (higher means less member-like), so `auc(member, nonmember)` of a model that has memorised
its members is near 0, and MUSE's `privleak` reads negative for under-unlearning, positive for over-unlearning.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

Scores = Tensor | np.ndarray | Sequence[float]

MIN_STD = 1e-12  # Min-K%++ divides by σ, which is 0 for a uniform or one-hot next-token distribution


def loss_score(token_logprobs: Tensor, mask: Tensor | None = None) -> Tensor:
    """The LOSS attack: members have lower loss, the baseline every other attack is measured against.

    Paper: Yeom et al. 2018, "Privacy Risk in Machine Learning", arXiv:1709.01604.

    ``s = −(1/|M|) Σ_{t∈M} log p(x_t | x_<t)``, M the unmasked tokens.

    Args:
        token_logprobs: (..., T) log-probs of the target tokens, already shifted.
        mask: (..., T) bool or 0/1, True for scored tokens; None scores every token.

    Returns:
        (...,) mean NLL per sequence; 0.0 for a sequence with no scored token.
    """
    mask = _mask(token_logprobs, mask)
    count = mask.sum(-1)  # (...,)
    total = -torch.where(mask, token_logprobs, torch.zeros_like(token_logprobs)).sum(-1)  # (...,) padding may be -inf
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))


def zlib_score(token_logprobs: Tensor, texts: Sequence[str], mask: Tensor | None = None) -> Tensor:
    """The zlib attack: divides out how compressible (hence generically likely) the text is.

    Paper: Carlini et al. 2021, "Extracting Training Data from Large Language Models", arXiv:2012.07805.

    ``s = LOSS / len(zlib.compress(text.encode("utf-8")))``, the compressed length in bytes.

    Args:
        token_logprobs: (B, T) log-probs of the target tokens, already shifted.
        texts: the B texts the rows score.
        mask: (B, T) True for scored tokens; None scores every token.

    Returns:
        (B,) scores; 0.0 for a row with no scored token.
    """
    if token_logprobs.dim() != 2 or len(texts) != token_logprobs.shape[0]:
        raise ValueError(f"need (B, T) log-probs and B texts, got {tuple(token_logprobs.shape)} and {len(texts)}")
    sizes = [len(zlib.compress(text.encode("utf-8"))) for text in texts]
    return loss_score(token_logprobs, mask) / torch.tensor(sizes, dtype=token_logprobs.dtype)


def min_k_score(token_logprobs: Tensor, mask: Tensor | None = None, *, k: float = 0.2) -> Tensor:
    """Min-K%: a non-member has a few very unlikely tokens that the mean loss averages away.

    Paper: Shi et al. 2024, "Detecting Pretraining Data from Large Language Models", arXiv:2310.16789.

    ``s = −(1/|K|) Σ_{t∈K} log p(x_t | x_<t)``, K the ``max(1, ⌊k·|M|⌋)`` scored tokens of lowest log-prob (negated
    from the paper's score so that, like LOSS, higher means non-member).

    Args:
        token_logprobs: (..., T) log-probs of the target tokens, already shifted.
        mask: (..., T) True for scored tokens; None scores every token.
        k: fraction of tokens kept, in (0, 1].

    Returns:
        (...,) scores; 0.0 for a sequence with no scored token.
    """
    return -_mean_lowest(token_logprobs, _mask(token_logprobs, mask), k=k)


def min_k_plus_plus_score(logits: Tensor, targets: Tensor, mask: Tensor | None = None, *, k: float = 0.2) -> Tensor:
    """Min-K%++: calibrates each token against the model's own next-token distribution, a local-maximum test.

    Paper: Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting Pre-Training Data from LLMs", arXiv:2404.02936.

    ``z_t = (log p(x_t) − μ_t) / σ_t`` with ``μ_t = Σ_v p_v log p_v`` and ``σ_t² = Σ_v p_v (log p_v)² − μ_t²`` over the
    next-token distribution at t; ``s = −mean`` of the ``max(1, ⌊k·|M|⌋)`` lowest ``z_t`` (negated as in
    `min_k_score`). σ is floored at ``MIN_STD``, so a flat distribution gives ``z = 0``.

    Args:
        logits: (..., T, V) logits whose position t predicts ``targets[..., t]`` (already shifted).
        targets: (..., T) target token ids.
        mask: (..., T) True for scored tokens; None scores every token.
        k: fraction of tokens kept, in (0, 1].

    Returns:
        (...,) scores; 0.0 for a sequence with no scored token.
    """
    mask = _mask(targets, mask)
    targets = targets.long().masked_fill(~mask, 0)  # padding ids (e.g. -100) would break the gather
    logprobs = logits.float().log_softmax(-1)  # (..., T, V)
    probs = logprobs.exp()
    mu = (probs * logprobs).sum(-1)  # (..., T)
    sigma = ((probs * logprobs.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()  # (..., T)
    target_logprobs = logprobs.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # (..., T)
    z = (target_logprobs - mu) / sigma.clamp_min(MIN_STD)
    return -_mean_lowest(z, mask, k=k)


def auc(member_scores: Scores, nonmember_scores: Scores) -> float:
    """ROC AUC of telling members from non-members by score, threshold-free so attacks compare on one number.

    Paper: Mann & Whitney 1947, Ann. Math. Statist. 18(1) (AUC = U / (m n), Hanley & McNeil 1982).

    ``AUC = P(s_member > s_nonmember) + ½ P(s_member = s_nonmember)``, from mid-ranks of the pooled scores; the same
    as ``sklearn.metrics.roc_auc_score`` with members labelled 1.

    Args:
        member_scores: (m,) scores of members (e.g. forget set), m ≥ 1.
        nonmember_scores: (n,) scores of non-members (e.g. holdout set), n ≥ 1.
    """
    members, nonmembers = _as_1d(member_scores), _as_1d(nonmember_scores)
    m, n = members.numel(), nonmembers.numel()
    if m == 0 or n == 0:
        raise ValueError(f"auc needs at least one member and one non-member, got {m} and {n}")
    pooled = torch.cat([members, nonmembers])
    if torch.isnan(pooled).any():
        raise ValueError("auc scores must not be NaN")
    _, inverse, counts = torch.unique(pooled, sorted=True, return_inverse=True, return_counts=True)
    counts = counts.to(torch.float64)
    mid_ranks = counts.cumsum(0) - (counts - 1) / 2  # (U,) 1-based mean rank of each distinct value
    u_members = mid_ranks[inverse[:m]].sum() - m * (m + 1) / 2
    return float(u_members / (m * n))


def privleak(auc_unlearned: float, auc_retain: float) -> float:
    """PrivLeak: how far the unlearned model's MIA AUC is from a model never trained on the forget set.

    Paper: Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv:2407.06460, §3.

    ``PrivLeak = (AUC_unlearned − AUC_retain) / AUC_retain``, as a fraction (MUSE prints it ×100, as does the
    `PrivLeak` metric); 0 is ideal, negative means under-unlearning, positive over-unlearning. The AUCs must be
    MUSE's orientation, ``auc(member_scores, nonmember_scores)`` of this module's loss-like scores (near 0 for a
    model that remembers its members), not the member-positive `MembershipAUC` (its complement).
    """
    if not 0.0 < auc_retain <= 1.0 or not 0.0 <= auc_unlearned <= 1.0:
        raise ValueError(f"need AUCs in [0, 1] and auc_retain > 0, got {auc_unlearned} and {auc_retain}")
    return (auc_unlearned - auc_retain) / auc_retain


def _mean_lowest(values: Tensor, mask: Tensor, *, k: float) -> Tensor:
    """Mean of each row's ``max(1, ⌊k·|M|⌋)`` lowest masked values, 0.0 for an all-masked row."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    n_valid = mask.sum(-1)  # (...,)
    n_kept = torch.where(n_valid > 0, (n_valid * k).floor().clamp_min(1), torch.zeros_like(n_valid))  # (...,)
    ordered = values.masked_fill(~mask, float("inf")).sort(-1).values  # (..., T) masked values last
    position = torch.arange(values.shape[-1], device=values.device)  # (T,)
    kept = position < n_kept.unsqueeze(-1)  # (..., T)
    total = torch.where(kept, ordered, torch.zeros_like(ordered)).sum(-1)
    return torch.where(n_kept > 0, total / n_kept.clamp_min(1), torch.zeros_like(total))


def _mask(values: Tensor, mask: Tensor | None) -> Tensor:
    """A bool mask of the values' shape; padding is excluded by the caller's mask, never by value."""
    if mask is None:
        return torch.ones_like(values, dtype=torch.bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from scores shape {tuple(values.shape)}")
    return mask.bool()


def _as_1d(scores: Scores) -> Tensor:
    """Scores as a flat float64 CPU tensor."""
    if isinstance(scores, Tensor):
        return scores.detach().to(device="cpu", dtype=torch.float64).flatten()
    return torch.as_tensor(np.asarray(scores, dtype=np.float64)).flatten()
