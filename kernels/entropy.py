"""Entropy of softmax(logits / T) per row, reading the vocabulary in tiles, with its backward.

    q = softmax(x / T),   H = −Σ_v q_v · log q_v,   ∂H/∂x_v = −q_v · (log q_v + H) / T

Used by the entropy objective and by probabilistic evaluation when logits already exist; when they come
from an lm-head, ``fused_linear_logprob(..., with_entropy=True)`` avoids building them at all.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import torch
import triton
import triton.language as tl
from torch.utils.checkpoint import checkpoint

Backend = Literal["auto", "triton", "torch"]

# Logits upcast at once by the PyTorch path: rows per chunk = this // V.
TORCH_CHUNK_ELEMENTS = 1 << 22
# (BLOCK_V, num_warps); the interpreter gets a small tile.
GPU_CONFIG = (4096, 8)
INTERPRETER_CONFIG = (128, 1)


def entropy_definition(logits: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """The definition over the last dimension, in fp32 (float64 stays); −inf logits (q = 0) add 0, gradient too."""
    logq = (logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature).log_softmax(-1)
    finite = logq.masked_fill(logq == float("-inf"), 0.0)  # 0·log 0 = 0 without a 0·∞ in either pass
    return -(logq.exp() * finite).sum(-1)


def _entropy_torch(logits: torch.Tensor, temperature: float, chunk_size: int | None = None) -> torch.Tensor:
    """The definition over row chunks, recomputed in the backward: one chunk is upcast at a time."""
    flat = logits.reshape(-1, logits.shape[-1])
    rows = chunk_size or max(1, TORCH_CHUNK_ELEMENTS // flat.shape[1])
    fn = functools.partial(entropy_definition, temperature=temperature)
    parts = [checkpoint(fn, chunk, use_reentrant=False) for chunk in flat.split(rows)]
    return torch.cat(parts).reshape(logits.shape[:-1])


@triton.jit
def _entropy_fwd_kernel(
    x_ptr,  # (N, V) logits, row stride stride_x
    ent_ptr,  # (N,) fp32 entropy
    lse_ptr,  # (N,) fp32 logsumexp(x / T), kept for the backward
    V,
    stride_x,
    inv_t,
    BLOCK_V: tl.constexpr,
):
    """One row: online max m, Σe and Σe·d with d = x/T − m over V tiles; H = log Σe − Σe·d / Σe."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_V)
    m = tl.full((BLOCK_V,), -3.0e38, tl.float32)  # per-lane statistics, merged once at the end; finite start
    s = tl.zeros((BLOCK_V,), tl.float32)
    u = tl.zeros((BLOCK_V,), tl.float32)
    for v0 in range(0, V, BLOCK_V):
        ok = v0 + cols < V
        z = tl.load(x_ptr + row * stride_x + v0 + cols, mask=ok, other=float("-inf")).to(tl.float32) * inv_t
        m_new = tl.maximum(m, z)
        shift = m - m_new  # ≤ 0
        scale = tl.exp(shift)
        seen = z > float("-inf")  # padding and −inf logits add nothing
        d = tl.where(seen, z - m_new, 0.0)
        e = tl.where(seen, tl.exp(d), 0.0)
        u = scale * (u + shift * s) + e * d
        s = scale * s + e
        m = m_new
    m_row = tl.max(m, 0)
    shift = m - m_row
    scale = tl.exp(shift)
    s_row = tl.sum(scale * s, 0)
    u_row = tl.sum(scale * (u + shift * s), 0)
    tl.store(ent_ptr + row, tl.log(s_row) - u_row / s_row)
    tl.store(lse_ptr + row, m_row + tl.log(s_row))


@triton.jit
def _entropy_bwd_kernel(
    x_ptr,  # (N, V) logits, row stride stride_x
    ent_ptr,  # (N,) fp32 entropy
    lse_ptr,  # (N,) fp32 logsumexp(x / T)
    gent_ptr,  # (N,) fp32 upstream gradient
    g_ptr,  # (N, V) ∂loss/∂x in the logits' dtype, contiguous
    V,
    stride_x,
    inv_t,
    BLOCK_V: tl.constexpr,
):
    """One row: g · (−q · (log q + H) / T), q recomputed from the saved logsumexp."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_V)
    ent = tl.load(ent_ptr + row)
    lse = tl.load(lse_ptr + row)
    coef = -tl.load(gent_ptr + row) * inv_t
    for v0 in range(0, V, BLOCK_V):
        ok = v0 + cols < V
        logq = tl.load(x_ptr + row * stride_x + v0 + cols, mask=ok, other=0.0).to(tl.float32) * inv_t - lse
        grad = tl.where(logq > float("-inf"), coef * tl.exp(logq) * (logq + ent), 0.0)  # q = 0: no 0·∞
        tl.store(g_ptr + row * V + v0 + cols, grad.to(g_ptr.dtype.element_ty), mask=ok)


def _config() -> tuple[int, int]:
    return INTERPRETER_CONFIG if os.environ.get("TRITON_INTERPRET") == "1" else GPU_CONFIG


class EntropyFunction(torch.autograd.Function):
    """H = −Σ q log q, q = softmax(x/T), per row of x (N, V); backward ∂H/∂x = −q·(log q + H)/T."""

    @staticmethod
    def forward(ctx, logits, temperature):
        """One kernel pass per row, keeping its log-sum-exp so that backward needs no second reduction."""
        (n, v), (block_v, warps) = logits.shape, _config()
        ent = logits.new_empty(n, dtype=torch.float32)
        lse = torch.empty_like(ent)
        _entropy_fwd_kernel[(n,)](
            logits,
            ent,
            lse,
            v,
            logits.stride(0),
            1.0 / temperature,
            BLOCK_V=min(block_v, triton.next_power_of_2(v)),
            num_warps=warps,
        )
        ctx.save_for_backward(logits, ent, lse)
        ctx.temperature = temperature
        return ent

    @staticmethod
    def backward(ctx, grad_ent):
        """−q·(log q + H)/T rebuilt per row from the kept log-sum-exp and entropy: no softmax is stored."""
        logits, ent, lse = ctx.saved_tensors
        (n, v), (block_v, warps) = logits.shape, _config()
        grad = torch.empty((n, v), dtype=logits.dtype, device=logits.device)
        _entropy_bwd_kernel[(n,)](
            logits,
            ent,
            lse,
            grad_ent.float().contiguous(),
            grad,
            v,
            logits.stride(0),
            1.0 / ctx.temperature,
            BLOCK_V=min(block_v, triton.next_power_of_2(v)),
            num_warps=warps,
        )
        return grad, None


def entropy(logits: torch.Tensor, *, temperature: float = 1.0, backend: Backend = "auto") -> torch.Tensor:
    """Entropy of softmax(logits / T) over the last dimension: (..., V) → (...), fp32.

    ``backend``: "auto" is Triton on CUDA and the chunked PyTorch path elsewhere; "triton" or "torch" forces
    one.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch" or (backend == "auto" and not logits.is_cuda):
        return _entropy_torch(logits, temperature)
    flat = logits.reshape(-1, logits.shape[-1])
    if flat.stride(-1) != 1:
        flat = flat.contiguous()
    return EntropyFunction.apply(flat, float(temperature)).reshape(logits.shape[:-1])
