"""Evaluation: torchmetrics metrics inside callbacks that run before and after unlearning."""

from unlearn.eval.evaluator import Evaluator, SyntheticEvaluator
from unlearn.eval.tasks import EvalTask, MCQTask, MIATask, QATask, SampledQATask

__all__ = ["EvalTask", "Evaluator", "MCQTask", "MIATask", "QATask", "SampledQATask", "SyntheticEvaluator"]
