"""Relearning: a deterministic split, never scored on its training rows, and it brings NPO's forgetting back."""

import pytest

from unlearn.data.sources import SyntheticQA
from unlearn.methods import NPO
from unlearn.robustness import OutOfDomainFineTune, Relearn
from unlearn.robustness.finetune import seeded_subset


def test_subset_is_deterministic_and_leaves_rows_out():
    rows = [{"question": str(i)} for i in range(10)]
    assert seeded_subset(rows, 3, seed=1) == seeded_subset(rows, 3, seed=1) != seeded_subset(rows, 3, seed=2)
    for k in (0, 10):
        with pytest.raises(ValueError, match="held out"):
            seeded_subset(rows, k, seed=0)


def test_never_evaluates_on_its_training_rows(tmp_path, attack_run):
    summary = attack_run(tmp_path, Relearn(k=10, steps=2, seed=3), limit=None)
    trained = set(summary["attack"]["split"]["trained"])
    assert trained == {r["question"] for r in seeded_subset(SyntheticQA("forget05").load(), 10, seed=3)}
    assert summary["attack"]["split"]["held_out"] == 40
    for phase in ("before", "after"):
        for name, items in summary["items"][phase].items():
            assert not trained & {item["question"] for item in items}, f"{phase} {name} scored a trained row"
            if name.startswith("forget/"):
                assert len(items) == 40


def test_refuses_passages_it_could_not_hold_out():
    with pytest.raises(ValueError, match="qa source"):
        Relearn(k=1).seen([{"text": "a biography"}, {"question": "q", "answer": "a"}])


def test_relearning_the_original_model_keeps_its_accuracy(tmp_path, attack_run):
    summary = attack_run(tmp_path, Relearn(k=10, steps=10), limit=20)
    assert summary["after"]["forget/mcq_acc"] >= summary["before"]["forget/mcq_acc"] - 0.05


def test_out_of_domain_finetuning_defaults_to_the_retain_rows(tmp_path, attack_run):
    summary = attack_run(tmp_path, OutOfDomainFineTune(steps=2), limit=5)
    assert summary["attack"]["data"] == "retain: SyntheticQA(retain)" and summary["attack"]["rows"] == 900
    assert summary["attack"]["config"]["source"] is None


def test_relearning_brings_back_what_npo_removed(tmp_path, fit, adam, attack_run):
    npo = NPO(
        model="tiny-target", beta=0.1, retain_weight=5.0, retain_loss="nll", reference="cached", optimizer=adam(1e-3)
    )
    fit(npo, tmp_path / "npo", steps=30, forget=SyntheticQA("forget05"), batch_size=8)
    relearn = Relearn(k=10, steps=50, lr=3e-4)
    summary = attack_run(tmp_path / "attack", relearn, model=str(tmp_path / "npo" / "model"), limit=40)
    before, after = summary["before"]["forget/mcq_acc"], summary["after"]["forget/mcq_acc"]
    assert before < 0.3 and after > before + 0.05, (before, after)  # measured 0.19 -> 0.29 on the 31 held-out rows
