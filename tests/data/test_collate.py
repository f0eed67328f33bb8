"""Padding never reaches the loss, rows are cut at max_length, and row indices travel with the batch.

Which tokens are answer tokens is tested per tokenizer family in test_tokenization.py."""

import pytest

from unlearn.data.collate import IGNORE_INDEX, Collator
from unlearn.tiny import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_padding_is_masked_and_truncation_respects_max_length(tokenizer):
    rows = [{"text": "short"}, {"text": "a much longer passage " * 20}]
    batch = Collator(tokenizer, max_length=16)(rows)
    assert batch["input_ids"].shape == (2, 16)
    padded = batch["attention_mask"] == 0
    assert padded[0].any() and (batch["labels"][padded] == IGNORE_INDEX).all()


def test_index_travels_with_rows(tokenizer):
    batch = Collator(tokenizer)([{"text": "a", "index": 7}, {"text": "b", "index": 3}])
    assert batch["index"].tolist() == [7, 3]
