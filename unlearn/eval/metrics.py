"""Evaluation metrics as torchmetrics states (counts, sums, or per-item values), so they merge across ranks."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

import torch
from scipy.stats import ks_2samp
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from unlearn.answers import normalize_answer
from unlearn.eval.bounds import clopper_pearson_upper, expectation_upper, std_upper
from unlearn.eval.mia import auc, privleak
from unlearn.eval.nli import NLIJudge
from unlearn.eval.rouge import rouge_l_recall
from unlearn.eval.scoring import mcq_predictions

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


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

    def update(self, predictions: list[str], answers: list[str]) -> None:
        """Counts a batch's exact matches, compared after normalisation."""
        pairs = _pairs(predictions, answers)
        self.correct += sum(normalize_answer(p) == normalize_answer(r) for p, r in pairs)
        self.total += len(answers)


class MCQAccuracy(_Accuracy):
    """Share of rows whose highest-scoring choice is the true one."""

    def update(self, scores: torch.Tensor, answers: torch.Tensor) -> None:
        """scores: (B, C) per-choice log-likelihoods; answers: (B,) index of the true choice."""
        if scores.ndim != 2 or answers.ndim != 1 or scores.shape[0] != answers.shape[0]:
            shapes = f"{tuple(scores.shape)} and {tuple(answers.shape)}"
            raise ValueError(f"need scores (B, C) and answers (B,); got {shapes}")
        self.correct += (mcq_predictions(scores) == answers.to(scores.device)).sum()
        self.total += answers.shape[0]


class Entailment(_Accuracy):
    """Share of generated answers an NLI model judges to entail the true answer: a hit that exact match misses.

    Paper: Yuan et al. 2024, "A Closer Look at Machine Unlearning for Large Language Models", arXiv:2410.08109
    (their entailment score, with the same default NLI model).
    """

    def __init__(
        self,
        model: str = "sileod/deberta-v3-base-tasksource-nli",
        premise: Literal["prediction", "answer"] = "prediction",
        batch_size: int = 32,
        **kwargs,
    ) -> None:
        """
        Args:
            model: a sequence-classification NLI model, by hub id or local path, whose config names an
                "entailment" label in id2label.
            premise: which text is the premise; the other is the hypothesis. "prediction" asks whether the
                generated answer entails the true answer (the true answer's fact was stated).
            batch_size: pairs per NLI forward pass.
        """
        super().__init__(**kwargs)
        if premise not in ("prediction", "answer"):
            raise ValueError(f"premise={premise!r} must be 'prediction' or 'answer'")
        self.premise = premise
        self.judge = NLIJudge(model, batch_size=batch_size)

    def update(self, predictions: list[str], answers: list[str], entailed: torch.Tensor | None = None) -> None:
        """Judge each pair, or count the verdicts `entailed` (B,) that `entailed()` already gave for these pairs."""
        entailed = self.entailed(predictions, answers) if entailed is None else entailed
        self.correct += int(entailed.sum())
        self.total += len(answers)

    def entailed(self, predictions: list[str], answers: list[str]) -> torch.Tensor:
        """(B,) bool: the judge's verdict per pair, for per-item results."""
        pairs = list(_pairs(predictions, answers))
        if self.premise == "answer":
            pairs = [(r, p) for p, r in pairs]
        return self.judge([p for p, _ in pairs], [h for _, h in pairs])


class NumericMatch(_Accuracy):
    """GSM8K accuracy: the last number of the generation equals the true answer's final number exactly."""

    def update(self, predictions: list[str], answers: list[str]) -> None:
        """Counts a batch's generations whose final number is the answer's."""
        pairs = list(_pairs(predictions, answers))
        self.correct += sum(numbers_match(p, r) for p, r in pairs)
        self.total += len(pairs)


def numbers_match(prediction: str, answer: str) -> bool:
    """Whether both texts end in the same number (compared as exact rationals, so 18 == 18.0 and 1,000 == 1000)."""
    predicted, expected = final_number(prediction), final_number(answer)
    if expected is None:
        raise ValueError(f"answer {answer!r} holds no number; GSM8K answers end in '#### <number>'")
    return predicted is not None and Fraction(predicted) == Fraction(expected)


