"""MCQ accuracy of every MCQ task of the evaluator: what attacks that search (a layer, a grid cell) compare."""

from __future__ import annotations

from unlearn.eval.tasks import MCQTask
from unlearn.robustness.base import Target


def forget_mcq(target: Target, attack: str) -> str:
    """The name of the forget split's MCQ metric, which attacks pick their best setting by."""
    names = [t.metric_name for t in target.evaluator.tasks if isinstance(t, MCQTask) and t.split == "forget"]
    if not names:
        raise ValueError(f"{attack} picks by MCQ accuracy: add an MCQTask on the forget split")
    return names[0]


def mcq_accuracies(target: Target, batch_size: int) -> dict[str, float]:
    """{metric name: accuracy} of `target.model` on each MCQ task's evaluation rows, without progress bars."""
    module, evaluator = target.module, target.evaluator
    accuracies = {}
    for task in evaluator.tasks:
        if isinstance(task, MCQTask):
            metric, rows = task.make_metric(), evaluator.rows[task.metric_name]
            task.run(target.model, module.tokenizer, rows, metric, batch_size, False, module.prompt_format)
            accuracies[task.metric_name] = float(metric.compute())
    return accuracies
