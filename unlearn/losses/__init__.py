"""Objectives as pure functions of logits, log-likelihoods, hidden states and masks."""

from unlearn.losses.divergence import gradient_ascent_loss, kl_to_reference, npo_loss, simnpo_loss
from unlearn.losses.entropy import entropy_objective, token_entropy
from unlearn.losses.nll import LMHeadInputs, mean_token_nll, sequence_nll, shifted_logprobs
from unlearn.losses.rejection import dpo_loss, idk_ap_retain_loss
from unlearn.losses.representation import adaptive_steering_coeff, masked_mse, rmu_loss, rr_coefficients, rr_loss

__all__ = [
    "adaptive_steering_coeff",
    "LMHeadInputs",
    "dpo_loss",
    "entropy_objective",
    "idk_ap_retain_loss",
    "token_entropy",
    "gradient_ascent_loss",
    "kl_to_reference",
    "masked_mse",
    "mean_token_nll",
    "npo_loss",
    "rmu_loss",
    "rr_coefficients",
    "rr_loss",
    "sequence_nll",
    "shifted_logprobs",
    "simnpo_loss",
]
