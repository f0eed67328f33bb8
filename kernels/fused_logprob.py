"""Fused lm-head → per-token log p(target) (+ entropy at temperature T) that never holds the [N, V] logits.

Definitions (x = hidden @ weightᵀ + bias, one row per token, q = softmax(x / T)):
    logp_i = x_i[t_i] − logsumexp(x_i)                       (T does not enter: it is the model's log-prob)
    H_i    = −Σ_v q_iv · log q_iv
    ∂logp_i/∂x_iv = 1[v = t_i] − p_iv,     ∂H_i/∂x_iv = −q_iv · (log q_iv + H_i) / T
Rows whose target is ``ignore_index`` give 0 for both outputs and get no gradient.

The Triton path computes [BLOCK_N, BLOCK_V] logit tiles in registers, keeps per-tile softmax statistics
(max, sum of exponentials) that are merged per row like an online logsumexp, and saves only per-row numbers
for the backward, which recomputes the logit tiles one vocabulary chunk at a time and hands the chunk's logit
gradient to two matrix products (hidden and weight gradients). Per-token upstream gradients come from
autograd, so sequence sums and sigmoids (NPO, DPO) stay in PyTorch on small tensors.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.utils.checkpoint import checkpoint

Backend = Literal["auto", "triton", "torch"]

# Logits held at once by the PyTorch path: rows per chunk = this // V.
TORCH_CHUNK_ELEMENTS = 1 << 22
# Tile shapes: (BLOCK_N, BLOCK_V, BLOCK_H, GROUP_N, num_warps, num_stages); the interpreter gets small tiles.
GPU_CONFIG = (128, 128, 64, 8, 8, 3)
INTERPRETER_CONFIG = (16, 64, 32, 4, 1, 1)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _promoted(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 → fp32, float64 stays (so gradcheck runs in float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def linear_logprob_definition(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The definition, materialising the [N, V] logits in fp32: what every other path must match."""
    logits = _promoted(F.linear(hidden, weight, bias))  # (N, V)
    valid = targets != ignore_index
    logp = logits.log_softmax(-1).gather(-1, targets.where(valid, 0).unsqueeze(-1)).squeeze(-1)
    logp = torch.where(valid, logp, 0.0)
    if not with_entropy:
        return logp, None
    logq = (logits / temperature).log_softmax(-1)
    entropy = -(logq.exp() * logq).sum(-1)
    return logp, torch.where(valid, entropy, 0.0)


