"""Forget objectives and the retain KL against hand-worked numbers, explicit loops and finite differences."""

import math

import torch
from torch.testing import assert_close

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses.divergence import (
    gradient_ascent_loss,
    kl_to_reference,
    logit_margin_flattening_loss,
    npo_loss,
    simnpo_loss,
)
from unlearn.losses.nll import mean_token_nll

IGN = IGNORE_INDEX


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random policy and reference logits (B=3, T=6, V=5) and labels with prompt and padding."""
    g = torch.Generator().manual_seed(seed)
    policy = torch.randn(3, 6, 5, generator=g)
    reference = torch.randn(3, 6, 5, generator=g)
    labels = torch.randint(0, 5, (3, 6), generator=g)
    labels[:, :2] = IGN
    labels[1, -2:] = IGN
    return policy, reference, labels


def loop_kl(policy: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Independent reference: Σ_v p (log p − log q) per counted position, written out with exp and sum."""
    total, count = torch.tensor(0.0, dtype=torch.float64), 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if labels[b, t + 1] != IGN:
                zp, zq = reference[b, t].double(), policy[b, t].double()
                logp = zp - torch.log(torch.exp(zp).sum())
                logq = zq - torch.log(torch.exp(zq).sum())
                total = total + (torch.exp(logp) * (logp - logq)).sum()
                count += 1
    return total / count


def test_gradient_ascent_uniform_is_minus_log_v():
    """V=4 uniform logits: NLL = log 4 per token, so GA = −log 4."""
    labels = torch.tensor([[IGN, 0, 3], [IGN, IGN, 1]])
    assert_close(gradient_ascent_loss(torch.zeros(2, 3, 4), labels), torch.tensor(-math.log(4)))


def test_gradient_ascent_is_negated_token_mean_nll():
    """GA equals −NLL on a random batch, so its gradient is exactly the negated NLL gradient."""
    policy, _, labels = random_batch()
    assert_close(gradient_ascent_loss(policy, labels), -mean_token_nll(policy, labels))


def test_gradient_ascent_all_masked_is_zero_with_finite_grad():
    """No answer token: 0.0 and a zero gradient, not NaN."""
    logits = torch.randn(2, 4, 3, requires_grad=True)
    loss = gradient_ascent_loss(logits, torch.full((2, 4), IGN))
    assert loss.item() == 0.0
    loss.backward()
    assert_close(logits.grad, torch.zeros_like(logits))


def test_npo_equal_policy_and_reference_gives_two_over_beta_log_2():
    """S_π = S_ref: log σ(0) = −log 2, so L = (2/β) log 2 = 20 log 2 at β = 0.1."""
    S = torch.tensor([3.0, 7.5])
    assert_close(npo_loss(S, S.clone(), beta=0.1), torch.tensor(20 * math.log(2)))


def test_npo_hand_computed_batch():
    """β = ½. Row 0: S_π − S_ref = 0 → log σ(0) = log ½. Row 1: S_π − S_ref = 2 log 3 → log σ(log 3) = log ¾.

    L = −(2/β) · ½ (log ½ + log ¾) = −2 log(3/8).
    """
    policy = torch.tensor([1.0, 1.0 + 2 * math.log(3)])
    reference = torch.tensor([1.0, 1.0])
    assert_close(npo_loss(policy, reference, beta=0.5), torch.tensor(-2 * math.log(3 / 8)))


def test_npo_is_bounded_once_policy_is_far_below_reference():
    """S_π ≫ S_ref: L → 0 (unlike GA), the property NPO exists for."""
    loss = npo_loss(torch.tensor([500.0]), torch.tensor([1.0]), beta=0.1)
    assert 0.0 <= loss.item() < 1e-12


