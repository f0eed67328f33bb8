"""Objectives as pure functions of logits, log-likelihoods, hidden states and masks."""

from unlearn.losses.distillation import ceu_loss, drop_first_answer_tokens, undial_loss
from unlearn.losses.divergence import (
    gradient_ascent_loss,
    kl_to_reference,
    logit_margin_flattening_loss,
    npo_loss,
    simnpo_loss,
)
from unlearn.losses.elm import elm_erase_loss, elm_target_logits
from unlearn.losses.entropy import entropy_objective, token_entropy
from unlearn.losses.gate import gate_bce_loss
from unlearn.losses.nll import LMHeadInputs, mean_token_nll, sequence_nll, shifted_logprobs
from unlearn.losses.rejection import dpo_loss, idk_ap_retain_loss
from unlearn.losses.representation import adaptive_steering_coeff, masked_mse, rmu_loss, rr_coefficients, rr_loss
from unlearn.losses.reweighted import satimp_loss, wga_loss
from unlearn.losses.tar import hidden_distance, tamper_resistance_loss, trajectory_weights

__all__ = [
    "adaptive_steering_coeff",
    "ceu_loss",
    "drop_first_answer_tokens",
    "logit_margin_flattening_loss",
    "satimp_loss",
    "undial_loss",
    "wga_loss",
    "LMHeadInputs",
    "dpo_loss",
    "elm_erase_loss",
    "elm_target_logits",
    "entropy_objective",
    "gate_bce_loss",
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
    "hidden_distance",
    "tamper_resistance_loss",
    "trajectory_weights",
]
