"""TOFU's evaluation (Maini et al. 2024, arXiv:2401.06121): probability, ROUGE, truth ratio, forget quality, utility.

One task per side: on the forget side it reports forget quality against a retain model, on the retain side model
utility, the harmonic mean of the retain-side numbers (TOFU also averages in real-author and world-fact sets,
which the embedded benchmark does not have).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torchmetrics import Metric

from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.data.sources import Source
from unlearn.eval.likelihood import mean_answer_logprobs
from unlearn.eval.metrics import AnswerProbability, ForgetQuality, TruthRatio
from unlearn.eval.retain_model import RetainModelScores
from unlearn.eval.tasks import QATask

UTILITY_PARTS = ("answer_prob", "qa_rougeL", "truth_ratio")


class TOFUTask(QATask):
    """QA generation metrics plus TOFU's likelihood metrics on rows with paraphrased and perturbed answers."""

    def __init__(
        self,
        split: str,
        source: Source,
        side: Literal["forget", "retain"] = "forget",
        retain_model: str | None = "tiny-retain",
        max_new_tokens: int = 16,
        nli_model: str | None = None,
        limit: int | None = None,
    ) -> None:
        """
        Args:
            split: the label in metric names, e.g. forget or retain.
            source: qa rows with `perturbed_answers` (and optionally `paraphrased_question`/`paraphrased_answer`),
                e.g. unlearn.data.tofu.SyntheticPerturbedQA or TOFUSource.
            side: "forget" reports `<split>/forget_quality`; "retain" reports `<split>/model_utility`.
            retain_model: the model never trained on the forget set (built-in name, hub id or path) whose truth ratios
                forget quality compares against; computed once per task. None skips forget quality.
            max_new_tokens: generation budget per answer.
            nli_model: see QATask.
            limit: evaluate only the first N rows.
        """
        super().__init__(split, source, max_new_tokens=max_new_tokens, nli_model=nli_model, limit=limit)
        if side not in ("forget", "retain"):
            raise ValueError(f"TOFUTask({split}): side={side!r} must be 'forget' or 'retain'")
        self.side = side
        self.retain = RetainModelScores(retain_model) if retain_model and side == "forget" else None

    @property
    def metric_names(self) -> list[str]:
        utility = [f"{self.split}/model_utility"] if self.side == "retain" else []
        return super().metric_names + utility

    def make_metric_parts(self, build: bool = True) -> dict[str, Metric | None]:
        parts = super().make_metric_parts(build)
        parts.update(answer_prob=AnswerProbability(), truth_ratio=TruthRatio(self.side))
        if self.retain:
            parts["forget_quality"] = ForgetQuality()
        return parts

    def results(self, metric: Metric) -> dict[str, float]:
        values = super().results(metric)
        if self.side == "retain":
            values[f"{self.split}/model_utility"] = harmonic_mean([values[f"{self.split}/{k}"] for k in UTILITY_PARTS])
        return values

    def load(self) -> list[dict]:
        rows = super().load()
        for index, row in enumerate(rows):
            if not row.get("perturbed_answers"):
                raise ValueError(
                    f"{self.metric_name}: row {index} of {self.source.name} has no perturbed_answers; TOFUTask needs "
                    "a source with wrong answers, e.g. unlearn.data.tofu.SyntheticPerturbedQA or TOFUSource"
                )
        return rows

    def run(self, model, tokenizer, rows, metric, batch_size, progress, prompt_format=PLAIN) -> list[dict]:
        items = super().run(model, tokenizer, rows, metric, batch_size, progress, prompt_format)
        probability, ratio = likelihood_metrics(model, tokenizer, rows, batch_size, prompt_format)
        metric["answer_prob"].update(probability)
        metric["truth_ratio"].update(ratio)
        for item, p, r in zip(items, probability.tolist(), ratio.tolist(), strict=True):
            item.update(answer_prob=p, truth_ratio=r)
        if self.retain:
            retain_ratios = self.retain.values(
                model, rows, lambda m, t, r: likelihood_metrics(m, t, r, batch_size, prompt_format)[1]
            )
            metric["forget_quality"].update(ratio, retain_ratios)
            for item, r in zip(items, retain_ratios.tolist(), strict=True):
                item["retain_truth_ratio"] = r
        return items


def likelihood_metrics(
    model, tokenizer, rows: list[dict], batch_size: int, prompt_format: PromptFormat = PLAIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, ``P(a|q)^(1/|a|)`` and the truth ratio R, both (N,) float64, scoring each distinct pair once."""
    originals = [(r["question"], r["answer"]) for r in rows]
    paraphrased = [
        (r.get("paraphrased_question", q), r.get("paraphrased_answer", a))
        for r, (q, a) in zip(rows, originals, strict=True)
    ]
    perturbed = [(q, wrong) for r, (q, _) in zip(rows, paraphrased, strict=True) for wrong in r["perturbed_answers"]]
    pairs = list(dict.fromkeys(originals + paraphrased + perturbed))  # a paraphrase may be the original pair
    pair_rows = [{"question": q, "answer": a} for q, a in pairs]
    scored = mean_answer_logprobs(model, tokenizer, pair_rows, batch_size, prompt_format)
    logprob = dict(zip(pairs, scored.tolist(), strict=True))

    def lookup(keys: list[tuple[str, str]]) -> torch.Tensor:
        return torch.tensor([logprob[k] for k in keys], dtype=torch.float64)

    counts = [len(r["perturbed_answers"]) for r in rows]
    return lookup(originals).exp(), truth_ratio(lookup(paraphrased), list(lookup(perturbed).split(counts)))


def truth_ratio(paraphrased: torch.Tensor, perturbed: list[torch.Tensor]) -> torch.Tensor:
    """TOFU's truth ratio per question, from mean answer-token log-probs, computed in log space.

    Paper: Maini et al. 2024, arXiv:2401.06121, §2.5.1.

    ``R = (1/K) Σ_k P(â_k|q)^(1/|â_k|) / P(ã|q)^(1/|ã|) = exp(logsumexp_k(ℓ̂_k − ℓ̃) − log K)``, ℓ the mean
    answer-token log-probs. The paper's arithmetic mean over the K perturbed answers; TOFU's released code takes the
    geometric mean instead (``exp(mean_k ℓ̂_k − ℓ̃)``), which is never larger.

    Args:
        paraphrased: (N,) ℓ̃ of the paraphrased (true) answer per question.
        perturbed: N tensors (K_i,) of ℓ̂ of each question's perturbed answers, K_i ≥ 1.

    Returns:
        (N,) R; below 1 when the model prefers the true answer.
    """
    if len(perturbed) != len(paraphrased) or any(p.numel() == 0 for p in perturbed):
        raise ValueError(f"need one non-empty set of perturbed answers per question, got {len(perturbed)} sets")
    log_ratio = [
        torch.logsumexp(p - q, dim=0) - math.log(p.numel()) for p, q in zip(perturbed, paraphrased, strict=True)
    ]
    return torch.stack(log_ratio).exp() if log_ratio else paraphrased.new_zeros(0)


def harmonic_mean(values: list[float]) -> float:
    """TOFU's model utility aggregate: 0 if any part is 0, so one collapsed ability cannot be averaged away."""
    if any(v < 0 for v in values) or not values:
        raise ValueError(f"harmonic mean needs non-negative values, got {values}")
    return 0.0 if min(values) == 0 else len(values) / sum(1 / v for v in values)
