"""Triton kernels for unlearning's hot paths, installed as ``unlearn.kernels``."""

from unlearn.kernels.entropy import entropy, entropy_definition
from unlearn.kernels.fused_logprob import fused_linear_logprob, linear_logprob_definition
from unlearn.kernels.rmu_mse import fused_masked_mse, masked_mse_definition

__all__ = [
    "entropy",
    "entropy_definition",
    "fused_linear_logprob",
    "linear_logprob_definition",
    "fused_masked_mse",
    "masked_mse_definition",
]
