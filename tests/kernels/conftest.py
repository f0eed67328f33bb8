"""Kernel tests run the Triton code in its CPU interpreter, or compiled on a GPU with TRITON_INTERPRET=0; select them
with ``-m kernels``."""

import importlib
import os
import sys

# Read when @triton.jit decorates, so before triton.language loads.
INTERPRETING = os.environ.setdefault("TRITON_INTERPRET", "1") == "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import triton.language.standard  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

if INTERPRETING and not isinstance(triton.language.standard.zeros, InterpretedFunction):
    # Another test folder imported triton first (lightning → torch): decorate its jit'd library again.
    importlib.reload(triton.language.standard)
    importlib.reload(sys.modules["triton.language"])
for _name in [name for name in sys.modules if name.startswith("unlearn.kernels.")]:
    importlib.reload(sys.modules[_name])


def pytest_configure(config):
    config.addinivalue_line("markers", "kernels: Triton kernels run under TRITON_INTERPRET=1 on CPU")


@pytest.fixture(autouse=True)
def kernel_device():
    """Tensors made without a device live where the kernels run: the CPU interpreted, the GPU compiled (tests draw
    from ``torch.Generator(torch.get_default_device())``)."""
    with torch.device("cpu" if INTERPRETING else "cuda"):
        yield


# dtype of the kernel's inputs → (atol, rtol) against the fp32 reference on the same (upcast) inputs.
TOLERANCES = {
    torch.float32: (1e-5, 5e-4),
    torch.float16: (2e-3, 1e-2),
    torch.bfloat16: (2e-2, 5e-2),
}


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, name: str) -> None:
    """Compare in units of the expected tensor's largest magnitude, so any scale shares one table."""
    atol, rtol = TOLERANCES[dtype]
    scale = expected.abs().max().clamp_min(1.0)
    actual, expected = actual.double() / scale, expected.double() / scale
    bad = ~torch.isclose(actual, expected, atol=atol, rtol=rtol)
    if bad.any():
        where = bad.nonzero()[:5].tolist()
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} elements differ (scaled by {float(scale):.3g}), "
            f"max |diff| {float((actual - expected).abs().max()):.3g}, first at {where}: "
            f"{actual[bad][:5].tolist()} vs {expected[bad][:5].tolist()}"
        )


@pytest.fixture
def assert_close():
    """Kernel-vs-reference comparison with the dtype tolerance table."""
    return _assert_close
