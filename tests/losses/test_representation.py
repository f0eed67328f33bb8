"""Hidden-state objectives against hand-worked numbers, F.mse_loss on selected rows, finite differences."""

import torch
import torch.nn.functional as F
from torch.testing import assert_close

from unlearn.losses.representation import masked_mse, rmu_loss


def test_masked_mse_hand_computed():
    """Token (0, 0) = (1, 3), target (0, 1): ((1 − 0)² + (3 − 1)²) / 2 = 2.5; token (0, 1) is masked out."""
    hidden = torch.tensor([[[1.0, 3.0], [40.0, -7.0]]])
    mask = torch.tensor([[True, False]])
    assert_close(masked_mse(hidden, torch.tensor([0.0, 1.0]), mask), torch.tensor(2.5))


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
        forget_hidden, forget_mask, control, retain_hidden, retain_reference, retain_mask, alpha=3.0
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
    total, _, _ = rmu_loss(forget, mask, torch.ones(4), retain, reference, mask, alpha=2.0)
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
        return rmu_loss(h, forget_mask, control, r, reference, retain_mask, alpha=5.0)[0]

    assert torch.autograd.gradcheck(total, (hidden, retain))
