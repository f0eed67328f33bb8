"""The entailment metric with a tiny random NLI model: it must count exactly that model's argmax verdicts."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from unlearn.eval.metrics import Entailment
from unlearn.eval.nli import entailment_index

WORDS = "velmora tarsk quillon lives in the city of born 1947 1950 a surgeon pianist he she works as".split()
PREDICTIONS = ["velmora", "she lives in tarsk", "1947", "a pianist", "quillon", "born in 1950", "", "the surgeon"]
REFERENCES = ["Velmora", "Velmora", "1947", "surgeon", "Tarsk", "1950", "Quillon", "surgeon"]


def save_nli_model(path, id2label: dict[int, str], seed: int = 0):
    """A 1-layer BERT classifier with random weights and a word-level vocabulary, saved like a hub model."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)})
    assert tokenizer.unk_token_id not in tokenizer(" ".join(WORDS)).input_ids
    config = BertConfig(
        vocab_size=len(tokens), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        initializer_range=1.0,  # large random weights, so verdicts differ between pairs
    )  # fmt: skip
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


@pytest.mark.parametrize(
    "id2label",
    [{0: "entailment", 1: "neutral", 2: "contradiction"}, {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}],
)
@pytest.mark.parametrize("premise", ["prediction", "answer"])
def test_metric_is_the_share_of_argmax_entailment(tmp_path, id2label, premise):
    pairs = list(zip(PREDICTIONS, REFERENCES, strict=True))
    if premise == "answer":
        pairs = [(r, p) for p, r in pairs]
    entail_id = next(i for i, label in id2label.items() if label.lower() == "entailment")
    for seed in range(20):  # the first random model that gives both verdicts, so the test can fail
        model, tokenizer = save_nli_model(tmp_path, id2label, seed=seed)
        with torch.no_grad():  # one pair at a time: no padding, unlike the metric's batches
            logits = [model(**tokenizer([first], [second], return_tensors="pt")).logits for first, second in pairs]
        expected = [int(row.argmax(-1)) == entail_id for row in logits]
        if 0 < sum(expected) < len(expected):
            break
    else:
        pytest.fail("no seed gave a random NLI model with both verdicts")

    metric = Entailment(str(tmp_path), premise=premise, batch_size=3)
    assert metric.entailed(PREDICTIONS, REFERENCES).tolist() == expected
    metric.update(PREDICTIONS[:5], REFERENCES[:5])
    metric.update(PREDICTIONS[5:], REFERENCES[5:])
    assert float(metric.compute()) == pytest.approx(sum(expected) / len(expected))


def test_missing_entailment_label_is_a_clear_error(tmp_path):
    save_nli_model(tmp_path, {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ValueError, match="no single 'entailment' label"):
        Entailment(str(tmp_path))
    with pytest.raises(ValueError, match="premise="):
        Entailment(str(tmp_path), premise="question")


def test_entailment_index_reads_id2label():
    assert entailment_index({"0": "neutral", "1": "Entailment"}, "m") == 1


def test_unloadable_model_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="cannot load the NLI model"):
        Entailment(str(tmp_path / "missing"))
