"""Objectives on hidden states: steer forget activations to noise, keep retain activations in place."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mse(hidden: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over selected tokens only, so prompt and padding activations never count.

    ``L = Σ_{b,t} m_{b,t} Σ_d (h_{b,t,d} − target_{b,t,d})² / (D · Σ_{b,t} m_{b,t})``; 0.0 when m is all 0.

    Args:
        hidden: (B, T, D) hidden states.
        target: broadcastable to (B, T, D), e.g. a (D,) control vector.
        mask: (B, T) bool or 0/1; tokens that count.

    Returns:
        Scalar tensor.
    """
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    sq = (hidden.to(dtype) - target.to(dtype)).square()  # (B, T, D)
    mask = mask.bool()
    total = torch.where(mask.unsqueeze(-1), sq, 0.0).sum()
    return total / (mask.sum() * hidden.shape[-1]).clamp(min=1)


def rmu_loss(
    forget_hidden: Tensor,
    forget_mask: Tensor,
    control: Tensor,
    retain_hidden: Tensor,
    retain_reference: Tensor,
    retain_mask: Tensor,
    *,
    alpha: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """RMU: scramble forget activations at one layer towards a fixed random direction, retain unchanged.

    Paper: Li et al. 2024, "The WMDP Benchmark", arXiv:2403.03218.

    ``L = masked_mse(h_π(f), c·u) + α · masked_mse(h_π(r), h_ref(r))``.

    Legend: h_π, h_ref layer-ℓ hidden states of policy and reference; f forget, r retain tokens;
    u a fixed random unit vector; c the steering coefficient; α the retain weight.

    Args:
        forget_hidden: (B, T, D) h_π(f).
        forget_mask: (B, T) forget tokens that count.
        control: (D,) c·u, already scaled.
        retain_hidden: (B', T', D) h_π(r).
        retain_reference: (B', T', D) h_ref(r); a constant (detached).
        retain_mask: (B', T') retain tokens that count.
        alpha: α.

    Returns:
        (total, forget_term, retain_term), scalar tensors.
    """
    forget_term = masked_mse(forget_hidden, control, forget_mask)
    retain_term = masked_mse(retain_hidden, retain_reference.detach(), retain_mask)
    return forget_term + alpha * retain_term, forget_term, retain_term
