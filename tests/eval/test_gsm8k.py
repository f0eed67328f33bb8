"""GSM8K: the loader on a fixture in the dataset's exact schema, final-number extraction, and the accuracy metric."""

import json
from pathlib import Path

import pytest

from unlearn.data.gsm8k import GSM8KSource
from unlearn.eval.metrics import NumericMatch, final_number, numbers_match
from unlearn.eval.tasks import GSM8KTask
from unlearn.models import load_model, load_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "gsm8k.jsonl"


def test_loader_keeps_question_and_worked_answer():
    rows = GSM8KSource(str(FIXTURE), name=None).load()
    assert len(rows) == 4 and set(rows[0]) == {"question", "answer"}
    assert [final_number(r["answer"]) for r in rows] == ["15", "6", "900", "48"]
    assert len(GSM8KSource(str(FIXTURE), name=None, limit=2).load()) == 2


def test_loader_rejects_answers_without_final_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "1 + 1?", "answer": "It is 2."}) + "\n")
    with pytest.raises(ValueError, match="does not end in '#### <number>'"):
        GSM8KSource(str(bad), name=None).load()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So 3 * 5 = 15 loaves.\n#### 15", "15"),
        ("She has $1,234 left", "1234"),  # thousands commas removed
        ("first 12, then -7", "-7"),  # the last number, with its sign
        ("The speed is 48.5 mph.", "48.5"),  # the sentence's full stop is not a decimal point
        ("no digits here", None),
    ],
)
def test_final_number(text, expected):
    assert final_number(text) == expected


def test_numeric_match_and_metric():
    """Hits: "15" (vs #### 15), "6.00" (= 6), "1,000" (= 1000); misses: "48" vs 47, no number; 3/5 = 0.6."""
    assert numbers_match("6.00 dollars", "#### 6") and not numbers_match("", "#### 6")
    metric = NumericMatch()
    metric.update(["the answer is 15", "6.00"], ["... #### 15", "... #### 6"])
    metric.update(["1,000", "48", "I don't know"], ["#### 1000", "#### 47", "#### 3"])
    assert float(metric.compute()) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="holds no number"):
        numbers_match("5", "five")


def test_task_items_agree_with_metric():
    task = GSM8KTask("gsm8k", GSM8KSource(str(FIXTURE), name=None), max_new_tokens=8)
    metric = task.make_metric()
    items = task.run(load_model("tiny-target"), load_tokenizer("tiny-target"), task.load(), metric, 4, False)
    assert [i["answer"] for i in items] == ["15", "6", "900", "48"]
    hits = sum(i["predicted_number"] is not None and float(i["predicted_number"]) == float(i["answer"]) for i in items)
    assert float(metric.compute()) == pytest.approx(hits / 4)