def final_number(text: str) -> str | None:
    """The last number in a text with thousands commas removed (GSM8K's "#### 1,234" gives "1234"); None if none."""
    numbers = NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


class _Mean(Metric):
    """Sum and count of per-item values, so the mean over every rank's items is exact, not a mean of means."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("value_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, values: torch.Tensor) -> None:
        self.value_sum += values.detach().double().sum().to(self.value_sum.device)
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        if int(self.count) == 0:
            raise ValueError(f"{type(self).__name__}: no items were evaluated; call update() first")
        return (self.value_sum / self.count).float()  # ()


class RougeLRecall(_Mean):
    """Mean ROUGE-L recall of generated answers against the true ones (TOFU's ROUGE): partial credit for open ones."""

    def update(self, predictions: list[str], answers: list[str]) -> None:
        """Adds each generation's ROUGE-L recall against its answer to the mean."""
        self._add(torch.tensor([rouge_l_recall(p, r) for p, r in _pairs(predictions, answers)]))


class AnswerProbability(_Mean):
    """TOFU's probability: mean over questions of ``P(a|q)^(1/|a|)``, the length-normalised answer likelihood."""

    def update(self, probabilities: torch.Tensor) -> None:
        """`probabilities` (B,) are ``exp(mean answer-token log-prob)`` per question."""
        self._add(probabilities)


class TruthRatio(Metric):
    """TOFU's truth ratio over questions, summarised as the paper does for each side.

    Paper: Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv:2401.06121, §2.5.

    Per question ``R = mean_k P(â_k|q)^(1/|â_k|) / P(ã|q)^(1/|ã|)`` (â_k perturbed, ã paraphrased answer). On the
    forget side the metric reports ``mean R`` (near 1 once the true answer is no likelier than wrong ones); on the
    retain side ``mean max(0, 1 − R)`` (higher is better, the form model utility uses).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, side: Literal["forget", "retain"], **kwargs) -> None:
        super().__init__(**kwargs)
        if side not in ("forget", "retain"):
            raise ValueError(f"side={side!r} must be 'forget' or 'retain'")
        self.side = side
        self.add_state("ratios", default=[], dist_reduce_fx="cat")

    def update(self, ratios: torch.Tensor) -> None:
        """`ratios` (B,) are the per-question R."""
        self.ratios.append(ratios.detach().double())

    def compute(self) -> torch.Tensor:
        """The side's summary over every rank's questions: mean R (forget), mean max(0, 1 − R) (retain)."""
        ratios = _nonempty(self, self.ratios)
        if self.side == "retain":
            ratios = (1 - ratios).clamp_min(0)
        return ratios.mean().float()


class ForgetQuality(Metric):
    """TOFU's forget quality: the KS-test p-value that the forget truth ratios come from the retain model's.

    Paper: Maini et al. 2024, arXiv:2401.06121, §2.5: ``p`` of the two-sample Kolmogorov-Smirnov test
    (``scipy.stats.ks_2samp``, two-sided, exact for small samples) between R of the evaluated model and R of a
    model never trained on the forget set, on the same questions. High (near 1) means indistinguishable.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("ratios", default=[], dist_reduce_fx="cat")
        self.add_state("retain_ratios", default=[], dist_reduce_fx="cat")

    def update(self, ratios: torch.Tensor, retain_ratios: torch.Tensor) -> None:
        """(B,) truth ratios of the evaluated and of the retain model on the same questions."""
        self.ratios.append(ratios.detach().double())
        self.retain_ratios.append(retain_ratios.detach().double().to(ratios.device))

    def compute(self) -> torch.Tensor:
        """The KS p-value over every rank's questions: the test needs both whole samples."""
        ratios, retain = _nonempty(self, self.ratios), _nonempty(self, self.retain_ratios)
        return torch.tensor(ks_2samp(ratios.cpu().numpy(), retain.cpu().numpy()).pvalue, dtype=torch.float32)


class LeakageBound(Metric):
    """Mean over prompts of the Clopper-Pearson upper bound on P(a sampled answer leaks), not just greedy's verdict."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, delta: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delta = delta
        self.add_state("bound_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("prompts", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, leaks: torch.Tensor, samples: int) -> None:
        """`leaks` (B,) counts, per prompt, the samples out of `samples` that gave the true answer."""
        for k in leaks.tolist():
            self.bound_sum += clopper_pearson_upper(int(k), samples, delta=self.delta)
        self.prompts += len(leaks)

    def compute(self) -> torch.Tensor:
        """The mean bound over every rank's prompts; none evaluated is an error, not a NaN in a report."""
        if int(self.prompts) == 0:
            raise ValueError("LeakageBound: no prompts were evaluated; call update() first")
        return (self.bound_sum / self.prompts).float()  # ()


class ScoreBound(_Mean):
    """Mean over prompts of the DKW upper bound on the mean or the standard deviation of a sampled answer's score.

    Paper: Scholten et al. 2025, arXiv:2410.03523 (bounds from the DKW band of the N sampled scores of a prompt).
    """

    higher_is_better = False

    def __init__(self, statistic: Literal["mean", "std"] = "mean", delta: float = 0.01, **kwargs) -> None:
        """
        Args:
            statistic: mean bounds E[score] (``expectation_upper``), std its standard deviation (``std_upper``).
            delta: δ, the failure probability of each prompt's bound (0.01: 99% confidence).
        """
        super().__init__(**kwargs)
        if statistic not in ("mean", "std"):
            raise ValueError(f"statistic={statistic!r} must be 'mean' or 'std'")
        self.statistic = statistic
        self.delta = delta

    def update(self, scores: torch.Tensor) -> None:
        """`scores` (B, N): per prompt, the scores in [0, 1] of its N sampled answers."""
        bound = expectation_upper if self.statistic == "mean" else std_upper
        self._add(torch.tensor([bound(row, delta=self.delta) for row in scores], dtype=torch.float64))


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
        """The AUC over every rank's rows, the scores negated so that higher means more member-like."""
        scores, members = self._split()
        return torch.tensor(auc(-scores[members], -scores[~members]), dtype=torch.float32)

    def _split(self) -> tuple[torch.Tensor, torch.Tensor]:
        scores, members = dim_zero_cat(self.scores), dim_zero_cat(self.members)
        if not members.any() or members.all():
            raise ValueError(f"{type(self).__name__} needs both members and non-members")
        return scores, members


class PrivLeak(MembershipAUC):
    """MUSE's PrivLeak: the unlearned model's MIA AUC relative to a retain model's on the same rows, in percent.

    Paper: Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv:2407.06460.

    ``PrivLeak = (AUC_unlearned − AUC_retain) / AUC_retain × 100`` with MUSE's orientation
    ``AUC = P(s_member > s_nonmember)`` of the loss-like scores of `unlearn.eval.mia`, i.e. ``1 −`` the
    `MembershipAUC` of the same scores: a model that still remembers has AUC near 0 and PrivLeak near −100
    (under-unlearning); 0 is ideal; positive means the forget set now looks less familiar than unseen text.
    """

    higher_is_better = None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("retain_scores", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, members: torch.Tensor, retain_scores: torch.Tensor) -> None:
        """(B,) loss-like scores of the evaluated model, membership, and the retain model's scores of the same rows."""
        super().update(scores, members)
        self.retain_scores.append(retain_scores.detach().double().to(scores.device))

    def compute(self) -> torch.Tensor:
        """100·(AUC_unlearned − AUC_retain)/AUC_retain over every rank's rows, in MUSE's orientation."""
        scores, members = self._split()
        retain = dim_zero_cat(self.retain_scores)
        auc_unlearned = auc(scores[members], scores[~members])
        auc_retain = auc(retain[members], retain[~members])
        return torch.tensor(100 * privleak(auc_unlearned, auc_retain), dtype=torch.float32)


def _pairs(predictions: list[str], answers: list[str]):
    """(prediction, answer) pairs; a length mismatch means rows were lost, so it is an error."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    return zip(predictions, answers, strict=True)


def _nonempty(metric: Metric, values: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A cat state as one tensor; no items is an error, not a silent NaN in a report."""
    values = dim_zero_cat(values) if isinstance(values, list) and values else values
    if isinstance(values, list) or values.numel() == 0:
        raise ValueError(f"{type(metric).__name__}: no items were evaluated; call update() first")
    return values
