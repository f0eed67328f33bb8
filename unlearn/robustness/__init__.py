"""Robustness attacks: does unlearned knowledge come back? `python -m unlearn attack` runs one, `python -m
unlearn.robustness` a suite of them against one or several models."""

from unlearn.robustness.ablation import DirectionAblation
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.gcg import AdversarialPrompt
from unlearn.robustness.logit_lens import LogitLens
from unlearn.robustness.ood_finetune import OutOfDomainFineTune
from unlearn.robustness.perturbation import InformedPerturbation
from unlearn.robustness.pruning import SetDifferencePruning
from unlearn.robustness.quantization import Quantization
from unlearn.robustness.relearn import Relearn

__all__ = [
    "AdversarialPrompt",
    "Attack",
    "DirectionAblation",
    "InformedPerturbation",
    "LogitLens",
    "OutOfDomainFineTune",
    "Quantization",
    "Relearn",
    "SetDifferencePruning",
    "Target",
]
