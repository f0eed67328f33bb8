"""TOFU's metrics: truth ratio and summaries by hand, forget quality against scipy, and the task on the tiny models."""

import math
import random

import pytest
import torch
from scipy.stats import ks_2samp

from unlearn.data.collate import Collator
from unlearn.data.sources import SyntheticQA
from unlearn.data.tofu import SyntheticPerturbedQA
from unlearn.eval.metrics import ForgetQuality, TruthRatio
from unlearn.eval.tofu import TOFUTask, harmonic_mean, likelihood_metrics, truth_ratio
from unlearn.models import load_model, load_tokenizer

LOG = math.log


def test_truth_ratio_by_hand():
    """Row 1: P(paraphrased) 0.5, perturbed 0.25 and 0.5: R = mean(0.25, 0.5) / 0.5 = 0.75. Row 2: 0.4 / 0.2 = 2."""
    paraphrased = torch.tensor([LOG(0.5), LOG(0.2)], dtype=torch.float64)
    perturbed = [torch.tensor([LOG(0.25), LOG(0.5)]).double(), torch.tensor([LOG(0.4)]).double()]
    ratios = truth_ratio(paraphrased, perturbed)
    assert ratios.tolist() == pytest.approx([0.75, 2.0])
    forget, retain = TruthRatio("forget"), TruthRatio("retain")
    forget.update(ratios)
    retain.update(ratios)
    assert float(forget.compute()) == pytest.approx((0.75 + 2) / 2)  # mean R
    assert float(retain.compute()) == pytest.approx((0.25 + 0) / 2)  # mean max(0, 1 - R)
    with pytest.raises(ValueError, match="one non-empty set"):
        truth_ratio(paraphrased, perturbed[:1])


def test_harmonic_mean():
    assert harmonic_mean([0.5, 1.0, 0.25]) == pytest.approx(3 / (2 + 1 + 4))
    assert harmonic_mean([0.9, 0.0, 0.8]) == 0.0


def test_forget_quality_is_scipy_ks_over_all_ranks():
    rng = random.Random(0)
    ratios = [rng.lognormvariate(0, 1) for _ in range(30)]
    reference = [rng.lognormvariate(0.5, 1) for _ in range(30)]
    rank0, rank1 = ForgetQuality(), ForgetQuality()
    rank0.update(torch.tensor(ratios[:13]), torch.tensor(reference[:13]))
    rank1.update(torch.tensor(ratios[13:]), torch.tensor(reference[13:]))
    rank0.merge_state(rank1)
    assert float(rank0.compute()) == pytest.approx(ks_2samp(ratios, reference).pvalue, rel=1e-5)


def test_answer_probability_is_exp_of_the_models_own_mean_loss():
    """P(a|q)^(1/|a|) = exp(−loss) with Hugging Face's token-mean loss over the same answer labels."""
    model, tokenizer = load_model("tiny-target"), load_tokenizer("tiny-target")
    rows = SyntheticPerturbedQA("forget01").load()[:3]
    probability, _ = likelihood_metrics(model, tokenizer, rows, batch_size=2)
    for row, p in zip(rows, probability.tolist(), strict=True):
        batch = Collator(tokenizer)([row])
        with torch.no_grad():
            loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        assert p == pytest.approx(math.exp(-float(loss)), rel=1e-5)


def run_task(model_name: str, side: str) -> dict[str, float]:
    split = "forget10" if side == "forget" else "retain"
    task = TOFUTask(side, SyntheticPerturbedQA(split), side=side, retain_model="tiny-retain", limit=10)
    metric = task.make_metric()
    items = task.run(load_model(model_name), load_tokenizer(model_name), task.load(), metric, 16, False)
    results = task.results(metric)
    assert set(results) == set(task.metric_names)
    assert results[f"{side}/truth_ratio"] == pytest.approx(
        sum(i["truth_ratio"] if side == "forget" else max(0.0, 1 - i["truth_ratio"]) for i in items) / len(items),
        rel=1e-5,
    ), "the summary is the mean of the per-item ratios"
    return results


def test_forget_quality_of_the_target_is_low_and_of_the_retain_model_is_one():
    assert run_task("tiny-retain", "forget")["forget/forget_quality"] == pytest.approx(1.0)
    target = run_task("tiny-target", "forget")
    assert target["forget/forget_quality"] < 1e-3 and target["forget/truth_ratio"] < 0.1, "the target knows forget10"


def test_model_utility_is_the_harmonic_mean_of_retain_numbers():
    results = run_task("tiny-target", "retain")
    parts = [results["retain/answer_prob"], results["retain/qa_rougeL"], results["retain/truth_ratio"]]
    assert results["retain/model_utility"] == pytest.approx(harmonic_mean(parts)) and min(parts) > 0.9


def test_source_without_perturbed_answers_is_rejected():
    with pytest.raises(ValueError, match="no perturbed_answers"):
        TOFUTask("forget", SyntheticQA("forget01")).load()
    with pytest.raises(ValueError, match="side="):
        TOFUTask("forget", SyntheticPerturbedQA("forget01"), side="holdout")
