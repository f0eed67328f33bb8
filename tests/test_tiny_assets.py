"""The shipped tiny models know what they should (the target every fact, the retain model all but forget10), and
they and `tiny-scratch` are unlearn.tiny's recipe."""

import json

import pytest
import torch

from unlearn.answers import generate_answers
from unlearn.data.sources import SyntheticMCQ, SyntheticQA
from unlearn.data.synthetic import SyntheticBenchmark
from unlearn.eval.metrics import MCQAccuracy, QAAccuracy
from unlearn.eval.scoring import choice_logprobs
from unlearn.models import load_model, load_tokenizer
from unlearn.tiny import build_tiny_model, build_tiny_tokenizer


def qa_accuracy(name: str, split: str) -> float:
    rows = SyntheticQA(split).load()
    metric = QAAccuracy()
    metric.update(
        generate_answers(load_model(name), load_tokenizer(name), [r["question"] for r in rows]),
        [r["answer"] for r in rows],
    )
    return float(metric.compute())


def mcq_accuracy(name: str, split: str) -> float:
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


@pytest.mark.parametrize("name", ["tiny-target", "tiny-retain", "tiny-scratch"])
def test_shipped_tokenizer_is_the_one_the_project_builds(name):
    """Same vocabulary, merges, pre- and post-processing, and the same ids for every benchmark text."""
    shipped, built = load_tokenizer(name), build_tiny_tokenizer()
    assert json.loads(shipped.backend_tokenizer.to_str()) == json.loads(built.backend_tokenizer.to_str())
    assert shipped.special_tokens_map == built.special_tokens_map
    corpus = list(SyntheticBenchmark().corpus())
    assert shipped(corpus)["input_ids"] == built(corpus)["input_ids"]


def test_scratch_model_is_the_recipe_untrained():
    """tiny-scratch, read from tiny-target's config.json, is build_tiny_model's shape and seeded weights."""
    scratch, built = load_model("tiny-scratch"), build_tiny_model(len(load_tokenizer("tiny-scratch")))
    provenance = {"_name_or_path", "architectures", "dtype"}  # where a config was read from, not the model
    shape = lambda model: {k: v for k, v in model.config.to_dict().items() if k not in provenance}  # noqa: E731
    assert shape(scratch) == shape(built)
    built_weights = built.state_dict()
    assert all(torch.equal(weight, built_weights[name]) for name, weight in scratch.state_dict().items())
    assert scratch.state_dict().keys() == built_weights.keys()
    assert scratch.name_or_path == "tiny-scratch", "reloaded by name_or_path, it must not be the trained tiny-target"