def test_npo_gradient_hand_computed_and_reference_is_constant():
    """dL/dS_π = −(2/B) σ(−β (S_π − S_ref)); at S_π = S_ref, B = 1: −2 · ½ = −1. S_ref gets no gradient."""
    policy = torch.tensor([4.0], requires_grad=True)
    reference = torch.tensor([4.0], requires_grad=True)
    npo_loss(policy, reference, beta=0.3).backward()
    assert_close(policy.grad, torch.tensor([-1.0]))
    assert reference.grad is None


def test_npo_gradcheck():
    """Analytic gradient matches float64 finite differences."""
    policy = torch.tensor([0.5, 3.0, 9.0], dtype=torch.float64, requires_grad=True)
    reference = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: npo_loss(s, reference, beta=0.7), (policy,))


def test_simnpo_hand_computed():
    """β = 1, γ = 0, S = 2 log 3, |y| = 2: log σ(log 3) = log ¾, so L = −2 log ¾.

    With β = 2, γ = 1, S/|y| = (1 + log 3)/2: β S/|y| − γ = log 3 again, L = −(2/2) log ¾.
    """
    S = torch.tensor([2 * math.log(3)])
    assert_close(simnpo_loss(S, torch.tensor([2]), beta=1.0), torch.tensor(-2 * math.log(0.75)))
    S = torch.tensor([3 * (1 + math.log(3)) / 2])
    assert_close(simnpo_loss(S, torch.tensor([3]), beta=2.0, gamma=1.0), torch.tensor(-math.log(0.75)))


def test_simnpo_is_length_normalised():
    """Same per-token NLL, different lengths: each row gives the same term as the one-row batch."""
    one = simnpo_loss(torch.tensor([1.5]), torch.tensor([1]))
    assert_close(simnpo_loss(torch.tensor([1.5, 6.0, 15.0]), torch.tensor([1, 4, 10])), one)


def test_simnpo_skips_empty_rows():
    """A row with |y| = 0 changes nothing, whatever its S; all rows empty gives 0.0 with a zero gradient."""
    S, n = torch.tensor([2.0, 5.0]), torch.tensor([2, 3])
    expected = simnpo_loss(S, n, beta=2.5, gamma=0.3)
    padded = simnpo_loss(torch.tensor([2.0, 123.0, 5.0]), torch.tensor([2, 0, 3]), beta=2.5, gamma=0.3)
    assert_close(padded, expected)
    empty = torch.tensor([0.0, 4.0], requires_grad=True)
    loss = simnpo_loss(empty, torch.tensor([0, 0]))
    assert loss.item() == 0.0
    loss.backward()
    assert_close(empty.grad, torch.zeros(2))


