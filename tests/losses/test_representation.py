"""Hidden-state objectives against hand-worked numbers, F.mse_loss on selected rows, finite differences."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from unlearn.losses.representation import adaptive_steering_coeff, masked_mse, rmu_loss, rr_coefficients, rr_loss


def test_masked_mse_hand_computed():
    """Token (0, 0) = (1, 3), target (0, 1): ((1 − 0)² + (3 − 1)²) / 2 = 2.5; token (0, 1) is masked out."""
    hidden = torch.tensor([[[1.0, 3.0], [40.0, -7.0]]])
    mask = torch.tensor([[True, False]])
    assert_close(masked_mse(hidden, torch.tensor([0.0, 1.0]), mask), torch.tensor(2.5))


def test_masked_mse_global_token_count():
    """With num_tokens = 2.5 (5 global tokens over 2 ranks) the squared sum 1² + 3² = 10 divides by 2.5·D, not
    by this rank's 1 selected token: 10 / (2.5 · 2) = 2.0. A half count must not be truncated to 2."""
    hidden = torch.tensor([[[1.0, 3.0], [40.0, -7.0]]])
    mask = torch.tensor([[True, False]])
    assert_close(masked_mse(hidden, torch.zeros(2), mask, num_tokens=torch.tensor(2.5)), torch.tensor(2.0))


def test_masked_mse_matches_mse_on_selected_tokens():
    """Random (B, T, D) with a full-shape target: equals F.mse_loss over the selected rows; 0/1 masks too."""
    g = torch.Generator().manual_seed(0)
    hidden, target = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    mask = torch.rand(3, 5, generator=g) > 0.4
    expected = F.mse_loss(hidden[mask], target[mask])
    assert_close(masked_mse(hidden, target, mask), expected)
    assert_close(masked_mse(hidden, target, mask.long()), expected)
    assert_close(masked_mse(hidden, target, mask.float()), expected)


def test_masked_mse_ignores_masked_tokens():
    """Rewriting hidden states at unselected tokens leaves the value unchanged."""
    g = torch.Generator().manual_seed(1)
    hidden, control = torch.randn(2, 6, 3, generator=g), torch.randn(3, generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]])
    changed = hidden.clone()
    changed[mask == 0] = 1e3
    assert_close(masked_mse(changed, control, mask), masked_mse(hidden, control, mask))


def test_masked_mse_upcasts_low_precision():
    """bf16 hidden states give a float32 value equal to that of the same values upcast first."""
    g = torch.Generator().manual_seed(2)
    hidden, control = torch.randn(2, 3, 8, generator=g).bfloat16(), torch.randn(8, generator=g)
    mask = torch.ones(2, 3, dtype=torch.bool)
    value = masked_mse(hidden, control, mask)
    assert value.dtype == torch.float32
    assert_close(value, masked_mse(hidden.float(), control, mask))


