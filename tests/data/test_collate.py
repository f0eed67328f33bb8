"""Labels keep exactly the answer tokens; prompts and padding never reach the loss."""

import pytest

from unlearn.data.collate import IGNORE_INDEX, Collator, qa_prompt
from unlearn.models import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_answer_mask_is_exact(tokenizer):
    rows = [
        {"question": "Where does Kari Mo live?", "answer": "Velmora"},
        {"text": "Kari Mo lives in Tarsk."},
    ]
    batch = Collator(tokenizer)(rows)
    prompt_len = len(tokenizer(qa_prompt(rows[0]["question"])).input_ids)
    answer_ids = tokenizer(" Velmora", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    labels = batch["labels"][0]
    assert (labels[:prompt_len] == IGNORE_INDEX).all()
    assert labels[prompt_len : prompt_len + len(answer_ids)].tolist() == answer_ids
    assert (labels[prompt_len + len(answer_ids) :] == IGNORE_INDEX).all()
    assert batch["attention_mask"][0].sum() == prompt_len + len(answer_ids)
    # a passage trains on every token after the BOS
    text_ids = tokenizer("Kari Mo lives in Tarsk.", add_special_tokens=False).input_ids + [
        tokenizer.eos_token_id
    ]
    assert batch["labels"][1][1 : 1 + len(text_ids)].tolist() == text_ids
    assert batch["labels"][1][0] == IGNORE_INDEX


def test_padding_is_masked_and_truncation_respects_max_length(tokenizer):
    rows = [{"text": "short"}, {"text": "a much longer passage " * 20}]
    batch = Collator(tokenizer, max_length=16)(rows)
    assert batch["input_ids"].shape == (2, 16)
    padded = batch["attention_mask"] == 0
    assert padded[0].any() and (batch["labels"][padded] == IGNORE_INDEX).all()


def test_index_travels_with_rows(tokenizer):
    batch = Collator(tokenizer)([{"text": "a", "index": 7}, {"text": "b", "index": 3}])
    assert batch["index"].tolist() == [7, 3]
