"""Answer-token entropy and the entropy objective against hand-worked numbers, a loop and finite differences."""

import math

import pytest
import torch
from torch.testing import assert_close

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses.entropy import entropy_objective, token_entropy

IGN = IGNORE_INDEX


def random_batch(seed: int = 0, B: int = 3, T: int = 6, V: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and labels with a prompt prefix and right padding."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(B, T, V, generator=g)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :2] = IGN
    labels[1, -2:] = IGN
    return logits, labels


def loop_entropy(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Independent reference: −Σ p log p per counted position, written out with exp and sum, then averaged."""
    total, count = torch.tensor(0.0, dtype=torch.float64), 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if labels[b, t + 1] != IGN:
                z = logits[b, t].double() / temperature
                p = torch.exp(z) / torch.exp(z).sum()
                total = total - (p * torch.log(p)).sum()
                count += 1
    return total / count


def unused_positions(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) True where the logits predict a prompt/padding label, and at the last position."""
    unused = torch.ones_like(labels, dtype=torch.bool)
    unused[:, :-1] = labels[:, 1:] == IGN
    return unused


def test_uniform_logits_give_log_v():
    """V = 4, all logits equal (any value, any temperature): p = ¼ everywhere, H = log 4."""
    labels = torch.tensor([[IGN, 0, 3], [IGN, IGN, 1]])
    assert_close(token_entropy(torch.full((2, 3, 4), 1.7), labels), torch.tensor(math.log(4)))
    assert_close(token_entropy(torch.zeros(2, 3, 4), labels, temperature=3.0), torch.tensor(math.log(4)))


def test_one_hot_like_gives_zero():
    """One logit at 50 over V = 3: p ≈ (1, e^−50, e^−50), H ≈ 100 e^−50 ≈ 0."""
    logits = torch.zeros(1, 4, 3)
    logits[..., 1] = 50.0
    labels = torch.tensor([[IGN, 2, 0, 1]])
    assert_close(token_entropy(logits, labels), torch.tensor(0.0), atol=1e-12, rtol=0)


def test_hand_computed_two_positions_and_temperature():
    """V = 2, labels [IGN, IGN, 1, 0]: logits at t = 1, 2 count; t = 0 (predicts prompt), t = 3 (last) do not.

    t=1: z = (0, log 3), p = (¼, ¾): H = ¼ log 4 + ¾ log(4/3) = log 4 − ¾ log 3.
    t=2: z = (0, 0), p = (½, ½): H = log 2.
    Mean = (3 log 2 − ¾ log 3) / 2. At T = 2 with every logit doubled, p is the same and so is H.
    """
    labels = torch.tensor([[IGN, IGN, 1, 0]])
    logits = torch.zeros(1, 4, 2)
    logits[0, 0] = torch.tensor([9.0, -9.0])
    logits[0, 1] = torch.tensor([0.0, math.log(3)])
    logits[0, 3] = torch.tensor([-9.0, 9.0])
    expected = torch.tensor((3 * math.log(2) - 0.75 * math.log(3)) / 2)
    assert_close(token_entropy(logits, labels), expected)
    assert_close(token_entropy(2 * logits, labels, temperature=2.0), expected)


def test_temperature_flattens():
    """Higher T moves H towards log V, lower T towards 0, on a random batch."""
    logits, labels = random_batch()
    cold, base, hot = (token_entropy(logits, labels, temperature=t) for t in (0.5, 1.0, 4.0))
    assert 0.0 < cold < base < hot < math.log(5)


def test_matches_loop_reference_and_ignores_masked_positions():
    """Random batch: equals the explicit loop at T = 1 and T = 0.7; logits at uncounted positions never count."""
    logits, labels = random_batch()
    for temperature in (1.0, 0.7):
        value = token_entropy(logits, labels, temperature=temperature)
        assert_close(value.double(), loop_entropy(logits, labels, temperature))
    changed = logits.clone()
    unused = unused_positions(labels)
    changed[unused] = 50 * torch.randn_like(changed[unused])
    assert_close(token_entropy(changed, labels), token_entropy(logits, labels))


def test_low_precision_logits_are_upcast():
    """bf16 logits give a float32 entropy equal to that of the same values upcast first."""
    logits, labels = random_batch()
    value = token_entropy(logits.bfloat16(), labels)
    assert value.dtype == torch.float32
    assert_close(value, token_entropy(logits.bfloat16().float(), labels))


def test_all_masked_is_zero_with_finite_grad():
    """No answer token: exactly 0.0, still attached to logits, zero gradient (not NaN)."""
    logits = torch.randn(2, 5, 6, requires_grad=True)
    loss = token_entropy(logits, torch.full((2, 5), IGN))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert_close(logits.grad, torch.zeros_like(logits))


def test_non_positive_temperature_is_rejected():
    """T ≤ 0 has no softmax meaning; it fails loudly instead of returning NaN."""
    logits, labels = random_batch()
    with pytest.raises(ValueError, match="temperature"):
        token_entropy(logits, labels, temperature=0.0)


def test_token_entropy_gradcheck():
    """Analytic gradient matches float64 finite differences, with a temperature ≠ 1."""
    logits, labels = random_batch(seed=1, T=4, V=4)
    logits = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: token_entropy(x, labels, temperature=0.8), (logits,))


def test_objective_hand_computed_with_paper_weights():
    """Forget uniform over V = 4: H_f = log 4. Retain uniform over V = 4 on one row, ≈ one-hot on the other.

    Retain: t=1 uniform (log 4), t=2 one-hot (0): H_r = ½ log 4 = log 2.
    Total with λ_f = 1, λ_r = −0.25: 2 log 2 − ¼ log 2 = 1.75 log 2.
    """
    forget_labels = torch.tensor([[IGN, 0, 3]])
    retain_logits = torch.zeros(1, 4, 4)
    retain_logits[0, 2, 0] = 60.0
    retain_labels = torch.tensor([[IGN, IGN, 1, 0]])
    total, h_forget, h_retain = entropy_objective(torch.zeros(1, 3, 4), forget_labels, retain_logits, retain_labels)
    assert_close(h_forget, torch.tensor(math.log(4)))
    assert_close(h_retain, torch.tensor(math.log(2)))
    assert_close(total, torch.tensor(1.75 * math.log(2)))
    total, _, _ = entropy_objective(
        torch.zeros(1, 3, 4), forget_labels, retain_logits, retain_labels, lambda_forget=-2.0, lambda_retain=3.0
    )
    assert_close(total, torch.tensor(-4 * math.log(2) + 3 * math.log(2)))
    # Global counts per rank: forget 2 answer tokens of 4 (sum 2 log 4 / 4), retain sum log 4 over 1 (not 2).
    _, h_forget, h_retain = entropy_objective(
        torch.zeros(1, 3, 4),
        forget_labels,
        retain_logits,
        retain_labels,
        forget_tokens=torch.tensor(4),
        retain_tokens=torch.tensor(1),
    )
    assert_close(h_forget, torch.tensor(math.log(4) / 2))
    assert_close(h_retain, torch.tensor(math.log(4)))


def test_objective_descent_lowers_forget_and_raises_retain_entropy():
    """Sign convention: a gradient step on the term with the paper's weights sharpens forget, flattens retain."""
    forget_logits, forget_labels = random_batch(seed=2)
    retain_logits, retain_labels = random_batch(seed=3)
    forget_logits.requires_grad_()
    retain_logits.requires_grad_()
    total, h_forget, h_retain = entropy_objective(forget_logits, forget_labels, retain_logits, retain_labels)
    total.backward()
    with torch.no_grad():
        new_forget = token_entropy(forget_logits - 0.1 * forget_logits.grad, forget_labels)
        new_retain = token_entropy(retain_logits - 0.1 * retain_logits.grad, retain_labels)
    assert new_forget < h_forget
    assert new_retain > h_retain


def test_objective_all_masked_side_contributes_zero():
    """An all-masked retain batch: H_r = 0.0, total = λ_f H_f, and retain logits get a zero gradient."""
    forget_logits, forget_labels = random_batch()
    retain_logits = torch.randn(2, 4, 5, requires_grad=True)
    total, h_forget, h_retain = entropy_objective(
        forget_logits, forget_labels, retain_logits, torch.full((2, 4), IGN), lambda_forget=0.5
    )
    assert h_retain.item() == 0.0
    assert_close(total, 0.5 * h_forget)
    total.backward()
    assert_close(retain_logits.grad, torch.zeros_like(retain_logits))


def test_objective_gradcheck():
    """Analytic gradients with respect to forget and retain logits match float64 finite differences."""
    forget_logits, forget_labels = random_batch(seed=4, T=4, V=4)
    retain_logits, retain_labels = random_batch(seed=5, B=2, T=4, V=4)
    forget_logits = forget_logits.double().requires_grad_()
    retain_logits = retain_logits.double().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f, r: entropy_objective(f, forget_labels, r, retain_labels, temperature=1.3),
        (forget_logits, retain_logits),
    )
