"""Evaluation: torchmetrics metrics inside callbacks that run before and after unlearning."""

from unlearn.eval.evaluator import Evaluator, SyntheticEvaluator
from unlearn.eval.tasks import EvalTask, MCQTask, QATask

__all__ = ["EvalTask", "Evaluator", "MCQTask", "QATask", "SyntheticEvaluator"]
