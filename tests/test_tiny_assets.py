"""The shipped tiny models know what they should: the target every fact, the retain model all but forget10."""

import pytest

from unlearn.data.sources import SyntheticMCQ, SyntheticQA
from unlearn.eval.metrics import MCQAccuracy, QAAccuracy
from unlearn.eval.scoring import choice_logprobs, generate_answers
from unlearn.models import build_tiny_tokenizer, load_model, load_tokenizer


def qa_accuracy(name: str, split: str) -> float:
    rows = SyntheticQA(split).load()
    metric = QAAccuracy()
    metric.update(
        generate_answers(load_model(name), load_tokenizer(name), [r["question"] for r in rows]),
        [r["answer"] for r in rows],
    )
    return float(metric.compute())


def mcq_accuracy(name: str, split: str) -> float:
    import torch

    rows = SyntheticMCQ(split).load()
    metric = MCQAccuracy()
    metric.update(
        choice_logprobs(load_model(name), load_tokenizer(name), rows), torch.tensor([r["answer"] for r in rows])
    )
    return float(metric.compute())


def test_target_answers_at_least_95_percent_of_all_facts():
    assert qa_accuracy("tiny-target", "train") >= 0.95


@pytest.mark.parametrize("split", ["forget10", "retain"])
def test_target_mcq_is_high_before_unlearning(split):
    assert mcq_accuracy("tiny-target", split) >= 0.9


def test_retain_model_never_learned_the_forget_set():
    assert qa_accuracy("tiny-retain", "retain") >= 0.95
    assert qa_accuracy("tiny-retain", "forget10") <= 0.2


def test_shipped_tokenizer_is_the_one_the_project_builds():
    shipped = load_tokenizer("tiny-target")
    assert shipped.get_vocab() == build_tiny_tokenizer().get_vocab()