def _linear_logprob_torch(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None,
    ignore_index: int,
    temperature: float,
    with_entropy: bool,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The definition over row chunks, each recomputed in the backward: peak memory is one chunk's logits."""
    rows = chunk_size or max(1, TORCH_CHUNK_ELEMENTS // weight.shape[0])
    fn = functools.partial(
        linear_logprob_definition, ignore_index=ignore_index, temperature=temperature, with_entropy=with_entropy
    )
    parts = [
        checkpoint(lambda h, t: fn(h, weight, t, bias=bias), h, t, use_reentrant=False)
        for h, t in zip(hidden.split(rows), targets.split(rows), strict=True)
    ]
    logp = torch.cat([p[0] for p in parts])
    return logp, torch.cat([p[1] for p in parts]) if with_entropy else None


@triton.jit
def _tile_ids(N, V, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, GROUP_N: tl.constexpr):
    """Grouped tile order, so tiles running together share rows of hidden and weight in L2."""
    pid = tl.program_id(0)
    n_tiles = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_N * tl.cdiv(V, BLOCK_V)
    first = (pid // per_group) * GROUP_N
    size = tl.minimum(n_tiles - first, GROUP_N)
    return first + (pid % per_group) % size, (pid % per_group) // size


@triton.jit
def _stats_offsets(plane, pid_v, rows, N, S):
    """int64 offsets of `rows`' statistic `plane` of vocabulary tile pid_v in the (planes, S, N) array: S·N passes
    2³¹ at about 430k tokens with a 128k vocabulary."""
    return (pid_v.to(tl.int64) + plane * S) * N + rows


@triton.jit
def _logprob_kernel(
    h_ptr,  # (N, H) hidden states
    w_ptr,  # (V, H) lm-head weight
    b_ptr,  # (V,) bias; unread without HAS_BIAS
    t_ptr,  # (N,) target ids
    out_ptr,  # forward: (3|5, S, N) fp32 statistics per tile (below); backward: (N, width) logit gradient
    lse_ptr,  # (N,) fp32 logsumexp(x); read by the backward
    glp_ptr,  # (N,) fp32 upstream gradient of logp, 0 on ignored rows; read by the backward
    lset_ptr,  # (N,) fp32 logsumexp(x / T); read by the backward with ENTROPY
    ent_ptr,  # (N,) fp32 entropy; read by the backward with ENTROPY
    gent_ptr,  # (N,) fp32 upstream gradient of the entropy, 0 on ignored rows; read by the backward with ENTROPY
    N,
    V,
    H,
    v0,  # the tiles cover columns [v0, v0 + width): the whole vocabulary forward, one chunk backward
    width,
    stride_h,
    stride_w,
    stride_out,  # row stride of the backward's gradient
    inv_t,
    BACKWARD: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ENTROPY: tl.constexpr,
    UPCAST: tl.constexpr,
    EVEN_H: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    GROUP_N: tl.constexpr,
):
    """Both passes recompute a logit tile alike: forward keeps its softmax statistics, backward writes its gradient."""
    pid_n, pid_v = _tile_ids(N, width, BLOCK_N, BLOCK_V, GROUP_N)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    local = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    cols = v0 + local
    ks = tl.arange(0, BLOCK_H)  # the logits in fp32; rows and columns past the end read in-range data, masked below
    h_ptrs = h_ptr + (rows % N).to(tl.int64)[:, None] * stride_h + ks[None, :]
    w_ptrs = w_ptr + (cols % V).to(tl.int64)[:, None] * stride_w + ks[None, :]
    x = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for k in range(0, tl.cdiv(H, BLOCK_H)):
        if EVEN_H:
            h = tl.load(h_ptrs)
            w = tl.load(w_ptrs)
        else:
            k_ok = (k * BLOCK_H + ks) < H
            h = tl.load(h_ptrs, mask=k_ok[None, :], other=0.0)
            w = tl.load(w_ptrs, mask=k_ok[None, :], other=0.0)
        if UPCAST:  # on the GPU 16-bit operands feed the tensor cores: their products are exact in fp32
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        x = tl.dot(h, tl.trans(w), x, input_precision=DOT_PRECISION)
        h_ptrs += BLOCK_H
        w_ptrs += BLOCK_H
    if HAS_BIAS:
        x += tl.load(b_ptr + cols % V).to(tl.float32)[None, :]
    row_ok = rows < N
    targets = tl.load(t_ptr + rows, mask=row_ok, other=-1)
    if BACKWARD:  # glp·(onehot − p) − gH·q·(log q + H)/T
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        glp = tl.load(glp_ptr + rows, mask=row_ok, other=0.0)
        onehot = tl.where(cols[None, :] == targets[:, None], 1.0, 0.0)
        g = glp[:, None] * (onehot - tl.exp(x - lse[:, None]))
        if ENTROPY:
            lset = tl.load(lset_ptr + rows, mask=row_ok, other=0.0)
            ent = tl.load(ent_ptr + rows, mask=row_ok, other=0.0)
            gent = tl.load(gent_ptr + rows, mask=row_ok, other=0.0)
            logq = x * inv_t - lset[:, None]
            g -= gent[:, None] * tl.exp(logq) * (logq + ent[:, None]) * inv_t
        out = out_ptr + rows.to(tl.int64)[:, None] * stride_out + local[None, :]
        tl.store(out, g.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & (local < width)[None, :])
    else:  # per tile: max m, Σexp(x−m), target logit[, Σexp(d), Σexp(d)·d; d=(x−m)/T], merged per row afterwards
        S = tl.cdiv(V, BLOCK_V)
        col_ok = (cols < V)[None, :]
        x = tl.where(col_ok, x, float("-inf"))
        m = tl.max(x, 1)
        tl.store(out_ptr + _stats_offsets(0, pid_v, rows, N, S), m, mask=row_ok)
        tl.store(out_ptr + _stats_offsets(1, pid_v, rows, N, S), tl.sum(tl.exp(x - m[:, None]), 1), mask=row_ok)
        target_logit = tl.sum(tl.where(cols[None, :] == targets[:, None], x, 0.0), 1)
        tl.store(out_ptr + _stats_offsets(2, pid_v, rows, N, S), target_logit, mask=row_ok)
        if ENTROPY:
            d = tl.where(col_ok, (x - m[:, None]) * inv_t, 0.0)
            e = tl.where(col_ok, tl.exp(d), 0.0)
            tl.store(out_ptr + _stats_offsets(3, pid_v, rows, N, S), tl.sum(e, 1), mask=row_ok)
            tl.store(out_ptr + _stats_offsets(4, pid_v, rows, N, S), tl.sum(e * d, 1), mask=row_ok)


def _launch_args(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> dict:
    """Tile shapes and dtype switches shared by both passes."""
    block_n, block_v, block_h, group_n, warps, stages = INTERPRETER_CONFIG if _interpreting() else GPU_CONFIG
    upcast = _interpreting() or hidden.dtype == torch.float32
    return dict(
        HAS_BIAS=bias is not None,
        UPCAST=upcast,
        EVEN_H=hidden.shape[1] % block_h == 0,
        DOT_PRECISION="ieee" if upcast else "tf32",
        BLOCK_N=block_n,
        BLOCK_V=block_v,
        BLOCK_H=block_h,
        GROUP_N=group_n,
        num_warps=warps,
        num_stages=stages,
    )


def _launch(
    args: dict,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    out: torch.Tensor,
    columns: tuple[int, int],
    temperature: float,
    with_entropy: bool,
    per_row: tuple[torch.Tensor, ...] | None = None,
) -> None:
    """Both passes launch alike; `per_row` (lse, grad_logp, lset, entropy, grad_entropy) selects the backward."""
    (n, h), v = hidden.shape, weight.shape[0]
    v0, width = columns
    grid = (triton.cdiv(n, args["BLOCK_N"]) * triton.cdiv(width, args["BLOCK_V"]),)
    _logprob_kernel[grid](
        hidden,
        weight,
        weight if bias is None else bias,
        targets,
        out,
        *(per_row or (out,) * 5),
        n,
        v,
        h,
        v0,
        width,
        hidden.stride(0),
        weight.stride(0),
        out.stride(0),
        1.0 / temperature,
        BACKWARD=per_row is not None,
        ENTROPY=with_entropy,
        **args,
    )


def _logprob_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    ignore_index: int,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, ...]:
    """Launch the tile kernel and merge its statistics: fp32 (logp, entropy or None, lse, lse at T)."""
    n, v = hidden.shape[0], weight.shape[0]
    args = _launch_args(hidden, weight, bias)
    stats = hidden.new_empty((5 if with_entropy else 3, triton.cdiv(v, args["BLOCK_V"]), n), dtype=torch.float32)
    _launch(args, hidden, weight, bias, targets, stats, (0, v), temperature, with_entropy)
    m = stats[0].max(0).values  # (N,)
    lse = m + torch.log((stats[1] * torch.exp(stats[0] - m)).sum(0))
    valid = targets != ignore_index
    logp = torch.where(valid, stats[2].sum(0) - lse, 0.0)
    if not with_entropy:
        return logp, None, lse, None
    shift = (m - stats[0]) / temperature  # (S, N): each tile's d moved onto the row's max
    scale = torch.exp(-shift)
    sum_e = (stats[3] * scale).sum(0)
    entropy = torch.log(sum_e) - (scale * (stats[4] - shift * stats[3])).sum(0) / sum_e
    return logp, torch.where(valid, entropy, 0.0), lse, m / temperature + torch.log(sum_e)


def _logprob_backward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    lse: torch.Tensor,
    grad_logp: torch.Tensor,
    lset: torch.Tensor | None,
    entropy: torch.Tensor | None,
    grad_entropy: torch.Tensor | None,
    temperature: float,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, ...]:
    """Per vocabulary chunk: logit gradient G from the kernel, then dhidden += G·W_c and dW_c = Gᵀ·hidden."""
    (n, h), v = hidden.shape, weight.shape[0]
    args = _launch_args(hidden, weight, bias)
    chunk = min(v, triton.cdiv(2 * h, args["BLOCK_V"]) * args["BLOCK_V"])  # G holds about 2·N·H elements
    g = hidden.new_empty((n, chunk))
    grad_h = torch.zeros((n, h), dtype=torch.float32, device=hidden.device) if needs[0] else None
    grad_w = torch.empty_like(weight) if needs[1] else None
    grad_b = torch.empty_like(bias) if needs[2] else None
    per_row = (lse, grad_logp, *((lset, entropy, grad_entropy) if entropy is not None else (lse, lse, lse)))
    for v0 in range(0, v, chunk):
        width = min(chunk, v - v0)
        _launch(args, hidden, weight, bias, targets, g, (v0, width), temperature, entropy is not None, per_row)
        g_c = g[:, :width]
        if grad_h is not None:
            grad_h += g_c @ weight[v0 : v0 + width]
        if grad_w is not None:
            torch.mm(g_c.t(), hidden, out=grad_w[v0 : v0 + width])
        if grad_b is not None:
            grad_b[v0 : v0 + width] = g_c.sum(0, dtype=torch.float32)
    return grad_h.to(hidden.dtype) if grad_h is not None else None, grad_w, grad_b


class LinearLogprobFunction(torch.autograd.Function):
    """logp = x[t] − lse(x), H = −Σ q log q with x = h·Wᵀ + b, q = softmax(x/T); saves only per-row numbers.

    Backward: ∂/∂x = g_logp·(onehot − softmax(x)) − g_H·q·(log q + H)/T, recomputed tile by tile.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, ignore_index, temperature, with_entropy):
        """Log-probs (and entropies) tile by tile over the vocabulary, saving per-row numbers, never logits."""
        logp, entropy, lse, lset = _logprob_forward(
            hidden, weight, bias, targets, ignore_index, temperature, with_entropy
        )
        ctx.save_for_backward(hidden, weight, bias, targets, lse, lset, entropy)
        ctx.ignore_index, ctx.temperature = ignore_index, temperature
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        """The gradients of h, W and b, each logit tile recomputed from the saved per-row log-sum-exps."""
        hidden, weight, bias, targets, lse, lset, entropy = ctx.saved_tensors
        valid = targets != ctx.ignore_index
        grad_logp = torch.where(valid, grad_logp, 0.0).float().contiguous()
        if entropy is not None:
            grad_entropy = torch.zeros_like(entropy) if grad_entropy is None else grad_entropy
            grad_entropy = torch.where(valid, grad_entropy, 0.0).float().contiguous()
        grads = _logprob_backward(
            hidden,
            weight,
            bias,
            targets,
            lse,
            grad_logp,
            lset,
            entropy,
            grad_entropy,
            ctx.temperature,
            ctx.needs_input_grad[:3],
        )
        return *grads, None, None, None, None


def fused_linear_logprob(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    temperature: float = 1.0,
    with_entropy: bool = False,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log p(target) (N,) and entropy (N,) or None, fp32, of hidden (N, H) through weight (V, H).

    ``temperature`` applies to the entropy only. ``backend``: "auto" is Triton on CUDA and the chunked PyTorch
    path elsewhere; "triton" or "torch" forces one (Triton on CPU needs TRITON_INTERPRET=1).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"need hidden (N, H) and weight (V, H), got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be (N,) = ({hidden.shape[0]},), got {tuple(targets.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch" or (backend == "auto" and not hidden.is_cuda):
        return _linear_logprob_torch(hidden, weight, targets, bias, ignore_index, temperature, with_entropy)
    return LinearLogprobFunction.apply(
        hidden.contiguous(),
        weight.contiguous(),
        None if bias is None else bias.contiguous(),
        targets.contiguous(),
        ignore_index,
        float(temperature),
        with_entropy,
    )
