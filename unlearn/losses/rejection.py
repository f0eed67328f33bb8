"""Rejection objectives: prefer a refusal over the true answer on forget, the true answer over IDK on retain."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def dpo_loss(
    nll_chosen: Tensor,
    nll_rejected: Tensor,
    ref_nll_chosen: Tensor,
    ref_nll_rejected: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """DPO / IDK-DPO: raise a refusal above the true answer relative to the reference, a bounded forget push.

    Paper: Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290; as IDK-DPO in
    Maini et al. 2024, "TOFU", arXiv:2401.06121 (chosen = refusal / "I don't know", rejected = true answer).

    ``L = −(2/β) · mean_b log σ(β · [(log π(w) − log π_ref(w)) − (log π(l) − log π_ref(l))])``,
    with ``log π(y|x) = −S``, so the bracket is ``(−S_w + S_ref,w) − (−S_l + S_ref,l)``.

    The 2/β scale is NPO's (Zhang et al. 2024, arXiv:2404.05868), so that the loss and its gradient keep the size
    of an NLL as β changes; the original DPO paper uses a plain ``−mean log σ(·)``, i.e. this loss times β/2.
    At π = π_ref the loss is (2/β) log 2.

    Legend: w chosen (refusal) answer, l rejected (true) answer; S summed answer NLL of a sequence
    (``sequence_nll``) under the policy π or the frozen reference π_ref; β inverse temperature.

    Args:
        nll_chosen: (B,) S_π(w).
        nll_rejected: (B,) S_π(l).
        ref_nll_chosen: (B,) S_ref(w); a constant (detached).
        ref_nll_rejected: (B,) S_ref(l); a constant (detached).
        beta: β.

    Returns:
        Scalar tensor.
    """
    chosen_ratio = -nll_chosen + ref_nll_chosen.detach()  # (B,) log π(w) − log π_ref(w)
    rejected_ratio = -nll_rejected + ref_nll_rejected.detach()  # (B,) log π(l) − log π_ref(l)
    return -(2.0 / beta) * F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()


def idk_ap_retain_loss(nll_idk_retain: Tensor, nll_true_retain: Tensor, *, beta: float = 0.1) -> Tensor:
    """IDK+AP retain term: on retain questions keep the true answer more likely than a refusal.

    Paper: Yuan et al. 2024, "A Closer Look at Machine Unlearning for Large Language Models", arXiv:2410.08109.

    ``L = −(1/β) · mean_b log σ(β · (S_π(idk|x_r) − S_π(y_r|x_r)))``.

    Reference-free: both terms come from the policy and both receive gradient. Minimising it raises the
    refusal's NLL and lowers the true answer's, so IDK fine-tuning on forget does not spread refusals to
    retain questions. Equal NLLs give (1/β) log 2.

    Legend: x_r retain question, y_r its true answer, idk a refusal answer; S summed answer NLL under
    the policy (``sequence_nll``); β inverse temperature.

    Args:
        nll_idk_retain: (B,) S_π(idk|x_r).
        nll_true_retain: (B,) S_π(y_r|x_r).
        beta: β.

    Returns:
        Scalar tensor.
    """
    return -(1.0 / beta) * F.logsigmoid(beta * (nll_idk_retain - nll_true_retain)).mean()
