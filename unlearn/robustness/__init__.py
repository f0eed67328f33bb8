"""Robustness attacks: does unlearned knowledge come back? `python -m unlearn attack --config configs/attacks/...`."""

from unlearn.robustness.ablation import DirectionAblation
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.logit_lens import LogitLens
from unlearn.robustness.ood_finetune import OutOfDomainFineTune
from unlearn.robustness.relearn import Relearn

__all__ = ["Attack", "DirectionAblation", "LogitLens", "OutOfDomainFineTune", "Relearn", "Target"]
