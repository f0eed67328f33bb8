"""One LightningModule per method family; choose one in YAML with `model.class_path`."""

from unlearn.methods.base import UnlearnModule
from unlearn.methods.divergence import NPO, GradDiff, GradientAscent, RetainRegularised, SimNPO
from unlearn.methods.finetune import FineTune
from unlearn.methods.rejection import IDKFineTune
from unlearn.methods.representation import RMU

__all__ = [
    "NPO",
    "RMU",
    "FineTune",
    "GradDiff",
    "GradientAscent",
    "IDKFineTune",
    "RetainRegularised",
    "SimNPO",
    "UnlearnModule",
]
