"""DPO / IDK-DPO and the IDK+AP retain term against hand-worked numbers and finite differences."""

import math

import torch
from torch.testing import assert_close

from unlearn.losses.rejection import dpo_loss, idk_ap_retain_loss


def test_dpo_policy_equal_to_reference_gives_two_over_beta_log_2():
    """π = π_ref on both answers: the bracket is 0, log σ(0) = −log 2, so L = (2/β) log 2 = 20 log 2 at β = 0.1."""
    chosen, rejected = torch.tensor([3.0, 7.5]), torch.tensor([1.0, 12.0])
    loss = dpo_loss(chosen, rejected, chosen.clone(), rejected.clone(), beta=0.1)
    assert_close(loss, torch.tensor(20 * math.log(2)))


def test_dpo_hand_computed_asymmetric_batch():
    """β = ½.

    Row 0: log π(w) − log π_ref(w) = −1 + (1 + log 3) = log 3; log π(l) − log π_ref(l) = −(2 + log 3) + 2 = −log 3.
    Bracket = 2 log 3, β · bracket = log 3, log σ(log 3) = log ¾.
    Row 1: bracket = (−4 + 4) − (−1 + 1) = 0, log σ(0) = log ½.
    L = −(2/β) · ½ (log ¾ + log ½) = −2 log(3/8) ≈ 1.96.
    Swapping chosen and rejected: row 0 β · bracket = −log 3, log σ = log ¼; L = −2 (log ¼ + log ½) = −2 log(1/8).
    """
    chosen = torch.tensor([1.0, 4.0])
    rejected = torch.tensor([2.0 + math.log(3), 1.0])
    ref_chosen = torch.tensor([1.0 + math.log(3), 4.0])
    ref_rejected = torch.tensor([2.0, 1.0])
    assert_close(dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5), torch.tensor(-2 * math.log(3 / 8)))
    swapped = dpo_loss(rejected, chosen, ref_rejected, ref_chosen, beta=0.5)
    assert_close(swapped, torch.tensor(-2 * math.log(1 / 8)))


def test_dpo_only_relative_margin_matters():
    """Adding the same constant to the policy NLL of both answers leaves the loss unchanged."""
    chosen, rejected = torch.tensor([2.0, 5.0]), torch.tensor([3.0, 1.0])
    ref_chosen, ref_rejected = torch.tensor([2.5, 4.0]), torch.tensor([2.0, 2.0])
    base = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.3)
    assert_close(dpo_loss(chosen + 7.0, rejected + 7.0, ref_chosen, ref_rejected, beta=0.3), base)


def test_dpo_is_bounded_once_refusal_far_preferred():
    """Bracket ≫ 0 (refusal much likelier, true answer much less likely than under π_ref): L → 0."""
    loss = dpo_loss(torch.tensor([1.0]), torch.tensor([500.0]), torch.tensor([1.0]), torch.tensor([1.0]), beta=0.1)
    assert 0.0 <= loss.item() < 1e-12


def test_dpo_gradient_hand_computed_and_reference_is_constant():
    """dL/dS_w = (2/B) σ(−β · bracket), dL/dS_l = −(2/B) σ(−β · bracket); at π = π_ref, B = 1: +1 and −1.

    Descent lowers the refusal's NLL and raises the true answer's. The reference NLLs get no gradient.
    """
    chosen = torch.tensor([4.0], requires_grad=True)
    rejected = torch.tensor([6.0], requires_grad=True)
    ref_chosen = torch.tensor([4.0], requires_grad=True)
    ref_rejected = torch.tensor([6.0], requires_grad=True)
    dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.3).backward()
    assert_close(chosen.grad, torch.tensor([1.0]))
    assert_close(rejected.grad, torch.tensor([-1.0]))
    assert ref_chosen.grad is None
    assert ref_rejected.grad is None


def test_dpo_gradcheck():
    """Analytic gradients with respect to both policy NLLs match float64 finite differences."""
    chosen = torch.tensor([0.5, 3.0, 9.0], dtype=torch.float64, requires_grad=True)
    rejected = torch.tensor([2.0, 1.0, 4.0], dtype=torch.float64, requires_grad=True)
    ref_chosen = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    ref_rejected = torch.tensor([1.5, 0.5, 6.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda w, lo: dpo_loss(w, lo, ref_chosen, ref_rejected, beta=0.7), (chosen, rejected)
    )


def test_idk_ap_equal_nlls_give_one_over_beta_log_2():
    """S(idk) = S(y_r): log σ(0) = −log 2, so L = (1/β) log 2 = 10 log 2 at β = 0.1."""
    S = torch.tensor([2.0, 9.0])
    assert_close(idk_ap_retain_loss(S, S.clone(), beta=0.1), torch.tensor(10 * math.log(2)))


def test_idk_ap_hand_computed_batch():
    """β = ½. Row 0: S(idk) − S(y_r) = 2 log 3, log σ(log 3) = log ¾. Row 1: difference 0, log ½.

    L = −(1/β) · ½ (log ¾ + log ½) = −log(3/8). The reversed preference (IDK likelier) on row 0 gives
    log σ(−log 3) = log ¼ and L = −log(1/8), larger, as it should be.
    """
    idk = torch.tensor([1.0 + 2 * math.log(3), 3.0])
    true = torch.tensor([1.0, 3.0])
    assert_close(idk_ap_retain_loss(idk, true, beta=0.5), torch.tensor(-math.log(3 / 8)))
    reversed_idk = torch.tensor([1.0 - 2 * math.log(3), 3.0])
    assert_close(idk_ap_retain_loss(reversed_idk, true, beta=0.5), torch.tensor(-math.log(1 / 8)))


def test_idk_ap_gradient_hand_computed():
    """dL/dS(idk) = −(1/B) σ(−β d), dL/dS(y_r) = +(1/B) σ(−β d), d = S(idk) − S(y_r); at d = 0, B = 1: ∓½.

    Descent raises the refusal's NLL on retain and lowers the true answer's; both inputs receive gradient.
    """
    idk = torch.tensor([5.0], requires_grad=True)
    true = torch.tensor([5.0], requires_grad=True)
    idk_ap_retain_loss(idk, true, beta=0.2).backward()
    assert_close(idk.grad, torch.tensor([-0.5]))
    assert_close(true.grad, torch.tensor([0.5]))


def test_idk_ap_gradcheck():
    """Analytic gradients with respect to both NLLs match float64 finite differences."""
    idk = torch.tensor([0.5, 3.0, 9.0], dtype=torch.float64, requires_grad=True)
    true = torch.tensor([2.0, 1.0, 4.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: idk_ap_retain_loss(a, b, beta=0.7), (idk, true))