def test_masked_mse_empty_mask_is_zero_with_finite_grad():
    """No selected token: exactly 0.0 and a zero gradient, not NaN."""
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    loss = masked_mse(hidden, torch.ones(4), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert_close(hidden.grad, torch.zeros_like(hidden))


def test_rmu_forget_term_hand_computed():
    """u = (0.6, 0.8) (unit), c = 4: c·u = (2.4, 3.2). Forget hidden 0: (2.4² + 3.2²)/2 = c²‖u‖²/D = 16/2 = 8.

    Retain hidden = reference + 1 everywhere selected: retain term 1; α = 3: total = 8 + 3 = 11.
    """
    control = 4.0 * torch.tensor([0.6, 0.8])
    forget_hidden = torch.zeros(1, 3, 2)
    forget_hidden[0, 2] = 99.0  # masked out
    forget_mask = torch.tensor([[1, 1, 0]])
    retain_reference = torch.randn(2, 2, 2)
    retain_hidden = retain_reference + 1.0
    retain_hidden[1, 1] = -50.0  # masked out
    retain_mask = torch.tensor([[1, 1], [1, 0]])
    total, forget, retain = rmu_loss(
        forget_hidden, forget_mask, control, retain_hidden, retain_reference, retain_mask, retain_weight=3.0
    )
    assert_close(forget, torch.tensor(8.0))
    assert_close(retain, torch.tensor(1.0))
    assert_close(total, torch.tensor(11.0))


def test_rmu_retain_reference_is_constant():
    """Gradients reach the policy's hidden states only, never the reference activations."""
    g = torch.Generator().manual_seed(3)
    forget = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    retain = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    reference = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    mask = torch.ones(2, 3, dtype=torch.bool)
    total, _, _ = rmu_loss(forget, mask, torch.ones(4), retain, reference, mask, retain_weight=2.0)
    total.backward()
    assert reference.grad is None
    assert_close(retain.grad, 2.0 * 2.0 * (retain - reference).detach() / retain.numel())


def test_gradcheck():
    """Analytic gradients of masked_mse and the RMU total match float64 finite differences."""
    g = torch.Generator().manual_seed(4)
    options = {"dtype": torch.float64, "requires_grad": True}
    hidden = torch.randn(2, 3, 4, generator=g, dtype=torch.float64).requires_grad_()
    retain = torch.randn(2, 2, 4, generator=g, **options)
    reference = torch.randn(2, 2, 4, generator=g, dtype=torch.float64)
    control = torch.randn(4, generator=g, dtype=torch.float64)
    forget_mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    retain_mask = torch.tensor([[1, 0], [1, 1]])
    assert torch.autograd.gradcheck(lambda h: masked_mse(h, control, forget_mask), (hidden,))

    def total(h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return rmu_loss(h, forget_mask, control, r, reference, retain_mask, retain_weight=5.0)[0]

    assert torch.autograd.gradcheck(total, (hidden, retain))


def test_adaptive_steering_coeff_hand_computed():
    """Selected tokens (3, 4) and (0, 2) have norms 5 and 2: mean 3.5, k = 2 gives c = 7; (6, 8) is masked out."""
    hidden = torch.tensor([[[3.0, 4.0], [6.0, 8.0]], [[0.0, 2.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 0], [1, 0]])
    assert_close(adaptive_steering_coeff(hidden, mask, scale=2.0), torch.tensor(7.0))


def test_adaptive_steering_coeff_empty_mask_and_gradcheck():
    """No selected token gives 0.0; the value's gradient matches float64 finite differences."""
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert adaptive_steering_coeff(hidden, torch.zeros(2, 3), scale=3.0).item() == 0.0
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    assert torch.autograd.gradcheck(lambda h: adaptive_steering_coeff(h, mask, scale=1.5), (hidden,))


def test_rr_loss_hand_computed():
    """Two layers, one sequence of two tokens, the second masked out everywhere.

    Forget: layer 0 h = (1, 0) vs ref (1, 1): cos = 1/√2; layer 1 h = (−1, 0) vs ref (1, 0): cos = −1, ReLU 0.
    Forget term = (1/√2 + 0)/2. Retain: layer 0 h − ref = (3, 4): ‖·‖ = 5; layer 1 (0, 0): 0. Retain term = 2.5.
    c_f = 2, c_r = 0.4: total = √2/2 + 1 = 1.7071...
    """
    masked = [[9.0, -9.0]]
    forget = torch.tensor([[[[1.0, 0.0], *masked]], [[[-1.0, 0.0], *masked]]])  # (2, 1, 2, 2)
    forget_ref = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [1.0, 1.0]]]])
    retain_ref = torch.randn(2, 1, 2, 2)
    retain = retain_ref.clone()
    retain[0, 0, 0] += torch.tensor([3.0, 4.0])
    retain[:, 0, 1] += 100.0  # masked out
    mask = torch.tensor([[1, 0]])
    total, forget_term, retain_term = rr_loss(
        forget, forget_ref, mask, retain, retain_ref, mask, forget_coeff=2.0, retain_coeff=0.4
    )
    assert_close(forget_term, torch.tensor(0.5 / 2**0.5))
    assert_close(retain_term, torch.tensor(2.5))
    assert_close(total, torch.tensor(2**0.5 / 2 + 1.0))
    # Under data parallelism: 4 global tokens over 2 ranks, so each layer's sum divides by 2, not by this rank's 1.
    two = torch.tensor(2)
    _, forget_half, retain_half = rr_loss(
        forget,
        forget_ref,
        mask,
        retain,
        retain_ref,
        mask,
        forget_coeff=2.0,
        retain_coeff=0.4,
        forget_tokens=two,
        retain_tokens=two,
    )
    assert_close(forget_half, torch.tensor(0.25 / 2**0.5))
    assert_close(retain_half, torch.tensor(1.25))


