"""Evaluation tasks: which rows to score, how, and under which `<split>/<metric>` name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
from torchmetrics import Metric, MetricCollection

from unlearn.answers import generate_answers, normalize_answer
from unlearn.checks import UsageError
from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.data.sources import Source
from unlearn.eval.bounds import answer_entropy, clopper_pearson_upper, dkw_band, expectation_upper, std_upper
from unlearn.eval.likelihood import answer_forward
from unlearn.eval.metrics import (
    Entailment,
    LeakageBound,
    MCQAccuracy,
    MembershipAUC,
    NumericMatch,
    PrivLeak,
    QAAccuracy,
    RougeLRecall,
    ScoreBound,
    final_number,
)
from unlearn.eval.mia import loss_score, min_k_plus_plus_score, min_k_score, zlib_score
from unlearn.eval.retain_model import RetainModelScores
from unlearn.eval.rouge import rouge_l_recall
from unlearn.eval.scoring import choice_logprobs
from unlearn.losses import shifted_logprobs


class EvalTask(ABC):
    """One metric on one split; `run` updates the metric on this rank's rows and returns per-item results."""

    kind: str
    metric_suffix: str
    title: str = ""  # what the task measures, named in its progress bars ("forget MCQ"); default: the class name

    def __init__(self, split: str, source: Source, limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise UsageError(
                f"{type(self).__name__}({split}): limit={limit} would drop rows silently; set limit to 1 or more, "
                "or null for every row"
            )
        if source.kind != self.kind:
            raise ValueError(
                f"{type(self).__name__}({split}) needs a {self.kind} source; {source.name} is {source.kind}"
            )
        self.split = split
        self.source = source
        self.limit = limit

    @property
    def metric_name(self) -> str:
        """The task's main `<split>/<metric>` name, which also keys its per-item results."""
        return f"{self.split}/{self.metric_suffix}"

    @property
    def progress_name(self) -> str:
        """The name of the task's progress bars: its split and what it measures, e.g. "forget MCQ"."""
        return f"{self.split} {self.title or type(self).__name__}"

    @property
    def metric_names(self) -> list[str]:
        """Every name the task reports; a task whose metric is a MetricCollection reports one per member."""
        return [self.metric_name]

    def results(self, metric: Metric) -> dict[str, float]:
        """The task's numbers by name, synchronised across ranks by `compute`."""
        value = metric.compute()
        if isinstance(value, dict):
            return {f"{self.split}/{key}": float(v) for key, v in value.items()}
        return {self.metric_name: float(value)}

    def load(self) -> list[dict]:
        """The task's rows, at most `limit` of them, in a fixed order."""
        rows = self.source.load()
        if not rows:
            raise ValueError(f"evaluation task {self.metric_name} has no rows: {self.source.name} is empty")
        return rows[: self.limit]

    @abstractmethod
    def make_metric(self) -> Metric:
        """A fresh torchmetrics metric for this task (one instance per split)."""

    @abstractmethod
    def run(
        self,
        model,
        tokenizer,
        rows: list[dict],
        metric: Metric,
        batch_size: int,
        progress: bool,
        prompt_format: PromptFormat = PLAIN,
    ) -> list[dict]:
        """Score `rows` with questions put in `prompt_format`, update `metric`, and return one result per row."""


class QATask(EvalTask):
    """Open answers by greedy generation: exact match after normalisation, ROUGE-L recall, optionally NLI entailment."""

    kind = "qa"
    metric_suffix = "qa_acc"
    title = "QA"

    def __init__(
        self,
        split: str,
        source: Source,
        max_new_tokens: int = 16,
        nli_model: str | None = None,
        limit: int | None = None,
    ) -> None:
        """
        Args:
            split: the label in metric names, e.g. forget, retain, holdout.
            source: a qa source.
            max_new_tokens: generation budget per answer.
            nli_model: an NLI model (hub id or path, e.g. sileod/deberta-v3-base-tasksource-nli) to also report
                `<split>/qa_entailment`, the share of answers it judges to entail the true answer; None skips it.
            limit: evaluate only the first N rows.
        """
        super().__init__(split, source, limit)
        self.max_new_tokens = max_new_tokens
        self.nli_model = nli_model

    @property
    def metric_names(self) -> list[str]:
        return [f"{self.split}/{suffix}" for suffix in self.make_metric_parts(build=False)]

    def make_metric_parts(self, build: bool = True) -> dict[str, Metric | None]:
        """The metrics by suffix; `build=False` only names them (the NLI model is not loaded)."""
        parts: dict[str, Metric | None] = {"qa_acc": QAAccuracy(), "qa_rougeL": RougeLRecall()}
        if self.nli_model:
            parts["qa_entailment"] = Entailment(self.nli_model) if build else None
        return parts

    def make_metric(self) -> Metric:
        return MetricCollection(self.make_metric_parts(), compute_groups=False)

    def run(self, model, tokenizer, rows, metric, batch_size, progress, prompt_format=PLAIN) -> list[dict]:
        predictions = generate_answers(
            model,
            tokenizer,
            [r["question"] for r in rows],
            max_new_tokens=self.max_new_tokens,
            batch_size=batch_size,
            progress=progress,
            desc=f"{self.progress_name} generate",
            prompt_format=prompt_format,
        )
        answers = [r["answer"] for r in rows]
        metric["qa_acc"].update(predictions, answers)
        metric["qa_rougeL"].update(predictions, answers)
        items = [
            {"question": r["question"], "answer": a, "prediction": p, "rougeL": rouge_l_recall(p, a)}
            for r, p, a in zip(rows, predictions, answers, strict=True)
        ]
        if "qa_entailment" in metric:
            entailed = metric["qa_entailment"].entailed(predictions, answers)
            metric["qa_entailment"].update(predictions, answers, entailed=entailed)
            for item, verdict in zip(items, entailed.tolist(), strict=True):
                item["entailed"] = verdict
        return items


class GSM8KTask(EvalTask):
    """Grade-school maths (Cobbe et al. 2021, arXiv:2110.14168): the last number generated must equal the answer's."""

    kind = "qa"
    metric_suffix = "gsm8k_acc"
    title = "GSM8K"

    def __init__(
        self,
        split: str,
        source: Source,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        limit: int | None = None,
    ) -> None:
        """
        Args:
            split: the label in metric names, e.g. gsm8k.
            source: a qa source whose answers end in the final number (GSM8KSource: "... #### 72").
            max_new_tokens: generation budget for the worked solution.
            stop: strings that end a solution; default a blank line or the start of a new question.
            limit: evaluate only the first N rows.
        """
        super().__init__(split, source, limit)
        self.max_new_tokens = max_new_tokens
        self.stop = ["\n\n", "Question:"] if stop is None else stop

    def make_metric(self) -> Metric:
        return NumericMatch()

    def run(self, model, tokenizer, rows, metric, batch_size, progress, prompt_format=PLAIN) -> list[dict]:
        predictions = generate_answers(
            model, tokenizer, [r["question"] for r in rows], max_new_tokens=self.max_new_tokens,
            batch_size=batch_size, stop=self.stop, progress=progress, desc=f"{self.progress_name} generate",
            prompt_format=prompt_format,
        )  # fmt: skip
        answers = [r["answer"] for r in rows]
        metric.update(predictions, answers)
        return [
            {"question": r["question"], "answer": final_number(r["answer"]), "prediction": p,
             "predicted_number": final_number(p)}
            for r, p in zip(rows, predictions, strict=True)
        ]  # fmt: skip


class MCQTask(EvalTask):
    """Multiple choice by log-likelihood, with lm-evaluation-harness's `letter` or the `cloze` template."""

    kind = "mcq"
    metric_suffix = "mcq_acc"
    title = "MCQ"

    def __init__(
        self,
        split: str,
        source: Source,
        template: Literal["cloze", "letter"] = "cloze",
        description: str = "",
        limit: int | None = None,
    ) -> None:
        """
        Args:
            split: the label in metric names, e.g. forget, retain, mmlu.
            source: an mcq source.
            template: letter (question, lettered choices, `Answer:`, scored on ` A`..) or cloze (choice text).
            description: text before each letter-template question, as lm-evaluation-harness puts it.
            limit: evaluate only the first N rows.
        """
        super().__init__(split, source, limit)
        self.template = template
        self.description = description

    def make_metric(self) -> Metric:
        return MCQAccuracy()

    def run(self, model, tokenizer, rows, metric, batch_size, progress, prompt_format=PLAIN) -> list[dict]:
        scores = choice_logprobs(
            model,
            tokenizer,
            rows,
            template=self.template,
            description=self.description,
            batch_size=batch_size,
            progress=progress,
            desc=self.progress_name,
            prompt_format=prompt_format,
        )
        answers = torch.tensor([r["answer"] for r in rows], device=scores.device)
        metric.update(scores, answers)
        return [
            {"question": r["question"], "answer": r["answer"], "predicted": int(s.argmax())}
            for r, s in zip(rows, scores, strict=True)
        ]


class SampledQATask(EvalTask):
    """Probabilistic leakage (Scholten et al. 2025): sample N answers per question and bound what leaks at 1-delta.

    Per question: a Clopper-Pearson bound on P(a sample is the answer), and, from the DKW band of the samples'
    ROUGE-L recalls, bounds on their mean and standard deviation; each bound holds with probability 1-delta.
    """

    kind = "qa"
    metric_suffix = "leak_bound"
    title = "sampled QA"
    renamed_args = {"alpha": "delta"}

    def __init__(
        self,
        split: str,
        source: Source,
        num_samples: int = 32,
        temperature: float = 1.0,
        delta: float = 0.01,
        max_new_tokens: int = 16,
        limit: int | None = None,
    ) -> None:
        """
        Args:
            split: the label in metric names, e.g. forget.
            source: a qa source.
            num_samples: answers sampled per question.
            temperature: sampling temperature.
            delta: δ, the failure probability of each bound (Clopper-Pearson, DKW): 0.01 is 99% confidence.
            max_new_tokens: generation budget per answer.
            limit: evaluate only the first N rows.
        """
        super().__init__(split, source, limit)
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples} must be at least 1")
        self.num_samples = num_samples
        self.temperature = temperature
        self.delta = delta
        self.max_new_tokens = max_new_tokens

    @property
    def metric_names(self) -> list[str]:
        return [f"{self.split}/{suffix}" for suffix in self.make_metric()]

    def make_metric(self) -> Metric:
        parts = {
            "leak_bound": LeakageBound(delta=self.delta),
            "rougeL_mean_bound": ScoreBound("mean", delta=self.delta),
            "rougeL_std_bound": ScoreBound("std", delta=self.delta),
        }
        return MetricCollection(parts, compute_groups=False)

    def run(self, model, tokenizer, rows, metric, batch_size, progress, prompt_format=PLAIN) -> list[dict]:
        n = self.num_samples
        samples = generate_answers(
            model, tokenizer, [r["question"] for r in rows for _ in range(n)], max_new_tokens=self.max_new_tokens,
            batch_size=batch_size, do_sample=True, temperature=self.temperature, progress=progress,
            desc=f"{self.progress_name} sample", prompt_format=prompt_format,
        )  # fmt: skip
        items, leaks, scores = [], [], []
        for i, row in enumerate(rows):
            answers = samples[i * n : (i + 1) * n]
            k = sum(normalize_answer(a) == normalize_answer(row["answer"]) for a in answers)
            rouge = [rouge_l_recall(a, row["answer"]) for a in answers]
            leaks.append(k)
            scores.append(rouge)
            items.append({
                "question": row["question"], "answer": row["answer"], "leaks": k, "samples": n,
                "bound": clopper_pearson_upper(k, n, delta=self.delta), "answer_entropy": answer_entropy(answers),
                "rougeL": sum(rouge) / n, "rougeL_mean_bound": expectation_upper(rouge, delta=self.delta),
                "rougeL_std_bound": std_upper(rouge, delta=self.delta),
                "dkw_band": dkw_band(rouge, delta=self.delta).steps(),
            })  # fmt: skip
        metric["leak_bound"].update(torch.tensor(leaks), n)
        metric["rougeL_mean_bound"].update(torch.tensor(scores, dtype=torch.float64))
        metric["rougeL_std_bound"].update(torch.tensor(scores, dtype=torch.float64))
        return items


