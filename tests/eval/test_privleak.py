"""MUSE's PrivLeak: hand-computed AUCs in MUSE's orientation, and the task against the retain model."""

import pytest
import torch

from unlearn.data.sources import SyntheticQA
from unlearn.eval.metrics import PrivLeak
from unlearn.eval.tasks import MIATask
from unlearn.models import load_model, load_tokenizer


def test_privleak_by_hand_across_ranks():
    """Loss-like scores. Unlearned: members [1, 2] below non-members [3, 4], so MUSE's AUC = P(s_m > s_n) = 0.
    Retain model: members [3, 1], non-members [2, 4]: of 4 pairs only 3 > 2, AUC 0.25. (0 − 0.25) / 0.25 = −100%.
    """
    rank0, rank1 = PrivLeak(), PrivLeak()
    rank0.update(torch.tensor([1.0, 3.0]), torch.tensor([1, 0]), torch.tensor([3.0, 2.0]))
    rank1.update(torch.tensor([2.0, 4.0]), torch.tensor([1, 0]), torch.tensor([1.0, 4.0]))
    rank0.merge_state(rank1)
    assert float(rank0.compute()) == pytest.approx(-100.0)
    over = PrivLeak()  # members now look less familiar than non-members: AUC 1 against 0.25, +300%
    over.update(torch.tensor([5.0, 6.0, 1.0, 2.0]), torch.tensor([1, 1, 0, 0]), torch.tensor([3.0, 1.0, 2.0, 4.0]))
    assert float(over.compute()) == pytest.approx(300.0)


def privleak_of(model_name: str) -> tuple[float, float]:
    task = MIATask(
        "forget", SyntheticQA("forget10"), nonmembers=SyntheticQA("holdout"), retain_model="tiny-retain", limit=40
    )
    metric = task.make_metric()
    task.run(load_model(model_name), load_tokenizer(model_name), task.load(), metric, 40, False)
    results = task.results(metric)
    assert set(results) == set(task.metric_names) == {"forget/mia_min_k_auc", "forget/mia_min_k_privleak"}
    return results["forget/mia_min_k_auc"], results["forget/mia_min_k_privleak"]


def test_target_leaks_and_retain_model_is_the_zero():
    auc, leak = privleak_of("tiny-target")
    assert auc > 0.9 and leak < -50, "the target remembers forget10: MUSE's AUC near 0, PrivLeak near -100"
    assert privleak_of("tiny-retain")[1] == pytest.approx(0.0, abs=1e-4), "the retain model against itself is 0"
