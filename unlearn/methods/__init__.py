"""One LightningModule per method family; choose one in YAML with `model.class_path`."""

from unlearn.methods.base import UnlearnModule
from unlearn.methods.divergence import NPO, GradDiff, GradientAscent, ReferenceScored, RetainRegularised, SimNPO
from unlearn.methods.finetune import FineTune
from unlearn.methods.rejection import DPO, IDKFineTune
from unlearn.methods.representation import RMU

__all__ = [
    "DPO",
    "NPO",
    "RMU",
    "FineTune",
    "GradDiff",
    "GradientAscent",
    "IDKFineTune",
    "ReferenceScored",
    "RetainRegularised",
    "SimNPO",
    "UnlearnModule",
]