class MIATask(EvalTask):
    """Membership inference (LOSS, zlib, Min-K%, Min-K%++): can the forget rows still be told from unseen ones?"""

    kind = "qa"
    title = "MIA"

    def __init__(
        self,
        split: str,
        source: Source,
        nonmembers: Source,
        score: Literal["loss", "zlib", "min_k", "min_k_plus_plus"] = "min_k",
        k: float = 0.2,
        retain_model: str | None = None,
        limit: int | None = None,
    ) -> None:
        """
        Args:
            split: the label in metric names, e.g. forget.
            source: the members (e.g. the forget set).
            nonmembers: rows of the same kind the model never saw (e.g. holdout).
            score: which attack scores each row's answer tokens.
            k: the fraction of lowest-scoring tokens Min-K% and Min-K%++ average.
            retain_model: a model never trained on the members (built-in name, hub id or path) to also report MUSE's
                `<split>/mia_<score>_privleak` against; its scores are computed once. None skips it.
            limit: evaluate only the first N members and N non-members.
        """
        super().__init__(split, source, limit)
        if nonmembers.kind != self.kind:
            raise ValueError(f"MIATask({split}) needs qa non-members; {nonmembers.name} is {nonmembers.kind}")
        self.nonmembers = nonmembers
        self.score = score
        self.k = k
        self.retain = RetainModelScores(retain_model) if retain_model else None

    @property
    def metric_name(self) -> str:
        return f"{self.split}/mia_{self.score}_auc"

    @property
    def metric_names(self) -> list[str]:
        return [self.metric_name] + ([f"{self.split}/mia_{self.score}_privleak"] if self.retain else [])

    def load(self) -> list[dict]:
        members = [{**row, "member": 1} for row in super().load()]
        nonmembers = [{**row, "member": 0} for row in self.nonmembers.load()[: self.limit]]
        if not nonmembers:
            raise ValueError(f"evaluation task {self.metric_name} has no non-members: {self.nonmembers.name} is empty")
        return members + nonmembers

    def make_metric(self) -> Metric:
        parts = {f"mia_{self.score}_auc": MembershipAUC()}
        if self.retain:
            parts[f"mia_{self.score}_privleak"] = PrivLeak()
        return MetricCollection(parts, compute_groups=False)

    def run(self, model, tokenizer, rows, metric, batch_size, progress, prompt_format=PLAIN) -> list[dict]:
        scores = self.scores(model, tokenizer, rows, batch_size, prompt_format)  # (N,)
        members = torch.tensor([r["member"] for r in rows], device=model.device)
        metric[f"mia_{self.score}_auc"].update(scores.to(model.device), members)
        items = [
            {"question": r["question"], "member": r["member"], "score": float(s)}
            for r, s in zip(rows, scores, strict=True)
        ]
        if self.retain:
            retain_scores = self.retain.values(
                model, rows, lambda m, t, r: self.scores(m, t, r, batch_size, prompt_format)
            )
            metric[f"mia_{self.score}_privleak"].update(scores.to(model.device), members, retain_scores)
            for item, s in zip(items, retain_scores.tolist(), strict=True):
                item["retain_score"] = s
        return items

    def scores(self, model, tokenizer, rows: list[dict], batch_size: int, prompt_format: PromptFormat) -> torch.Tensor:
        """(N,) loss-like scores of `rows` under `model`, on the CPU."""
        batches = [
            self.row_scores(logits, labels, [r["answer"] for r in chunk]).cpu()
            for chunk, logits, labels in answer_forward(model, tokenizer, rows, batch_size, prompt_format)
        ]
        return torch.cat(batches)

    def row_scores(self, logits: torch.Tensor, labels: torch.Tensor, answers: list[str]) -> torch.Tensor:
        """One loss-like score per row (B,) from its answer tokens."""
        logprobs, mask = shifted_logprobs(logits, labels)  # (B, T-1)
        if self.score == "loss":
            return loss_score(logprobs, mask)
        if self.score == "zlib":
            return zlib_score(logprobs, answers, mask)
        if self.score == "min_k":
            return min_k_score(logprobs, mask, k=self.k)
        return min_k_plus_plus_score(logits[:, :-1].float(), labels[:, 1:], mask, k=self.k)
