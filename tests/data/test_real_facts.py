"""The shipped real-facts benchmark: well-formed, and SmolLM2 still scores on it what its selection recorded."""

import json

import pytest
import torch

from unlearn.data.prompts import PromptFormat
from unlearn.data.sources import SHIPPED_DATA, MCQSource, QASource, TextSource
from unlearn.eval.scoring import choice_logprobs

RECORD = json.loads((SHIPPED_DATA / "real-facts" / "selection.json").read_text())
DOMAINS = ("forget", "retain")


@pytest.mark.parametrize("domain", DOMAINS)
def test_smollm2_mcq_accuracy_is_what_the_selection_recorded(smol, domain):
    model, tokenizer = smol
    rows = MCQSource(f"real-facts/{domain}_mcq").load()
    fmt = PromptFormat(RECORD["prompt_format"])
    predictions = choice_logprobs(model, tokenizer, rows, template="cloze", prompt_format=fmt).argmax(dim=-1).cpu()
    correct = int((predictions == torch.tensor([row["answer"] for row in rows])).sum())
    assert (correct, len(rows)) == (RECORD["mcq"][domain]["correct"], RECORD["mcq"][domain]["total"])


@pytest.mark.parametrize("domain", DOMAINS)
def test_views_load_by_name_and_cover_the_same_facts(domain):
    mcq = MCQSource(f"real-facts/{domain}_mcq").load()
    qa = QASource(f"real-facts/{domain}_qa").load()
    passages = TextSource(f"real-facts/{domain}_passages").load()
    assert len(mcq) == RECORD["shipped"][domain]["total"] >= 60
    assert [row["question"] for row in qa] == [row["question"] for row in mcq]
    assert [row["answer"] for row in qa] == [row["choices"][row["answer"]] for row in mcq]
    assert all(len(set(row["choices"])) == 4 for row in mcq)
    assert len(passages) >= len(mcq)


def test_every_fact_has_a_passage_stating_its_answer():
    for domain in DOMAINS:
        passages = [json.loads(line) for line in (SHIPPED_DATA / "real-facts" / f"{domain}_passages.jsonl").open()]
        for row in QASource(f"real-facts/{domain}_qa").load():
            stated = [p["text"] for p in passages if p["question"] == row["question"]]
            assert stated and all(row["answer"].lower() in text.lower() for text in stated), row


def test_forget_and_retain_share_no_question_or_subject():
    forget, retain = (MCQSource(f"real-facts/{domain}_mcq").load() for domain in DOMAINS)
    assert not {row["question"] for row in forget} & {row["question"] for row in retain}
    train = QASource("real-facts/retain_train_qa").load()
    assert len(train) == RECORD["retain_train"] > 0
    assert not {row["question"] for row in train} & {row["question"] for row in forget + retain}
    subjects = {domain: set(RECORD["shipped"][domain]["by_subject"]) for domain in DOMAINS}
    assert not subjects["forget"] & subjects["retain"]
