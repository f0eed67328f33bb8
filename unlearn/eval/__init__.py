"""Evaluation: torchmetrics metrics inside callbacks that run before and after unlearning."""

from unlearn.eval.evaluator import Evaluator, SyntheticEvaluator
from unlearn.eval.tasks import EvalTask, GSM8KTask, MCQTask, MIATask, QATask, SampledQATask
from unlearn.eval.tofu import TOFUTask

__all__ = [
    "EvalTask",
    "Evaluator",
    "GSM8KTask",
    "MCQTask",
    "MIATask",
    "QATask",
    "SampledQATask",
    "SyntheticEvaluator",
    "TOFUTask",
]
