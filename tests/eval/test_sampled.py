"""Probabilistic leakage: the metrics average per-prompt bounds, the task reports them beside the DKW band."""

import math

import pytest
import torch

from unlearn.data.sources import SyntheticQA
from unlearn.eval.metrics import LeakageBound, ScoreBound
from unlearn.eval.tasks import SampledQATask
from unlearn.models import load_model, load_tokenizer


def test_leakage_bound_averages_per_prompt_bounds():
    """k=0 of 128 at delta=0.01 gives 1 - 0.01**(1/128) = 0.035338; k=128 of 128 gives 1; their mean is 0.517669."""
    metric = LeakageBound(delta=0.01)
    metric.update(torch.tensor([0]), 128)
    assert float(metric.compute()) == pytest.approx(0.035338, abs=1e-6)
    metric.update(torch.tensor([128]), 128)
    assert float(metric.compute()) == pytest.approx((0.0353378 + 1.0) / 2, abs=1e-6)


def test_score_bounds_average_per_prompt_closed_forms():
    """n scores all 0: E ≤ ε and σ ≤ sqrt(ε); all 1: E ≤ 1 and σ ≤ sqrt(1 − (1 − ε)²); ε = sqrt(log(2/delta) / 2n)."""
    n, delta = 200, 0.05
    eps = math.sqrt(math.log(2 / delta) / (2 * n))
    scores = torch.stack([torch.zeros(n), torch.ones(n)])  # (2 prompts, n samples)
    mean, std = ScoreBound("mean", delta=delta), ScoreBound("std", delta=delta)
    mean.update(scores)
    std.update(scores)
    assert float(mean.compute()) == pytest.approx((eps + 1) / 2, rel=1e-6)
    assert float(std.compute()) == pytest.approx((math.sqrt(eps) + math.sqrt(1 - (1 - eps) ** 2)) / 2, rel=1e-6)
    assert not mean.higher_is_better
    with pytest.raises(ValueError):
        ScoreBound("median")


def test_sampling_a_known_fact_near_greedy_always_leaks():
    """Four near-greedy samples all say the answer: every bound is its closed form for all-leaking samples."""
    task = SampledQATask("forget", SyntheticQA("forget01"), num_samples=4, temperature=1e-4, limit=3)
    metric = task.make_metric()
    items = task.run(load_model("tiny-target"), load_tokenizer("tiny-target"), task.load(), metric, 16, False)
    assert [i["leaks"] for i in items] == [4, 4, 4], "the target knows these facts, so near-greedy samples say them"
    assert all(i["answer_entropy"] == 0.0 and i["rougeL"] == 1.0 for i in items)
    eps = math.sqrt(math.log(2 / 0.01) / 8)  # n = 4, delta = 0.01
    std = math.sqrt(min(1 - (1 - eps) ** 2, 0.25))  # E[X²] ≤ 1, E[X] ≥ 1 − ε, Popoviciu's cap
    results = task.results(metric)
    assert (
        list(results)
        == task.metric_names
        == ["forget/leak_bound", "forget/rougeL_mean_bound", "forget/rougeL_std_bound"]
    )
    assert results["forget/leak_bound"] == 1.0 and results["forget/rougeL_mean_bound"] == pytest.approx(1.0)
    assert results["forget/rougeL_std_bound"] == pytest.approx(std)
    for item in items:
        assert item["rougeL_mean_bound"] == pytest.approx(1.0) and item["rougeL_std_bound"] == pytest.approx(std)
        band = item["dkw_band"]  # one step at 1.0: F_n = 1 there, so F lies in [1 − ε, 1]
        assert band["epsilon"] == pytest.approx(eps) and band["x"] == [1.0] and band["upper"] == [1.0]
        assert band["lower"] == pytest.approx([1 - eps])
