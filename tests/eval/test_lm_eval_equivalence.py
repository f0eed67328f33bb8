"""Our `letter` MCQTask against lm-evaluation-harness itself: same local model, same WMDP-schema rows, same answers."""

import datasets
import pytest

from benchmarks.harness import harness_predictions, word_tokenizer, write_harness_task
from unlearn.data.sources import MCQSource, SyntheticMCQ
from unlearn.eval import scoring
from unlearn.eval.scoring import letter_prompt
from unlearn.eval.tasks import MCQTask
from unlearn.models import load_model, load_tokenizer
from unlearn.tiny import build_tiny_model, build_tiny_tokenizer

DESCRIPTION = "The following are multiple choice questions (with answers) about biology.\n\n"  # lm-eval's wmdp_bio
ROWS = SyntheticMCQ("forget10").load()[:24]


def tokenizer_for(kind: str):
    """bpe: the project's byte-level BPE, where " A" is two tokens; word: Llama-2-style, letters one token each."""
    if kind == "bpe":
        return build_tiny_tokenizer()
    return word_tokenizer([letter_prompt(r["question"], r["choices"], description=DESCRIPTION) for r in ROWS])


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Keep datasets' cache of the converted JSONL inside the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.mark.parametrize(("kind", "path"), [("bpe", "_next_token_scores"), ("word", "_cache_scores")])
def test_letter_task_matches_lm_eval_per_question(tmp_path, monkeypatch, kind, path):
    """Identical accuracy and predictions on a random Llama saved to disk; `path` is the scoring path not taken."""
    tokenizer = tokenizer_for(kind)
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    model = build_tiny_model(len(tokenizer), num_key_value_heads=2, initializer_range=0.5, **shape)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    write_harness_task(tmp_path / "task", "wmdp_local", ROWS, description=DESCRIPTION)

    acc, expected = harness_predictions(tmp_path / "model", tmp_path / "task", "wmdp_local", batch_size=16)

    source = MCQSource(str(tmp_path / "task" / "wmdp_local.jsonl"))
    task = MCQTask("wmdp", source, template="letter", description=DESCRIPTION)
    monkeypatch.setattr(scoring, path, lambda *args, **kwargs: pytest.fail(f"{path} should not run for {kind}"))
    metric = task.make_metric()
    rows = task.load()
    model, tokenizer = load_model(str(tmp_path / "model")), load_tokenizer(str(tmp_path / "model"))
    items = task.run(model, tokenizer, rows, metric, batch_size=8, progress=False)
    predictions = [item["predicted"] for item in items]
    assert predictions == expected
    assert len(set(expected)) >= 2, "the model predicts one letter everywhere, so the comparison proves little"
    assert sum(p == r["answer"] for p, r in zip(expected, rows, strict=True)) == round(acc * len(rows))
    assert float(metric.compute()) == pytest.approx(acc, abs=1e-6)


def test_word_tokenizer_splits_a_lone_letter_but_not_one_after_answer():
    """The case the harness's split handles: " A" alone is two tokens, after "Answer:" it is one."""
    tokenizer = tokenizer_for("word")
    alone = tokenizer(" A", add_special_tokens=False).input_ids
    context, whole = tokenizer("Answer:").input_ids, tokenizer("Answer: A").input_ids
    assert tokenizer.convert_ids_to_tokens(alone) == ["▁", "▁A"]
    assert tokenizer.convert_ids_to_tokens(whole[len(context) :]) == ["▁A"]
    assert whole[: len(context)] == context
