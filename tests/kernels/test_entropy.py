"""Entropy of softmax(x / T): Triton (interpreted) and chunked PyTorch paths against the eager definition."""

import math

import pytest
import torch
from unlearn.kernels.entropy import _entropy_torch, entropy, entropy_definition

pytestmark = pytest.mark.kernels


def _logits(shape, dtype, seed=0):
    g = torch.Generator(torch.get_default_device()).manual_seed(seed)
    return (torch.randn(shape, generator=g) * 3).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_triton_matches_reference(dtype, assert_close):
    x = _logits((37, 1007), dtype).requires_grad_()
    up = torch.randn(37, generator=torch.Generator(torch.get_default_device()).manual_seed(1))
    ent = entropy(x, temperature=0.7, backend="triton")
    (grad,) = torch.autograd.grad((up * ent).sum(), x)
    ref_x = x.detach().float().requires_grad_()
    ref = entropy_definition(ref_x, temperature=0.7)
    (ref_grad,) = torch.autograd.grad((up * ref).sum(), ref_x)
    assert ent.dtype == torch.float32 and grad.dtype == dtype
    assert_close(ent, ref, dtype, "entropy")
    assert_close(grad, ref_grad, dtype, "grad")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_leading_dims_and_minus_inf_logits(backend, assert_close):
    """A masked vocabulary (−inf logits): finite values and gradients, equal to the reference's; 0 where q = 0."""
    x = _logits((2, 3, 300), torch.float32)
    x[0, 1, :150] = float("-inf")  # a masked-out half of the vocabulary
    x[1, 2, 5:] = float("-inf")  # five live tokens
    up = torch.randn(2, 3, generator=torch.Generator(torch.get_default_device()).manual_seed(1))
    x.requires_grad_()
    ent = entropy(x, temperature=0.7, backend=backend)
    (grad,) = torch.autograd.grad((up * ent).sum(), x)
    ref = entropy_definition(x, temperature=0.7)
    (ref_grad,) = torch.autograd.grad((up * ref).sum(), x)
    assert ent.shape == (2, 3) and torch.isfinite(ent).all()
    assert torch.isfinite(grad).all() and torch.isfinite(ref_grad).all()
    assert (grad[x.detach() == float("-inf")] == 0).all()
    assert_close(ent, ref, torch.float32, "entropy")
    assert_close(grad, ref_grad, torch.float32, "grad")
    finite = x.detach().nan_to_num(neginf=-1e30).requires_grad_()  # the reference agrees with very negative logits
    (far_grad,) = torch.autograd.grad((up * entropy_definition(finite, temperature=0.7)).sum(), finite)
    assert_close(ref_grad, far_grad, torch.float32, "grad at -1e30")


def test_uniform_logits_give_log_v():
    ent = entropy(torch.zeros(3, 777), temperature=5.0, backend="triton")
    torch.testing.assert_close(ent, torch.full((3,), math.log(777)))


def test_chunked_torch_path_matches_and_gradchecks():
    x = _logits((9, 13), torch.float64).requires_grad_()
    torch.testing.assert_close(_entropy_torch(x, 0.6, chunk_size=4), entropy_definition(x, temperature=0.6))
    assert torch.autograd.gradcheck(lambda t: _entropy_torch(t, 0.6, chunk_size=4), (x,))
    assert entropy(x, backend="auto").shape == (9,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        entropy(torch.zeros(2, 3), temperature=-1.0)
    with pytest.raises(ValueError, match="backend"):
        entropy(torch.zeros(2, 3), backend="gpu")
