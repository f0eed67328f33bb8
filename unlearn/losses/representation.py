"""Objectives on hidden states: steer forget activations to noise, keep retain activations in place."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from unlearn.losses.nll import token_denominator


def masked_mse(
    hidden: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    num_tokens: Tensor | None = None,
    backend: Literal["auto", "triton", "torch"] = "torch",
) -> Tensor:
    """Mean squared error over selected tokens only, so prompt and padding activations never count.

    ``L = Σ_{b,t} m_{b,t} Σ_d (h_{b,t,d} − target_{b,t,d})² / (D · N)``, N = ``num_tokens`` or else
    ``Σ_{b,t} m_{b,t}``; 0.0 when m is all 0.

    Args:
        hidden: (B, T, D) hidden states.
        target: broadcastable to (B, T, D), e.g. a (D,) control vector.
        mask: (B, T) bool or 0/1; tokens that count.
        num_tokens: the denominator; pass the global batch's selected tokens per rank so that averaging gradients
            over ranks gives the global mean, whatever the number of ranks.
        backend: torch (and auto) compute it here; triton is the one-pass kernel (unlearn.kernels.fused_masked_mse,
            target (D,) or (B, T, D)), opt-in until a GPU measurement shows it beats this code.

    Returns:
        Scalar tensor.
    """
    if backend == "triton":
        from unlearn.kernels import fused_masked_mse  # Triton exists on Linux only; import on first use

        return fused_masked_mse(hidden, target, mask, num_tokens=num_tokens, backend="triton")
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    sq = (hidden.to(dtype) - target.to(dtype)).square()  # (B, T, D)
    mask = mask.bool()
    total = torch.where(mask.unsqueeze(-1), sq, 0.0).sum()
    return total / (token_denominator(mask.sum(), num_tokens) * hidden.shape[-1])


def rmu_loss(
    forget_hidden: Tensor,
    forget_mask: Tensor,
    control: Tensor,
    retain_hidden: Tensor,
    retain_reference: Tensor,
    retain_mask: Tensor,
    *,
    retain_weight: float,
    forget_tokens: Tensor | None = None,
    retain_tokens: Tensor | None = None,
    backend: Literal["auto", "triton", "torch"] = "torch",
) -> tuple[Tensor, Tensor, Tensor]:
    """RMU: scramble forget activations at one layer towards a fixed random direction, retain unchanged.

    Paper: Li et al. 2024, "The WMDP Benchmark", arXiv:2403.03218.

    ``L = masked_mse(h_π(f), c·u) + w · masked_mse(h_π(r), h_ref(r))``.

    Legend: h_π, h_ref layer-ℓ hidden states of policy and reference; f forget, r retain tokens;
    u a fixed random unit vector; c the steering coefficient; w the retain weight.

    Args:
        forget_hidden: (B, T, D) h_π(f).
        forget_mask: (B, T) forget tokens that count.
        control: (D,) c·u, already scaled.
        retain_hidden: (B', T', D) h_π(r).
        retain_reference: (B', T', D) h_ref(r); a constant (detached).
        retain_mask: (B', T') retain tokens that count.
        retain_weight: w.
        forget_tokens: `num_tokens` of the forget term's masked_mse (default the mask's count).
        retain_tokens: the same for the retain term.
        backend: where both masked_mse terms run (see ``masked_mse``).

    Returns:
        (total, forget_term, retain_term), scalar tensors.
    """
    forget_term = masked_mse(forget_hidden, control, forget_mask, num_tokens=forget_tokens, backend=backend)
    retain_term = masked_mse(
        retain_hidden, retain_reference.detach(), retain_mask, num_tokens=retain_tokens, backend=backend
    )
    return forget_term + retain_weight * retain_term, forget_term, retain_term


def adaptive_steering_coeff(reference_hidden: Tensor, mask: Tensor, *, scale: float) -> Tensor:
    """Adaptive RMU: size the steering coefficient to the layer's own activation norm, not a hand-tuned constant.

    Paper: Dang et al. 2025, "On Effects of Steering Latent Representation for LLM Unlearning", arXiv:2408.06223.

    ``c = k · Σ_{b,t} m_{b,t} ‖h_ref,b,t‖₂ / Σ_{b,t} m_{b,t}``; 0.0 when m is all 0. RMU then steers to ``c·u``.

    Legend: h_ref the frozen reference's layer-ℓ hidden states on the forget batch; m the tokens that count;
    k the scale (the paper's β).

    Args:
        reference_hidden: (B, T, D) h_ref(f).
        mask: (B, T) bool or 0/1; tokens that count.
        scale: k.

    Returns:
        Scalar tensor.
    """
    dtype = torch.promote_types(reference_hidden.dtype, torch.float32)
    norms = torch.linalg.vector_norm(reference_hidden.to(dtype), dim=-1)  # (B, T)
    return scale * _masked_mean(norms, mask)


def rr_loss(
    forget_hidden: Tensor,
    forget_reference: Tensor,
    forget_mask: Tensor,
    retain_hidden: Tensor,
    retain_reference: Tensor,
    retain_mask: Tensor,
    *,
    forget_coeff: float,
    retain_coeff: float,
    forget_tokens: Tensor | None = None,
    retain_tokens: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """RR (circuit breakers): make forget activations orthogonal to the original ones, keep retain activations.

    Paper: Zou et al. 2024, "Improving Alignment and Robustness with Circuit Breakers", arXiv:2406.04313.

    ``L = c_f · mean_{l,b,t: m_f} ReLU(cos(h_π(f), h_ref(f))) + c_r · mean_{l,b,t: m_r} ‖h_π(r) − h_ref(r)‖₂``;
    each mean is 0.0 when its mask is all 0.

    Legend: h_π, h_ref hidden states of policy and frozen reference at the hooked layers l; f forget, r retain
    tokens; m_f, m_r the tokens that count; c_f, c_r the coefficients (see ``rr_coefficients``).

    Args:
        forget_hidden: (L, B, T, D) h_π(f), one slice per hooked layer.
        forget_reference: (L, B, T, D) h_ref(f); a constant (detached).
        forget_mask: (B, T) forget tokens that count.
        retain_hidden: (L, B', T', D) h_π(r).
        retain_reference: (L, B', T', D) h_ref(r); a constant (detached).
        retain_mask: (B', T') retain tokens that count.
        forget_coeff: c_f.
        retain_coeff: c_r.
        forget_tokens: the forget mean's token count (default the mask's), e.g. the global batch's per rank.
        retain_tokens: the same for the retain mean.

    Returns:
        (total, forget_term, retain_term), scalar tensors; the terms are unweighted.
    """
    dtype = torch.promote_types(forget_hidden.dtype, torch.float32)
    cosine = F.cosine_similarity(forget_hidden.to(dtype), forget_reference.detach().to(dtype), dim=-1)  # (L, B, T)
    forget_term = _masked_mean(F.relu(cosine), forget_mask, forget_tokens)
    distance = torch.linalg.vector_norm(retain_hidden.to(dtype) - retain_reference.detach().to(dtype), dim=-1)
    retain_term = _masked_mean(distance, retain_mask, retain_tokens)  # distance: (L, B', T')
    return forget_coeff * forget_term + retain_coeff * retain_term, forget_term, retain_term


def rr_coefficients(step: int, total_steps: int, *, forget_coeff: float, retain_coeff: float) -> tuple[float, float]:
    """RR's schedule: reroute hard first, then shift the weight to keeping retain activations in place.

    Paper: Zou et al. 2024, arXiv:2406.04313, Algorithm 1.

    ``c_f = α_f · (1 − t/(2T))``, ``c_r = α_r · t/(2T)``: at the end c_f = α_f/2 and c_r = α_r/2.

    Legend: t the optimiser step (0-based), T the number of steps; α_f, α_r the base coefficients (the paper
    uses one α for both).

    Args:
        step: t.
        total_steps: T, at least 1.
        forget_coeff: α_f.
        retain_coeff: α_r.

    Returns:
        (c_f, c_r).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be at least 1 for RR's coefficient schedule")
    progress = step / (2 * total_steps)
    return forget_coeff * (1 - progress), retain_coeff * progress


def _masked_mean(values: Tensor, mask: Tensor, num_tokens: Tensor | None = None) -> Tensor:
    """Mean of (..., B, T) values over the tokens a (B, T) mask selects (or `num_tokens` of them), every leading
    slice alike; 0.0 if none."""
    slices = values.numel() // mask.numel()  # e.g. hooked layers
    total = torch.where(mask.bool(), values, 0.0).sum()
    return total / (token_denominator(mask.sum(), num_tokens) * slices)
