"""One LightningModule per method family; choose one in YAML with `model.class_path`."""

from unlearn.methods.base import UnlearnModule
from unlearn.methods.divergence import (
    CEU,
    NPO,
    UNDIAL,
    WGA,
    GradDiff,
    GradientAscent,
    ReferenceScored,
    RetainRegularised,
    SatImp,
    SimNPO,
)
from unlearn.methods.elm import ELM
from unlearn.methods.entropy import EntropyRegularised, GradDiffEntropy, NPOEntropy
from unlearn.methods.finetune import FineTune
from unlearn.methods.pdu import PDU
from unlearn.methods.rejection import DPO, IDKAP, AltPO, IDKFineTune
from unlearn.methods.representation import RMU, RMULAT, RR, AdaptiveRMU
from unlearn.methods.sam import NPOSAM
from unlearn.methods.tar import TAR

__all__ = [
    "CEU",
    "NPOSAM",
    "ELM",
    "PDU",
    "UNDIAL",
    "WGA",
    "EntropyRegularised",
    "GradDiffEntropy",
    "NPOEntropy",
    "SatImp",
    "DPO",
    "IDKAP",
    "NPO",
    "RMU",
    "RMULAT",
    "RR",
    "AdaptiveRMU",
    "AltPO",
    "FineTune",
    "GradDiff",
    "GradientAscent",
    "IDKFineTune",
    "ReferenceScored",
    "RetainRegularised",
    "SimNPO",
    "TAR",
    "UnlearnModule",
]
