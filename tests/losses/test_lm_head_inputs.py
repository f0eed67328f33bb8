"""Losses given hidden states + lm-head (the fused path) equal the same losses on materialised logits."""

import pytest
import torch
from torch.testing import assert_close

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses import LMHeadInputs, gradient_ascent_loss, sequence_nll, shifted_logprobs, token_entropy

B, T, H, V = 3, 9, 16, 53


def head_batch(seed: int = 0, dtype=torch.float64):
    """Random hidden states, lm-head and labels with prompts, padding and one row with no answer token."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g, dtype=dtype)
    weight = torch.randn(V, H, generator=g, dtype=dtype) / H**0.5 * 2
    bias = torch.randn(V, generator=g, dtype=dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :3] = IGNORE_INDEX
    labels[1, :5] = IGNORE_INDEX
    labels[1, -2:] = IGNORE_INDEX
    labels[2] = IGNORE_INDEX  # no answer at all: contributes 0 and no gradient
    return hidden, weight, bias, labels


def logits_and_head(hidden, weight, bias, backend="torch"):
    leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    logits = torch.nn.functional.linear(leaves[0], leaves[1], leaves[2])  # (B, T, V)
    return leaves, logits, LMHeadInputs(*[t.clone().requires_grad_() for t in (hidden, weight, bias)], backend=backend)


@pytest.mark.parametrize(
    "loss",
    [
        lambda out, labels: sequence_nll(out, labels)[0].square().sum(),  # upstream gradient != 1 per row
        lambda out, labels: gradient_ascent_loss(out, labels),
        lambda out, labels: token_entropy(out, labels, temperature=0.7),
        lambda out, labels: (shifted_logprobs(out, labels)[0] * torch.arange(T - 1)).sum(),
    ],
    ids=["sequence_nll", "gradient_ascent", "token_entropy", "shifted_logprobs"],
)
def test_fused_head_matches_logits_in_value_and_gradient(loss):
    hidden, weight, bias, labels = head_batch()
    leaves, logits, head = logits_and_head(hidden, weight, bias)
    expected, fused = loss(logits, labels), loss(head, labels)
    assert_close(fused, expected)
    expected_grads = torch.autograd.grad(expected, leaves)
    fused_grads = torch.autograd.grad(fused, [head.hidden, head.weight, head.bias])
    for name, a, e in zip(("hidden", "weight", "bias"), fused_grads, expected_grads, strict=True):
        assert_close(a, e, msg=f"{name} gradient differs")
    assert fused_grads[0][2].abs().sum() == 0, "a row without answer tokens gets no gradient"


def test_shifted_logprobs_masks_match():
    hidden, weight, bias, labels = head_batch(seed=1)
    _, logits, head = logits_and_head(hidden, weight, bias)
    (logp_e, mask_e), (logp_f, mask_f) = shifted_logprobs(logits, labels), shifted_logprobs(head, labels)
    assert torch.equal(mask_e, mask_f) and mask_f.sum() == (T - 1 - 2) + (T - 1 - 6)
    assert_close(logp_f, logp_e.to(logp_f.dtype))


def test_entropy_temperature_shares_one_kernel_call(monkeypatch):
    """With `entropy_temperature` set, a log-prob loss and an entropy loss on the same labels take one kernel call,
    with the values and gradients of two separate calls."""
    import unlearn.kernels

    calls = []
    kernel = unlearn.kernels.fused_linear_logprob
    monkeypatch.setattr(unlearn.kernels, "fused_linear_logprob", lambda *a, **kw: calls.append(kw) or kernel(*a, **kw))
    hidden, weight, bias, labels = head_batch(seed=2)
    up = torch.randn(B, generator=torch.Generator().manual_seed(3), dtype=hidden.dtype)

    def loss(head):
        return (up * sequence_nll(head, labels)[0]).sum() + 0.7 * token_entropy(head, labels, temperature=0.5)

    results = []
    for temperature in (None, 0.5):
        _, _, head = logits_and_head(hidden, weight, bias)
        head.entropy_temperature = temperature
        value = loss(head)
        results.append((value, torch.autograd.grad(value, [head.hidden, head.weight, head.bias])))
    assert [kw["with_entropy"] for kw in calls] == [False, True, True]
    assert_close(results[1][0], results[0][0])
    for a, e in zip(results[1][1], results[0][1], strict=True):
        assert_close(a, e)
    _, _, head = logits_and_head(hidden, weight, bias)
    head.entropy_temperature = 0.5
    token_entropy(head, labels, temperature=2.0)  # another temperature: a call of its own
    assert calls[-1]["temperature"] == 2.0 and len(calls) == 4