def test_simnpo_gradcheck():
    """Analytic gradient matches float64 finite differences, float lengths and an empty row included."""
    S = torch.tensor([0.5, 3.0, 9.0, 1.0], dtype=torch.float64, requires_grad=True)
    n = torch.tensor([1.0, 2.0, 5.0, 0.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: simnpo_loss(s, n, beta=2.5, gamma=0.4), (S,))


def test_kl_zero_when_policy_equals_reference():
    """KL(p ‖ p) = 0 on a random batch."""
    policy, _, labels = random_batch()
    assert_close(kl_to_reference(policy, policy.clone(), labels), torch.tensor(0.0))


def test_kl_hand_computed_two_tokens():
    """V=2, labels [IGN, IGN, 1, 0]: logits at t = 1, 2 count; t = 0 (predicts prompt), t = 3 (last) do not.

    t=1: p = (½, ½), q = (¼, ¾): KL = ½ log 2 + ½ log(2/3) = ½ log(4/3).
    t=2: p = (½, ½), q = (⅛, ⅞): KL = ½ log 4 + ½ log(4/7) = ½ log(16/7).
    Mean = ¼ log(64/21) (the reverse direction KL(q ‖ p) would give ≈ 0.224, not ≈ 0.279).
    """
    labels = torch.tensor([[IGN, IGN, 1, 0]])
    reference = torch.zeros(1, 4, 2)
    reference[0, 0] = torch.tensor([5.0, -5.0])
    policy = torch.zeros(1, 4, 2)
    policy[0, 1] = torch.tensor([0.0, math.log(3)])
    policy[0, 2] = torch.tensor([0.0, math.log(7)])
    policy[0, 3] = torch.tensor([-9.0, 9.0])
    assert_close(kl_to_reference(policy, reference, labels), torch.tensor(math.log(64 / 21) / 4))
    # A global count of 5 answer tokens over 2 ranks: the two KLs' sum, ½ log(64/21), divided by 2.5.
    total = kl_to_reference(policy, reference, labels, num_tokens=torch.tensor(2.5))
    assert_close(total, torch.tensor(math.log(64 / 21) / 5))


def test_kl_matches_loop_reference_and_ignores_masked_positions():
    """Random batch: equals the explicit loop; rewriting logits at uncounted positions changes nothing."""
    policy, reference, labels = random_batch()
    value = kl_to_reference(policy, reference, labels)
    assert_close(value.double(), loop_kl(policy, reference, labels))
    unused = torch.ones_like(labels, dtype=torch.bool)
    unused[:, :-1] = labels[:, 1:] == IGN
    policy2, reference2 = policy.clone(), reference.clone()
    policy2[unused] = 50 * torch.randn_like(policy2[unused])
    reference2[unused] = 50 * torch.randn_like(reference2[unused])
    assert_close(kl_to_reference(policy2, reference2, labels), value)


def test_kl_reference_is_constant_and_all_masked_is_zero():
    """No gradient reaches the reference logits; no answer token gives 0.0 with a zero policy gradient."""
    policy, reference, labels = random_batch()
    policy.requires_grad_()
    reference.requires_grad_()
    kl_to_reference(policy, reference, labels).backward()
    assert reference.grad is None
    policy.grad = None
    loss = kl_to_reference(policy, reference, torch.full_like(labels, IGN))
    assert loss.item() == 0.0
    loss.backward()
    assert_close(policy.grad, torch.zeros_like(policy))


def test_kl_gradcheck():
    """Analytic gradient with respect to the policy logits matches float64 finite differences."""
    policy, reference, labels = random_batch(seed=1)
    policy = policy[:, :4].double().requires_grad_()
    reference, labels = reference[:, :4].double(), labels[:, :4]
    labels[:, -1] = 1
    assert torch.autograd.gradcheck(lambda x: kl_to_reference(x, reference, labels), (policy,))


def test_logit_margin_flattening_hand_computed():
    """V=3, labels [IGN, IGN, 2, 1]: positions t = 1, 2 count (they predict answer tokens); t = 0 and t = 3 do not.

    t=1: z = (0, 3, 0): max − mean = 3 − 1 = 2, squared 4. t=2: z = (2, 2, 2), uniform: 0.
    Mean over the two counted positions = (4 + 0) / 2 = 2.
    """
    logits = torch.zeros(1, 4, 3)
    logits[0, 0] = torch.tensor([9.0, 0.0, 0.0])  # uncounted
    logits[0, 1] = torch.tensor([0.0, 3.0, 0.0])
    logits[0, 2] = torch.tensor([2.0, 2.0, 2.0])
    logits[0, 3] = torch.tensor([0.0, 0.0, 7.0])  # uncounted (last position)
    labels = torch.tensor([[IGN, IGN, 2, 1]])
    assert_close(logit_margin_flattening_loss(logits, labels), torch.tensor(2.0))


def test_logit_margin_flattening_all_masked_and_gradcheck():
    """No answer token: 0.0 with a zero gradient; analytic gradient matches float64 finite differences."""
    policy, _, labels = random_batch(seed=2)
    policy.requires_grad_()
    loss = logit_margin_flattening_loss(policy, torch.full_like(labels, IGN))
    assert loss.item() == 0.0
    loss.backward()
    assert_close(policy.grad, torch.zeros_like(policy))
    x = policy.detach()[:, :4].double().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: logit_margin_flattening_loss(z, labels[:, :4]), (x,))
