"""The full SyntheticEvaluator: which numbers it reports, and one end-to-end evaluation on a few rows."""

from types import SimpleNamespace

import pytest

from unlearn.data.prompts import PLAIN
from unlearn.eval.evaluator import SyntheticEvaluator
from unlearn.models import load_model, load_tokenizer

QUICK = {
    "forget/qa_acc", "forget/qa_rougeL", "forget/mcq_acc", "retain/qa_acc", "retain/qa_rougeL", "retain/mcq_acc",
    "holdout/qa_acc", "holdout/qa_rougeL", "forget/mia_min_k_auc",
}  # fmt: skip
FULL = QUICK | {
    "forget/answer_prob", "forget/truth_ratio", "forget/forget_quality", "retain/answer_prob", "retain/truth_ratio",
    "retain/model_utility", "forget/mia_min_k_privleak",
}  # fmt: skip


def test_names_of_quick_and_full_suites():
    for full, expected in ((False, QUICK), (True, FULL)):
        names = [n for t in SyntheticEvaluator(full=full).tasks for n in t.metric_names]
        assert sorted(names) == sorted(expected)


@pytest.mark.filterwarnings("ignore:.*compute.*")
def test_full_evaluation_reports_every_name(tmp_path):
    evaluator = SyntheticEvaluator(full=True, limit=4, progress=False)
    trainer = SimpleNamespace(global_rank=0, world_size=1, is_global_zero=True, default_root_dir=str(tmp_path))
    module = SimpleNamespace(
        model=load_model("tiny-target"), tokenizer=load_tokenizer("tiny-target"), device="cpu", prompt_format=PLAIN
    )
    evaluator.setup(trainer, module, "fit")
    results = evaluator.evaluate(trainer, module, "before")
    assert set(results) == FULL
    assert results["retain/model_utility"] > 0.9 and results["forget/mia_min_k_privleak"] < 0
    assert set(evaluator.items["before"]) == {t.metric_name for t in evaluator.tasks}
