"""GCG: its gradient against finite differences, its losses against the evaluator's scoring, and its held-out split."""

import json

import pytest
import torch

from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.data.sources import SyntheticQA
from unlearn.eval.scoring import choice_logprobs
from unlearn.models import BUILTIN, load_model, load_tokenizer
from unlearn.robustness import AdversarialPrompt
from unlearn.robustness.gcg import attacked, gcg, initial_ids, make_slots, mean_losses, stable, token_gradients

RETAIN = str(BUILTIN["tiny-retain"])  # never saw the forget people: its answers have room to rise


def scored_nll(model, tokenizer, pairs, string, position="suffix"):
    """The reference: -log P(answer) as MCQ cloze scores it, with `string` in each question, averaged over pairs."""
    rows = [{"question": attacked(q, string, position), "choices": [a]} for q, a in pairs]
    return float(-choice_logprobs(model, tokenizer, rows, prompt_format=PLAIN)[:, 0].mean())


def test_token_gradient_is_the_derivative_of_the_loss_along_a_swap():
    model, tokenizer = load_model("tiny-target").double().eval(), load_tokenizer("tiny-target")
    (slot,) = make_slots(tokenizer, PLAIN, [("Where does Xemoki Wanucla live?", "Eskabar")], "suffix")
    ids = torch.tensor([4, 91, 4])
    grad = token_gradients(model, [slot], ids)
    weight = model.get_input_embeddings().weight
    sequence = torch.tensor(slot.before + ids.tolist() + slot.after + slot.answer)

    def loss(embeddings):  # written out: the answer tokens' NLL from the model's logits
        logprobs = model(inputs_embeds=embeddings[None]).logits[0].log_softmax(-1)
        answer_at = range(len(sequence) - len(slot.answer), len(sequence))
        return -sum(logprobs[t - 1, sequence[t]] for t in answer_at)

    with torch.no_grad():
        for position, token in ((0, 300), (1, 57), (2, 800)):
            step = torch.zeros(len(sequence), weight.shape[1], dtype=torch.float64)
            step[len(slot.before) + position] = 1e-2 * (weight[token] - weight[ids[position]])
            finite = (loss(weight[sequence] + step) - loss(weight[sequence] - step)) / 2e-2  # RMSNorm runs in fp32
            assert grad[position, token] - grad[position, ids[position]] == pytest.approx(float(finite), rel=5e-3)


def test_search_lowers_the_loss_monotonically_and_reports_the_loss_the_evaluator_scores():
    model, tokenizer = load_model(RETAIN).eval().requires_grad_(False), load_tokenizer(RETAIN)
    pairs = [(row["question"], row["answer"]) for row in SyntheticQA("forget05").load()[:4]]
    slots = make_slots(tokenizer, PLAIN, pairs, "prefix")
    ids, losses = gcg(model, tokenizer, PLAIN, slots, position="prefix", n_tokens=4, iterations=6, top_k=32,
                      candidates=16, batch_size=16, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert len(losses) == 7 and all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0]
    string = tokenizer.decode(ids)
    assert scored_nll(model, tokenizer, pairs, "!!!!", "prefix") == pytest.approx(losses[0], abs=1e-4)
    assert scored_nll(model, tokenizer, pairs, string, "prefix") == pytest.approx(losses[-1], abs=1e-4)
    assert float(mean_losses(model, slots, torch.tensor([ids]), 4)[0]) == pytest.approx(losses[-1], abs=1e-5)


def test_universal_string_is_never_scored_on_its_training_questions(tmp_path, attack_run):
    attack = AdversarialPrompt(n_tokens=3, iterations=2, top_k=16, candidates=8, train_fraction=0.2, seed=1)
    summary = attack_run(tmp_path, attack, model=RETAIN, limit=20)
    found = summary["attack"]
    trained = set(found["split"]["trained"])
    assert len(trained) == 10 and found["split"]["held_out"] == 40
    assert json.loads((tmp_path / "adversarial_prompt.json").read_text())["string"] == found["string"]
    assert len(found["losses"]) == 3 and found["losses"][-1] <= found["losses"][0]
    for phase in ("before", "after"):
        for name, items in summary["items"][phase].items():
            asked = [item["question"] for item in items]
            assert not trained & {q.removesuffix(" " + found["string"]) for q in asked}, f"{phase} {name}"
            if phase == "after":
                assert all(q.endswith(" " + found["string"]) for q in asked), name


def test_per_question_strings_go_to_their_own_question_only(tmp_path, attack_run):
    attack = AdversarialPrompt(n_tokens=2, iterations=2, top_k=16, candidates=8, mode="per_question")
    summary = attack_run(tmp_path, attack, limit=3)
    strings = summary["attack"]["strings"]
    assert len(strings) == 3 and all(s["losses"][-1] <= s["losses"][0] for s in strings.values())
    for item in summary["items"]["after"]["forget/mcq_acc"]:
        question = next(q for q in strings if item["question"].startswith(q))
        assert item["question"] == f"{question} {strings[question]['string']}"
    retain = [item["question"] for item in summary["items"]["after"]["retain/mcq_acc"]]
    assert retain == [item["question"] for item in summary["items"]["before"]["retain/mcq_acc"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [({"n_tokens": 0}, "n_tokens=0"), ({"position": "middle"}, "suffix or prefix"),
     ({"mode": "both"}, "universal or per_question"), ({"train_fraction": 1.0}, "held out"),
     ({"candidates": 0, "top_k": 0}, "top_k=0 .*candidates=0")],
)  # fmt: skip
def test_bad_hyperparameters_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        AdversarialPrompt(**args)


def test_the_initial_string_tokenises_back_where_the_bpe_merges_repeats(smol):
    """SmolLM2's byte-level BPE merges "!!": ten "!" tokens would decode into a string of other tokens, so GCG starts
    from the next candidate, whose string the evaluator's prompt tokenises into exactly those ids."""
    _, tokenizer = smol
    chat = PromptFormat("chat")
    (slot,) = make_slots(tokenizer, chat, [("What is the capital of France?", "Paris")], "suffix")
    bangs = torch.tensor(tokenizer("!", add_special_tokens=False).input_ids * 10)
    assert not stable(tokenizer, chat, [slot], bangs[None], "suffix")[0]
    ids = initial_ids(tokenizer, chat, [slot], "suffix", 10).tolist()
    prompt = chat.prompt(attacked(slot.question, tokenizer.decode(ids), "suffix"), tokenizer)
    assert len(ids) == 10 and ids != bangs.tolist()
    assert tokenizer(prompt, add_special_tokens=chat.special_tokens).input_ids == slot.before + ids + slot.after
