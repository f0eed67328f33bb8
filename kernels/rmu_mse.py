"""RMU's masked activation MSE, with the gradient written in the same pass that reads the activations.

    loss = Σ_{b,t} mask_bt · Σ_d (h_btd − y_btd)² / (D · N)      N = num_tokens or Σ_{b,t} mask_bt, at least 1
    ∂loss/∂h_btd = 2 · mask_bt · (h_btd − y_btd) / (D · N)

y is a (D,) vector broadcast to every token (the forget term, c·u) or a (B, T, D) tensor (the retain term, the
frozen reference's activations). y is a constant: no gradient flows to it. Reductions are deterministic: each
program writes one partial sum and PyTorch adds them, no float atomics.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import triton
import triton.language as tl

Backend = Literal["auto", "triton", "torch"]

# (BLOCK_R, largest BLOCK_D, num_warps); the interpreter gets small blocks.
GPU_CONFIG = (4, 1024, 4)
INTERPRETER_CONFIG = (4, 32, 1)


def masked_mse_definition(
    hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, num_tokens: torch.Tensor | None = None
) -> torch.Tensor:
    """The definition: mean over counted tokens and features of (hidden − target)², fp32 (float64 stays)."""
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    sq = (hidden.to(dtype) - target.to(dtype)) ** 2  # (B, T, D)
    keep = mask.bool()
    return torch.where(keep[..., None], sq, 0.0).sum() / (_token_count(keep, num_tokens) * hidden.shape[-1])


def _token_count(keep: torch.Tensor, num_tokens: torch.Tensor | float | None) -> torch.Tensor:
    """N of the mean in fp32: the given count (a global batch's share per rank), else the counted tokens; at least 1."""
    count = keep.sum(dtype=torch.float32) if num_tokens is None else torch.as_tensor(num_tokens, device=keep.device)
    return count.float().clamp_min(1)


@triton.jit
def _masked_mse_kernel(
    h_ptr,  # (R, D) activations, R = B·T rows
    y_ptr,  # (R, D) target, or (D,) when stride_y is 0
    m_ptr,  # (R,) int8 token mask, nonzero = counted
    scale_ptr,  # (1,) fp32: 1 / (D · N)
    g_ptr,  # (R, D) ∂loss/∂h in h's dtype; unwritten without WRITE_GRAD
    part_ptr,  # (programs,) fp32 partial Σ (h − y)² of this program's rows
    R,
    D,
    stride_y,
    WRITE_GRAD: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """BLOCK_R rows: squared error summed into one partial, gradient stored as it is computed."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    keep = (tl.load(m_ptr + rows, mask=row_ok, other=0) != 0)[:, None]
    scale2 = 2.0 * tl.load(scale_ptr)
    rows64 = rows.to(tl.int64)[:, None]
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)[None, :]
        read = keep & (cols < D)  # skipped tokens cost no reads
        h = tl.load(h_ptr + rows64 * D + cols, mask=read, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + rows64 * stride_y + cols, mask=read, other=0.0).to(tl.float32)
        diff = h - y
        acc += diff * diff
        if WRITE_GRAD:
            grad = (scale2 * diff).to(g_ptr.dtype.element_ty)
            tl.store(g_ptr + rows64 * D + cols, grad, mask=row_ok[:, None] & (cols < D))
    tl.store(part_ptr + pid, tl.sum(tl.sum(acc, 1), 0))


def _masked_mse_forward(
    hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, num_tokens: torch.Tensor | None, write_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch over (B·T, D) rows: (loss fp32 scalar, ∂loss/∂hidden or None)."""
    block_r, block_d, warps = INTERPRETER_CONFIG if os.environ.get("TRITON_INTERPRET") == "1" else GPU_CONFIG
    d = hidden.shape[-1]
    rows = hidden.numel() // d
    keep = mask.reshape(rows).to(torch.int8)
    scale = 1.0 / (_token_count(keep, num_tokens) * d).reshape(1)
    grad = torch.empty_like(hidden) if write_grad else None
    programs = triton.cdiv(rows, block_r)
    partial = hidden.new_empty(programs, dtype=torch.float32)
    _masked_mse_kernel[(programs,)](
        hidden,
        target,
        keep,
        scale,
        hidden if grad is None else grad,
        partial,
        rows,
        d,
        0 if target.dim() == 1 else d,
        WRITE_GRAD=write_grad,
        BLOCK_R=block_r,
        BLOCK_D=min(block_d, triton.next_power_of_2(d)),
        num_warps=warps,
    )
    return partial.sum() * scale.squeeze(), grad


class MaskedMSEFunction(torch.autograd.Function):
    """loss = Σ mask·(h − y)² / (D·N); the forward already wrote ∂loss/∂h = 2·mask·(h − y)/(D·N)."""

    @staticmethod
    def forward(ctx, hidden, target, mask, num_tokens):
        """Loss and gradient in one pass over the activations, so that backward reads them no more."""
        loss, grad = _masked_mse_forward(hidden, target, mask, num_tokens, write_grad=ctx.needs_input_grad[0])
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        """The gradient the forward already wrote, scaled by the incoming one: no second pass."""
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None


def fused_masked_mse(
    hidden: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    num_tokens: torch.Tensor | float | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Masked mean squared error of hidden (B, T, D) to target (D,) or (B, T, D) over tokens where mask.

    fp32 scalar. ``num_tokens``: N, the mean's token count, default the counted tokens. ``backend``: "auto" is
    Triton on CUDA and PyTorch elsewhere; "triton" or "torch" forces one.
    """
    if target.shape != hidden.shape[-1:] and target.shape != hidden.shape:
        raise ValueError(f"target must be (D,) or {tuple(hidden.shape)}, got {tuple(target.shape)}")
    if mask.shape != hidden.shape[:-1]:
        raise ValueError(f"mask must be {tuple(hidden.shape[:-1])}, got {tuple(mask.shape)}")
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    target = target.detach()
    if backend == "torch" or (backend == "auto" and not hidden.is_cuda):
        return masked_mse_definition(hidden, target, mask, num_tokens)
    return MaskedMSEFunction.apply(hidden.contiguous(), target.contiguous(), mask.contiguous(), num_tokens)
