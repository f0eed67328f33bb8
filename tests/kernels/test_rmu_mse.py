"""RMU masked MSE: Triton (interpreted) and PyTorch paths against the definition."""

import pytest
import torch
from unlearn.kernels.rmu_mse import fused_masked_mse, masked_mse_definition

pytestmark = pytest.mark.kernels

B, T, D = 3, 13, 70  # D not a power of two: partial feature tiles


def _inputs(dtype, target_kind, seed=0):
    g = torch.Generator(torch.get_default_device()).manual_seed(seed)
    hidden = torch.randn(B, T, D, generator=g).to(dtype)
    target = torch.randn(D if target_kind == "vector" else (B, T, D), generator=g).to(dtype)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[1] = False  # a fully masked sequence
    return hidden, target, mask


@pytest.mark.parametrize("target_kind", ["vector", "tensor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_triton_matches_reference(dtype, target_kind, assert_close):
    hidden, target, mask = _inputs(dtype, target_kind)
    h = hidden.clone().requires_grad_()
    loss = fused_masked_mse(h, target, mask, backend="triton")
    (grad,) = torch.autograd.grad(1.7 * loss, h)  # upstream gradient ≠ 1
    ref_h = hidden.float().requires_grad_()
    ref = masked_mse_definition(ref_h, target.float(), mask)
    (ref_grad,) = torch.autograd.grad(1.7 * ref, ref_h)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert_close(loss, ref, dtype, "loss")
    assert_close(grad, ref_grad, dtype, "grad")
    assert (grad[1] == 0).all()


def test_hand_checked_value():
    """h = 1 everywhere, target 0: tokens 0 and 2 counted, each (1 − 0)² → mean 1; grad 2/(2·4)."""
    h = torch.ones(1, 3, 4, requires_grad=True)
    loss = fused_masked_mse(h, torch.zeros(4), torch.tensor([[True, False, True]]), backend="triton")
    loss.backward()
    assert loss.item() == 1.0
    torch.testing.assert_close(h.grad[0, :, 0], torch.tensor([0.25, 0.0, 0.25]))


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_nothing_counted_gives_zero(backend):
    hidden, target, mask = _inputs(torch.float32, "tensor")
    h = hidden.requires_grad_()
    loss = fused_masked_mse(h, target, torch.zeros_like(mask), backend=backend)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(h.grad, torch.zeros_like(h))


def test_deterministic_and_no_grad_to_target():
    hidden, target, mask = _inputs(torch.float32, "tensor")
    target.requires_grad_()
    runs = [fused_masked_mse(hidden, target, mask, backend="triton") for _ in range(2)]
    assert runs[0].item() == runs[1].item()
    assert not fused_masked_mse(hidden, target, mask, backend="torch").requires_grad


def test_torch_path_gradcheck_float64():
    g = torch.Generator(torch.get_default_device()).manual_seed(0)
    hidden = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    assert torch.autograd.gradcheck(lambda h: fused_masked_mse(h, target, mask, backend="torch"), (hidden,))
