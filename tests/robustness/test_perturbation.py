"""Informed perturbation: where characters go, that the aligned token goes first, and that only characters are added."""

import difflib
import json

import pytest
import torch

from unlearn.data.prompts import PLAIN
from unlearn.data.sources import SyntheticQA
from unlearn.methods.representation import layer_outputs
from unlearn.models import BUILTIN, load_model, load_tokenizer
from unlearn.robustness import InformedPerturbation
from unlearn.robustness.perturbation import insertion_point, perturb, perturb_once

QUESTION = "Where does Xemoki Wanucla live?"


def test_characters_go_inside_the_most_aligned_splittable_tokens():
    assert insertion_point("ab cdef", 2, 7) == 5  # " cdef": the middle of "cdef"
    assert insertion_point("ab c", 2, 4) is None and insertion_point("ab", 0, 2) == 1
    spans = [(0, 2, 0.9), (2, 7, 0.5), (7, 8, 0.95), (8, 12, 0.7)]  # "ab cdef!ghij": "!" cannot be split
    assert perturb_once("ab cdef!ghij", spans, "_", per_round=2, min_cosine=0.0) == "a_b cdef!gh_ij"
    assert perturb_once("ab cdef!ghij", spans, "_", per_round=3, min_cosine=0.6) == "a_b cdef!gh_ij"
    assert perturb_once("ab cdef!ghij", spans, "_", per_round=1, min_cosine=0.95) == "ab cdef!ghij"


def test_a_token_carrying_the_direction_is_split_first():
    model, tokenizer = load_model("tiny-target").eval(), load_tokenizer("tiny-target")
    prompt = PLAIN.prompt(QUESTION, tokenizer)
    encoded = tokenizer([prompt], return_tensors="pt", return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        (hidden,) = layer_outputs(model, encoded, [1])
    start = len("Question: ")
    for name in ("ucla", "em"):  # two tokens of the name: each, made the direction, is split first
        index = next(i for i, (a, b) in enumerate(offsets) if prompt[a:b] == name)
        a, b = offsets[index][0] - start, offsets[index][1] - start
        direction = torch.nn.functional.normalize(hidden[0, index], dim=0)
        perturbed, rounds = perturb(model, tokenizer, PLAIN, [QUESTION], direction, 1, rounds=1, per_round=1,
                                    character="#", min_cosine=0.0, batch_size=8)  # fmt: skip
        assert rounds == 1 and perturbed[QUESTION] == QUESTION[: a + (b - a) // 2] + "#" + QUESTION[a + (b - a) // 2 :]


def test_perturbed_questions_differ_only_by_inserted_characters_and_stop_changing():
    model, tokenizer = load_model("tiny-target").eval(), load_tokenizer("tiny-target")
    questions = [row["question"] for row in SyntheticQA("forget05").load()[:8]]
    direction = torch.nn.functional.normalize(torch.randn(192, generator=torch.Generator().manual_seed(0)), dim=0)
    args = (model, tokenizer, PLAIN, questions, direction, 2)
    perturbed, rounds = perturb(*args, rounds=3, per_round=2, character="~", min_cosine=-1.0, batch_size=4)
    assert rounds == 3
    for question in questions:
        new = perturbed[question]
        edits = difflib.SequenceMatcher(a=question, b=new, autojunk=False).get_opcodes()
        assert {op for op, *_ in edits} == {"equal", "insert"} and new.replace("~", "") == question
        assert len(new) - len(question) == 6  # two tokens a round: every question has enough to split
    unchanged, rounds = perturb(*args, rounds=3, per_round=1, character="~", min_cosine=0.9999, batch_size=4)
    assert rounds == 0 and all(unchanged[q] == q for q in questions)


def test_the_attack_asks_the_perturbed_questions(tmp_path, attack_run):
    with pytest.raises(ValueError, match="character='ab' must be one character"):
        InformedPerturbation(character="ab")
    with pytest.raises(ValueError, match="rounds=0 .*min_cosine=1"):
        InformedPerturbation(rounds=0, min_cosine=1)
    summary = attack_run(
        tmp_path, InformedPerturbation(rounds=2, min_cosine=0.0), model=str(BUILTIN["tiny-retain"]), limit=5
    )
    changed = json.loads((tmp_path / "informed_perturbation.json").read_text())
    numbers = summary["attack"]
    assert numbers["layer"] == 2 and numbers["questions"] == 10 and numbers["changed"] == len(changed) > 0
    assert numbers["inserted"] == sum(len(p) - len(q) for q, p in changed.items()) <= 2 * numbers["questions"]
    for name, items in summary["items"]["after"].items():
        before = summary["items"]["before"][name]
        assert [item["question"] for item in items] == [changed.get(i["question"], i["question"]) for i in before]
