"""RMU and adaptive RMU with `kernel_backend: triton` (interpreted) train on the kernel's masked MSE, with the
PyTorch reference's loss and gradients."""

import pytest
import torch
import unlearn.kernels

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticPassages
from unlearn.losses import masked_mse
from unlearn.methods import RMU, AdaptiveRMU

pytestmark = pytest.mark.kernels


@pytest.mark.parametrize("target_shape", [(6,), (2, 5, 6)])
def test_loss_backend_triton_matches_torch_with_global_token_count(target_shape, assert_close):
    g = torch.Generator(torch.get_default_device()).manual_seed(0)
    hidden = torch.randn(2, 5, 6, generator=g)
    target = torch.randn(target_shape, generator=g)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 1, 1]])
    for num_tokens in (None, torch.tensor(7.5)):
        values, grads = [], []
        for backend in ("torch", "triton"):
            h = hidden.clone().requires_grad_()
            values.append(masked_mse(h, target, mask, num_tokens=num_tokens, backend=backend))
            grads.append(torch.autograd.grad(2.3 * values[-1], h)[0])
        assert_close(values[1], values[0], torch.float32, "loss")
        assert_close(grads[1], grads[0], torch.float32, "grad")


@pytest.mark.parametrize("method", [RMU, AdaptiveRMU])
def test_rmu_kernel_backend_triton_matches_the_reference(method, monkeypatch, assert_close):
    calls = []
    kernel = unlearn.kernels.fused_masked_mse
    monkeypatch.setattr(unlearn.kernels, "fused_masked_mse", lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    device = torch.get_default_device()
    with torch.device("cpu"):  # the data and model are built where a run builds them, then moved
        data = UnlearnDataModule(
            "tiny-scratch", forget=SyntheticPassages("forget01"), retain=SyntheticPassages("retain"), batch_size=4
        )
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
    batch = {role: {k: v.to(device) for k, v in rows.items()} for role, rows in batch.items()}
    runs = []
    default = "auto"  # the default: the PyTorch reference for the masked MSE on every device
    for backend in (default, "triton"):
        with torch.device("cpu"):
            module = method(model="tiny-scratch", layer=2, kernel_backend=backend)
            module.configure_model()
        terms = module.to(device).objective(batch)
        params = [p for p in module.model.parameters() if p.requires_grad]
        runs.append((terms, torch.autograd.grad(terms["loss"], params)))
        assert len(calls) == (0 if backend == default else 2), "forget and retain terms each take the kernel"
    (reference, reference_grads), (fused, fused_grads) = runs
    for name in ("loss", "forget", "retain"):
        assert_close(fused[name], reference[name], torch.float32, name)
    for got, want in zip(fused_grads, reference_grads, strict=True):
        assert_close(got, want, torch.float32, "grad")
    assert any(g.abs().sum() > 0 for g in fused_grads)
