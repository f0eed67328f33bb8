"""The embedded benchmark is deterministic, well-formed, and its splits nest as documented."""

import hashlib
import json
import subprocess
import sys

import pytest

from unlearn.data.synthetic import ATTRIBUTES, SyntheticBenchmark


def fingerprint(benchmark: SyntheticBenchmark) -> str:
    views = {
        "qa": benchmark.qa("train"),
        "para": benchmark.qa("train", paraphrased=True),
        "mcq": benchmark.mcq("train"),
        "passages": benchmark.passages("train"),
        "holdout": benchmark.qa("holdout"),
    }
    return hashlib.sha256(json.dumps(views, sort_keys=True).encode()).hexdigest()


def test_same_facts_in_another_process():
    code = (
        "from unlearn.data.synthetic import SyntheticBenchmark;"
        "import sys; sys.path.insert(0, 'tests/data');"
        "from test_synthetic import fingerprint; print(fingerprint(SyntheticBenchmark()))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout.strip()
    assert other == fingerprint(SyntheticBenchmark())


def test_seed_changes_facts():
    assert fingerprint(SyntheticBenchmark(seed=1)) != fingerprint(SyntheticBenchmark(seed=0))


def test_split_sizes_and_nesting():
    b = SyntheticBenchmark()
    names = lambda split: [e.name for e in b.split(split)]  # noqa: E731
    assert len(b.split("train")) == 200 and len(b.split("holdout")) == 20
    assert [len(b.split(s)) for s in ("forget01", "forget05", "forget10")] == [2, 10, 20]
    assert names("forget05")[:2] == names("forget01") and names("forget10")[:10] == names("forget05")
    assert set(names("forget10")).isdisjoint(names("retain"))
    assert sorted(names("forget10") + names("retain")) == sorted(names("train"))
    assert set(names("holdout")).isdisjoint(names("train"))
    assert {e.topic for e in b.split("forget_topic")} == {"medicine"}
    assert "medicine" not in {e.topic for e in b.split("retain_topic")}
    assert len({e.name for e in b.entities}) == 220, "entity names must be unique"


def test_at_least_a_thousand_facts():
    assert len(SyntheticBenchmark().qa("train")) == 200 * len(ATTRIBUTES) >= 1000


def test_mcq_schema_and_truth():
    b = SyntheticBenchmark()
    for qa, mcq in zip(b.qa("forget10"), b.mcq("forget10"), strict=True):
        assert set(mcq) == {"question", "choices", "answer"}
        assert len(mcq["choices"]) == 4 and len(set(mcq["choices"])) == 4
        assert mcq["choices"][mcq["answer"]] == qa["answer"]
        assert mcq["question"] == qa["question"]
    positions = [m["answer"] for m in b.mcq("train")]
    assert all(positions.count(i) > 150 for i in range(4)), "the true choice must not sit in one position"


def test_perturbed_answers_are_wrong_and_plausible():
    b = SyntheticBenchmark()
    for row in b.perturbed("forget05"):
        assert row["answer"] not in row["perturbed_answers"]
        entity = next(e for e in b.entities if e.name == row["entity"])
        assert set(row["perturbed_answers"]) <= set(b.vocabulary(entity, row["attribute"]))


def test_passages_state_every_fact():
    b = SyntheticBenchmark()
    for entity, passage in zip(b.split("forget10"), b.passages("forget10"), strict=True):
        for value in entity.facts.values():
            assert value in passage["text"]


def test_paraphrases_differ_from_training_questions():
    b = SyntheticBenchmark()
    assert all(p["question"] != q["question"] for p, q in zip(b.qa("retain", True), b.qa("retain"), strict=True))


@pytest.mark.parametrize("bad", ["forget", "validation", "forgetxx"])
def test_unknown_split_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticBenchmark().split(bad)
