"""Accuracy metrics as torchmetrics states (correct and total counts), so they sum across ranks."""

from __future__ import annotations

import re
import string

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from unlearn.eval.bounds import clopper_pearson_upper
from unlearn.eval.mia import auc
from unlearn.eval.scoring import mcq_predictions

PUNCTUATION = frozenset(string.punctuation)
ARTICLES = re.compile(r"\b(a|an|the)\b")


class _Accuracy(Metric):
    """Counts of correct and evaluated items; the subclasses only say what counts as correct."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def compute(self) -> torch.Tensor:
        """Fraction correct over every rank's items; no items is an error, not a silent NaN in a report."""
        if int(self.total) == 0:
            raise ValueError(f"{type(self).__name__}: no items were evaluated; call update() first")
        return self.correct.double().div(self.total).float()  # ()


class QAAccuracy(_Accuracy):
    """Exact match after SQuAD-style normalisation, so case, punctuation and articles do not count."""

    def update(self, predictions: list[str], references: list[str]) -> None:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        pairs = zip(predictions, references, strict=True)
        self.correct += sum(normalize_answer(p) == normalize_answer(r) for p, r in pairs)
        self.total += len(references)


class MCQAccuracy(_Accuracy):
    """Share of rows whose highest-scoring choice is the true one."""

    def update(self, scores: torch.Tensor, answers: torch.Tensor) -> None:
        """scores: (B, C) per-choice log-likelihoods; answers: (B,) index of the true choice."""
        if scores.ndim != 2 or answers.ndim != 1 or scores.shape[0] != answers.shape[0]:
            shapes = f"{tuple(scores.shape)} and {tuple(answers.shape)}"
            raise ValueError(f"need scores (B, C) and answers (B,); got {shapes}")
        self.correct += (mcq_predictions(scores) == answers.to(scores.device)).sum()
        self.total += answers.shape[0]


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


class LeakageBound(Metric):
    """Mean over prompts of the Clopper-Pearson upper bound on P(a sampled answer leaks), not just greedy's verdict."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, alpha: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha
        self.add_state("bound_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("prompts", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, leaks: torch.Tensor, samples: int) -> None:
        """`leaks` (B,) counts, per prompt, the samples out of `samples` that gave the true answer."""
        for k in leaks.tolist():
            self.bound_sum += clopper_pearson_upper(int(k), samples, alpha=self.alpha)
        self.prompts += len(leaks)

    def compute(self) -> torch.Tensor:
        if int(self.prompts) == 0:
            raise ValueError("LeakageBound: no prompts were evaluated; call update() first")
        return (self.bound_sum / self.prompts).float()  # ()


class MembershipAUC(Metric):
    """AUC of telling members from non-members by a loss-like MIA score; 0.5 means the forget set looks unseen."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("members", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, members: torch.Tensor) -> None:
        """`scores` (B,) are loss-like (higher = less member-like); `members` (B,) is 1 for members."""
        self.scores.append(scores.detach().double())
        self.members.append(members.bool())

    def compute(self) -> torch.Tensor:
        scores, members = dim_zero_cat(self.scores), dim_zero_cat(self.members)
        if not members.any() or members.all():
            raise ValueError("MembershipAUC needs both members and non-members")
        return torch.tensor(auc(-scores[members], -scores[~members]), dtype=torch.float32)
