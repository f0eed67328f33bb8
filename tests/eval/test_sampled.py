"""Probabilistic leakage: the metric averages Clopper-Pearson bounds, the task counts leaking samples."""

import pytest
import torch

from unlearn.data.sources import SyntheticQA
from unlearn.eval.metrics import LeakageBound
from unlearn.eval.tasks import SampledQATask
from unlearn.models import load_model, load_tokenizer


def test_leakage_bound_averages_per_prompt_bounds():
    """k=0 of 128 at alpha=0.01 gives 1 - 0.01**(1/128) = 0.035338; k=128 of 128 gives 1; their mean is 0.517669."""
    metric = LeakageBound(alpha=0.01)
    metric.update(torch.tensor([0]), 128)
    assert float(metric.compute()) == pytest.approx(0.035338, abs=1e-6)
    metric.update(torch.tensor([128]), 128)
    assert float(metric.compute()) == pytest.approx((0.0353378 + 1.0) / 2, abs=1e-6)


def test_sampling_a_known_fact_near_greedy_always_leaks():
    task = SampledQATask("forget", SyntheticQA("forget01"), num_samples=4, temperature=1e-4, limit=3)
    metric = task.make_metric()
    items = task.run(load_model("tiny-target"), load_tokenizer("tiny-target"), task.load(), metric, 16, False)
    assert [i["leaks"] for i in items] == [4, 4, 4], "the target knows these facts, so near-greedy samples say them"
    assert float(metric.compute()) == 1.0 and all(i["answer_entropy"] == 0.0 for i in items)
