"""The gate of a gated intervention (GRUN) as a classifier: open on forget prompts, closed on retain prompts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gate_bce_loss(forget_logits: Tensor, retain_logits: Tensor) -> Tensor:
    """Binary cross-entropy teaching a soft gate σ(g) to fire on the data to forget only.

    Paper: Ren et al. 2025, "A General Framework to Enhance Fine-tuning-based LLM Unlearning", arXiv:2502.17823.

    ``L = −(1/(N_f + N_r)) · (Σ_i log σ(g_i^f) + Σ_j log(1 − σ(g_j^r)))``; 0.0 when both sets are empty.

    Legend: g^f, g^r gate logits (before the sigmoid) at forget and retain prompt ends, every gated layer pooled;
    N_f, N_r their counts. Labels: forget 1, retain 0.

    Args:
        forget_logits: (N_f,) g^f.
        retain_logits: (N_r,) g^r.

    Returns:
        Scalar tensor.
    """
    logits = torch.cat([forget_logits, retain_logits])  # (N_f + N_r,)
    if logits.numel() == 0:
        return logits.sum()
    targets = torch.cat([torch.ones_like(forget_logits), torch.zeros_like(retain_logits)])
    return F.binary_cross_entropy_with_logits(logits, targets)
