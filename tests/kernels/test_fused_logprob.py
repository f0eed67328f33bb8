"""Fused linear → log-prob: Triton (interpreted) and chunked PyTorch paths against the eager definition."""

import pytest
import torch
import triton
import triton.language as tl
from torch.profiler import ProfilerActivity, profile
from unlearn.kernels.fused_logprob import (
    _linear_logprob_torch,
    _stats_offsets,
    fused_linear_logprob,
    linear_logprob_definition,
)

pytestmark = pytest.mark.kernels

N, H, V = 37, 48, 1007  # odd sizes: partial row, column and H tiles, several backward vocabulary chunks


def _inputs(n, h, v, dtype, *, bias=True, ignored=(3,), seed=0):
    g = torch.Generator(torch.get_default_device()).manual_seed(seed)
    hidden = torch.randn(n, h, generator=g).to(dtype)
    weight = (torch.randn(v, h, generator=g) / h**0.5 * 3).to(dtype)
    b = torch.randn(v, generator=g).to(dtype) if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    targets[list(ignored)] = -100
    return hidden, weight, b, targets, torch.randn(n, generator=g), torch.randn(n, generator=g)


def _run(fn, hidden, weight, bias, targets, up_logp, up_ent, **kw):
    """Outputs and gradients of Σ up_logp·logp + Σ up_ent·H (upstream gradients ≠ 1)."""
    leaves = [t.detach().requires_grad_() for t in (hidden, weight) + ((bias,) if bias is not None else ())]
    logp, ent = fn(leaves[0], leaves[1], targets, bias=leaves[2] if bias is not None else None, **kw)
    loss = (up_logp * logp).sum() + ((up_ent * ent).sum() if ent is not None else 0)
    return logp, ent, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("with_entropy", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_triton_matches_reference(dtype, with_entropy, assert_close):
    hidden, weight, bias, targets, up_logp, up_ent = _inputs(N, H, V, dtype, ignored=(3, 20))
    kw = dict(temperature=0.7, with_entropy=with_entropy)
    logp, ent, grads = _run(
        fused_linear_logprob, hidden, weight, bias, targets, up_logp, up_ent, backend="triton", **kw
    )
    ref = _run(linear_logprob_definition, hidden.float(), weight.float(), bias.float(), targets, up_logp, up_ent, **kw)
    assert logp.dtype == torch.float32 and logp.shape == (N,)
    assert_close(logp, ref[0], dtype, "logp")
    assert (logp[[3, 20]] == 0).all()
    if with_entropy:
        assert_close(ent, ref[1], dtype, "entropy")
    else:
        assert ent is None
    for name, got, want in zip(("hidden", "weight", "bias"), grads, ref[2], strict=True):
        assert got.dtype == dtype
        assert_close(got, want, dtype, f"grad {name}")
    assert (grads[0][[3, 20]] == 0).all()


def test_triton_without_bias_even_h_and_frozen_weight(assert_close):
    hidden, weight, _, targets, up_logp, up_ent = _inputs(29, 64, 300, torch.float32, bias=False)
    h = hidden.clone().requires_grad_()
    logp, ent = fused_linear_logprob(h, weight, targets, with_entropy=True, backend="triton")
    (grad,) = torch.autograd.grad((up_logp * logp).sum() + (up_ent * ent).sum(), h)
    ref = _run(linear_logprob_definition, hidden, weight, None, targets, up_logp, up_ent, with_entropy=True)
    assert_close(logp, ref[0], torch.float32, "logp")
    assert_close(ent, ref[1], torch.float32, "entropy")
    assert_close(grad, ref[2][0], torch.float32, "grad hidden")


def test_entropy_alone_gets_gradient(assert_close):
    hidden, weight, bias, targets, _, up_ent = _inputs(20, 32, 200, torch.float32)
    zero = torch.zeros(20)
    _, ent, grads = _run(
        fused_linear_logprob,
        hidden,
        weight,
        bias,
        targets,
        zero,
        up_ent,
        temperature=2.0,
        with_entropy=True,
        backend="triton",
    )
    ref = _run(
        linear_logprob_definition, hidden, weight, bias, targets, zero, up_ent, temperature=2.0, with_entropy=True
    )
    for got, want in zip(grads, ref[2], strict=True):
        assert_close(got, want, torch.float32, "grad")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_all_rows_ignored_give_zeros(backend):
    hidden, weight, bias, targets, up_logp, up_ent = _inputs(9, 16, 70, torch.float32, ignored=range(9))
    logp, ent, grads = _run(
        fused_linear_logprob, hidden, weight, bias, targets, up_logp, up_ent, with_entropy=True, backend=backend
    )
    assert torch.equal(logp, torch.zeros(9)) and torch.equal(ent, torch.zeros(9))
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


@pytest.mark.parametrize("with_entropy", [False, True])
def test_chunked_torch_path_matches_reference(with_entropy, assert_close):
    hidden, weight, bias, targets, up_logp, up_ent = _inputs(N, H, V, torch.float32)

    def chunked(h, w, t, *, bias, **kw):
        return _linear_logprob_torch(h, w, t, bias, -100, 0.7, with_entropy, chunk_size=5)

    got = _run(chunked, hidden, weight, bias, targets, up_logp, up_ent)
    ref = _run(
        linear_logprob_definition,
        hidden,
        weight,
        bias,
        targets,
        up_logp,
        up_ent,
        temperature=0.7,
        with_entropy=with_entropy,
    )
    for a, b in zip([got[0], got[1], *got[2]], [ref[0], ref[1], *ref[2]], strict=True):
        if b is not None:
            assert_close(a, b, torch.float32, "chunked")


def test_torch_path_gradcheck_float64():
    hidden, weight, bias, targets, _, _ = _inputs(5, 4, 7, torch.float64, ignored=(2,))
    args = [t.requires_grad_() for t in (hidden, weight, bias)]

    def fn(h, w, b):
        return _linear_logprob_torch(h, w, targets, b, -100, 0.6, True, chunk_size=2)

    assert torch.autograd.gradcheck(fn, args)


def _peak_bytes(fn) -> int:
    """Peak of live CPU allocations while fn runs, from the profiler's allocation and free events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def test_chunked_peak_memory_does_not_grow_with_vocab_like_eager():
    def peak(v, chunked):
        hidden, weight, _, targets, _, _ = _inputs(256, 32, v, torch.float32, bias=False)
        hidden.requires_grad_()
        weight.requires_grad_()

        def step():
            if chunked:
                logp, ent = _linear_logprob_torch(hidden, weight, targets, None, -100, 1.0, True, 16)
            else:
                logp, ent = linear_logprob_definition(hidden, weight, targets, with_entropy=True)
            (logp.sum() + ent.sum()).backward()

        return _peak_bytes(step)

    with torch.device("cpu"):  # the CPU profiler's allocation events
        eager_small, eager_large = peak(1000, False), peak(4000, False)
        chunked_small, chunked_large = peak(1000, True), peak(4000, True)
    assert eager_large > 3 * eager_small  # eager holds several (N, V) tensors
    assert chunked_large < 0.15 * eager_large
    assert chunked_large - chunked_small < 0.15 * (eager_large - eager_small)


def test_bad_inputs_name_the_fix():
    hidden, weight, _, targets, _, _ = _inputs(4, 8, 10, torch.float32, ignored=())
    with pytest.raises(ValueError, match="targets must be"):
        fused_linear_logprob(hidden, weight, targets[:3])
    with pytest.raises(ValueError, match="weight \\(V, H\\)"):
        fused_linear_logprob(hidden, weight.t(), targets)
    with pytest.raises(ValueError, match="temperature"):
        fused_linear_logprob(hidden, weight, targets, temperature=0.0)
    with pytest.raises(ValueError, match="backend"):
        fused_linear_logprob(hidden, weight, targets, backend="cuda")


def test_losses_reach_the_triton_kernel_through_lm_head_inputs():
    """NPO's sequence NLL on the interpreted Triton path equals the eager one, gradients included."""
    from unlearn.losses import LMHeadInputs, sequence_nll

    hidden, weight, bias, targets, up_logp, _ = _inputs(3 * 13, H, V, torch.float32, ignored=())
    labels = targets.view(3, 13).clone()
    labels[:, :4] = -100
    leaves = [t.detach().requires_grad_() for t in (hidden.view(3, 13, H), weight, bias)]
    eager = sequence_nll(torch.nn.functional.linear(*leaves), labels)[0]
    fused = sequence_nll(LMHeadInputs(*leaves, backend="triton"), labels)[0]
    torch.testing.assert_close(fused, eager, atol=1e-4, rtol=1e-5)
    weights = up_logp[:3]
    for g_fused, g_eager in zip(
        torch.autograd.grad((weights * fused).sum(), leaves),
        torch.autograd.grad((weights * eager).sum(), leaves),
        strict=True,
    ):
        torch.testing.assert_close(g_fused, g_eager, atol=1e-4, rtol=1e-4)


def test_log_prob_and_entropy_losses_share_one_triton_call(monkeypatch):
    """NPOEntropy's per-role losses (sequence NLL and answer entropy) from one interpreted kernel call equal the eager
    losses on logits, gradients included."""
    import unlearn.kernels

    from unlearn.losses import LMHeadInputs, sequence_nll, token_entropy

    calls = []
    kernel = unlearn.kernels.fused_linear_logprob
    monkeypatch.setattr(unlearn.kernels, "fused_linear_logprob", lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    hidden, weight, bias, targets, up_logp, _ = _inputs(3 * 13, H, V, torch.float32, ignored=())
    labels = targets.view(3, 13).clone()
    labels[:, :4] = -100

    def loss(outputs):
        return (up_logp[:3] * sequence_nll(outputs, labels)[0]).sum() + 0.6 * token_entropy(
            outputs, labels, temperature=0.8
        )

    leaves = [t.detach().requires_grad_() for t in (hidden.view(3, 13, H), weight, bias)]
    eager = loss(torch.nn.functional.linear(*leaves))
    fused = loss(LMHeadInputs(*leaves, backend="triton", entropy_temperature=0.8))
    assert len(calls) == 1
    torch.testing.assert_close(fused, eager, atol=1e-4, rtol=1e-5)
    for g_fused, g_eager in zip(torch.autograd.grad(fused, leaves), torch.autograd.grad(eager, leaves), strict=True):
        torch.testing.assert_close(g_fused, g_eager, atol=1e-4, rtol=1e-4)


@triton.jit
def _last_rows_offsets(out_ptr, pid_v, N, S, PLANE: tl.constexpr):
    """The forward's statistics offsets of the last 4 rows, for the tile pid_v (a tensor, as program_id is)."""
    rows = N - 4 + tl.arange(0, 4)
    tl.store(out_ptr + tl.arange(0, 4), _stats_offsets(PLANE, pid_v + 0 * tl.program_id(0), rows, N, S))


def test_stats_offsets_are_int64_past_two_to_the_31():
    """The statistics' offsets at 3M tokens and a 128k vocabulary (S·N ≈ 3·10⁹) are exact: the interpreter wraps int32
    arithmetic as the GPU does, so an int32 offset would come out negative here. No large tensor is allocated."""
    n, s = 3_000_000, 1003  # 128256 / 128 tiles, rounded up
    for plane in (0, 4):
        out = torch.zeros(4, dtype=torch.int64)
        _last_rows_offsets[(1,)](out, s - 1, n, s, PLANE=plane)
        expected = [(plane * s + s - 1) * n + row for row in range(n - 4, n)]
        assert out.tolist() == expected
