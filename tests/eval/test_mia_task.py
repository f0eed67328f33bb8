"""Membership inference on the embedded default: the target remembers forget10, the retain model does not."""

import pytest

from unlearn.data.sources import SyntheticQA
from unlearn.eval.mia import auc
from unlearn.eval.tasks import MIATask
from unlearn.models import load_model, load_tokenizer


def membership_auc(model_name: str, score: str) -> tuple[float, list[dict]]:
    task = MIATask("forget", SyntheticQA("forget10"), nonmembers=SyntheticQA("holdout"), score=score, limit=60)
    metric = task.make_metric()
    items = task.run(load_model(model_name), load_tokenizer(model_name), task.load(), metric, 32, False)
    return task.results(metric)[task.metric_name], items


@pytest.mark.parametrize("score", ["loss", "zlib", "min_k", "min_k_plus_plus"])
def test_target_remembers_and_retain_model_does_not(score):
    target_auc, items = membership_auc("tiny-target", score)
    members = [-i["score"] for i in items if i["member"]]
    nonmembers = [-i["score"] for i in items if not i["member"]]
    assert target_auc == pytest.approx(auc(members, nonmembers), abs=1e-6), "the metric is the AUC of its items"
    assert target_auc > 0.9, "the target was trained on forget10 and never on holdout"
    retain_auc, _ = membership_auc("tiny-retain", score)
    assert abs(retain_auc - 0.5) < 0.2, "the retain model saw neither set"