def test_rr_loss_policy_equal_to_reference_and_empty_masks():
    """h_π = h_ref: cos = 1 so the forget term is 1 and the retain distance 0, with a finite (zero) gradient.

    All-masked input gives 0.0 for both terms, not NaN.
    """
    g = torch.Generator().manual_seed(6)
    reference = torch.randn(2, 3, 4, 5, generator=g)
    hidden = reference.clone().requires_grad_()
    mask = torch.ones(3, 4, dtype=torch.bool)
    total, forget_term, retain_term = rr_loss(
        hidden, reference, mask, hidden, reference, mask, forget_coeff=1.0, retain_coeff=1.0
    )
    assert_close(forget_term, torch.tensor(1.0))
    assert retain_term.item() == 0.0
    total.backward()
    assert torch.isfinite(hidden.grad).all()
    empty = torch.zeros(3, 4)
    _, forget_term, retain_term = rr_loss(
        hidden, reference, empty, hidden + 1, reference, empty, forget_coeff=1.0, retain_coeff=1.0
    )
    assert forget_term.item() == 0.0 and retain_term.item() == 0.0


def test_rr_loss_gradcheck_and_reference_is_constant():
    """Analytic gradients with respect to both policy hidden states match float64 finite differences."""
    g = torch.Generator().manual_seed(7)
    options = {"dtype": torch.float64}
    forget = torch.randn(2, 2, 3, 4, generator=g, **options).requires_grad_()
    retain = torch.randn(2, 2, 2, 4, generator=g, **options).requires_grad_()
    forget_ref = torch.randn(2, 2, 3, 4, generator=g, **options).requires_grad_()
    retain_ref = torch.randn(2, 2, 2, 4, generator=g, **options)
    forget_mask, retain_mask = torch.tensor([[1, 1, 0], [0, 1, 1]]), torch.tensor([[1, 0], [1, 1]])

    def total(f: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return rr_loss(f, forget_ref, forget_mask, r, retain_ref, retain_mask, forget_coeff=0.7, retain_coeff=1.3)[0]

    assert torch.autograd.gradcheck(total, (forget, retain))
    total(forget, retain).backward()
    assert forget_ref.grad is None


def test_rr_coefficients_schedule():
    """T = 10: t = 0 gives (α_f, 0); t = 5 gives (¾α_f, ¼α_r); t = 10 gives (½α_f, ½α_r)."""
    assert rr_coefficients(0, 10, forget_coeff=4.0, retain_coeff=2.0) == (4.0, 0.0)
    assert rr_coefficients(5, 10, forget_coeff=4.0, retain_coeff=2.0) == (3.0, 0.5)
    assert rr_coefficients(10, 10, forget_coeff=4.0, retain_coeff=2.0) == (2.0, 1.0)
    with pytest.raises(ValueError, match="total_steps=0"):
        rr_coefficients(0, 0, forget_coeff=1.0, retain_coeff=1.0)
