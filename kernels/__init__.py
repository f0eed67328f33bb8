"""Triton kernels for unlearning's hot paths, installed as ``unlearn.kernels``."""

from unlearn.kernels.entropy import entropy, entropy_reference
from unlearn.kernels.fused_logprob import fused_linear_logprob, linear_logprob_reference
from unlearn.kernels.rmu_mse import masked_mse, masked_mse_reference

__all__ = [
    "entropy",
    "entropy_reference",
    "fused_linear_logprob",
    "linear_logprob_reference",
    "masked_mse",
    "masked_mse_reference",
]
