"""Greedy coordinate gradient prompts (Zou et al. 2023, arXiv:2307.15043; Łucki et al. 2024, arXiv:2409.18025)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from unlearn.data.prompts import PromptFormat
from unlearn.io import atomic_write_json
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.finetune import held_out_split
from unlearn.robustness.mcq import forget_mcq

# GCG's initial string is one of these tokens n_tokens times: the first that tokenises back into itself inside the
# prompt ("!" does for most tokenizers; byte-level BPEs such as SmolLM2's merge "!!" into one token, so " !" then).
INITS = ("!", " !", "x", " x", ".", " the")


def attacked(question: str, string: str, position: str) -> str:
    """The question with the adversarial string after (suffix) or before (prefix) it, one space apart."""
    return f"{question} {string}" if position == "suffix" else f"{string} {question}"


@dataclass(frozen=True)
class Slot:
    """One question's prompt ids before and after the adversarial tokens, and its answer's ids (the target)."""

    question: str
    before: list[int]
    after: list[int]
    answer: list[int]


def make_slots(tokenizer, prompt_format: PromptFormat, pairs: list[tuple[str, str]], position: str) -> list[Slot]:
    """A slot per (question, answer): the prompt split where the string goes, the answer as MCQ cloze scores it."""
    prefix, suffix = prompt_format.prefix(tokenizer), prompt_format.suffix(tokenizer)
    slots = []
    for question, answer in pairs:
        before, after = (prefix + question + " ", suffix) if position == "suffix" else (prefix, " " + question + suffix)
        after_ids = tokenizer(after, add_special_tokens=False).input_ids
        whole = tokenizer(after + prompt_format.answer(answer), add_special_tokens=False).input_ids
        before_ids = tokenizer(before, add_special_tokens=prompt_format.special_tokens).input_ids
        slots.append(Slot(question, before_ids, after_ids, whole[len(after_ids) :]))
    return slots


def slot_losses(model: torch.nn.Module, slot: Slot, adversarial: torch.Tensor) -> torch.Tensor:
    """-log P(answer | prompt) (C,) of `slot` with each of C adversarial embedding sequences (C, n, D) in place."""
    embed, count, device = model.get_input_embeddings(), len(adversarial), adversarial.device
    before = embed(torch.tensor(slot.before, device=device)).expand(count, -1, -1)
    after = embed(torch.tensor(slot.after + slot.answer, device=device)).expand(count, -1, -1)
    logits = model(inputs_embeds=torch.cat([before, adversarial, after], 1)).logits
    predicted = logits[:, -len(slot.answer) - 1 : -1].float().log_softmax(-1)  # (C, A, V): each answer token's
    answer = torch.tensor(slot.answer, device=device)
    return -predicted[:, torch.arange(len(answer), device=device), answer].sum(-1)


def mean_losses(model: torch.nn.Module, slots: list[Slot], candidates: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The answer NLL (C,) of each candidate token sequence (C, n), averaged over the slots, on the CPU."""
    embed, device = model.get_input_embeddings(), next(model.parameters()).device
    total = torch.zeros(len(candidates))
    with torch.no_grad():
        for slot in slots:
            for start in range(0, len(candidates), batch_size):
                chunk = embed(candidates[start : start + batch_size].to(device))
                total[start : start + batch_size] += slot_losses(model, slot, chunk).cpu()
    return total / len(slots)


def token_gradients(model: torch.nn.Module, slots: list[Slot], ids: torch.Tensor) -> torch.Tensor:
    """∇ (n, V) of the mean answer NLL with respect to the one-hot encoding of each adversarial token: the first-order
    change of the loss when a position's token is swapped, by which GCG picks its candidates."""
    weight = model.get_input_embeddings().weight
    one_hot = torch.nn.functional.one_hot(ids.to(weight.device), len(weight)).to(weight.dtype).requires_grad_(True)
    grad = torch.zeros_like(one_hot)
    for slot in slots:
        loss = slot_losses(model, slot, (one_hot @ weight)[None])[0] / len(slots)
        grad += torch.autograd.grad(loss, one_hot)[0]
    return grad.float().cpu()


def sample_candidates(
    ids: torch.Tensor, grad: torch.Tensor, allowed: torch.Tensor, top_k: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """`count` copies of `ids` (n,), each with one random position swapped for a random one of the top_k allowed
    tokens there by most negative gradient (count, n)."""
    top = grad.masked_fill(~allowed, float("inf")).topk(min(top_k, int(allowed.sum())), dim=1, largest=False).indices
    positions = torch.randint(len(ids), (count,), generator=generator)
    picks = torch.randint(top.shape[1], (count,), generator=generator)
    candidates = ids.repeat(count, 1)
    candidates[torch.arange(count), positions] = top[positions, picks]
    return candidates


def stable(tokenizer, prompt_format: PromptFormat, slots: list[Slot], candidates: torch.Tensor, position: str):
    """Whether each candidate (C,) decoded into a string and put into every slot's question gives back exactly its own
    tokens when the prompt is tokenised as the evaluator does, so that the loss searched is the loss scored."""
    strings = tokenizer.batch_decode(candidates.tolist())
    texts = [prompt_format.prompt(attacked(s.question, text, position), tokenizer) for text in strings for s in slots]
    got = tokenizer(texts, add_special_tokens=prompt_format.special_tokens).input_ids
    wanted = [s.before + ids + s.after for ids in candidates.tolist() for s in slots]
    same = torch.tensor([a == b for a, b in zip(got, wanted, strict=True)])
    return same.view(len(candidates), len(slots)).all(1)


def initial_ids(
    tokenizer, prompt_format: PromptFormat, slots: list[Slot], position: str, n_tokens: int
) -> torch.Tensor:
    """n_tokens copies of the first of INITS' tokens whose string tokenises back into its own tokens in every slot."""
    for text in INITS:
        ids = torch.tensor(tokenizer(text, add_special_tokens=False).input_ids[-1:] * n_tokens)
        if stable(tokenizer, prompt_format, slots, ids[None], position)[0]:
            return ids
    raise ValueError(f"no initial string of {n_tokens} x one of {INITS} tokenises back into its own tokens")


def gcg(
    model: torch.nn.Module, tokenizer, prompt_format: PromptFormat, slots: list[Slot], *, position: str,
    n_tokens: int, iterations: int, top_k: int, candidates: int, batch_size: int, generator: torch.Generator,
) -> tuple[list[int], list[float]]:  # fmt: skip
    """GCG's adversarial token ids for `slots` and the mean answer NLL before and after each iteration (a candidate
    replaces the string only when it lowers the loss, so the losses never rise)."""
    ids = initial_ids(tokenizer, prompt_format, slots, position, n_tokens)
    allowed = torch.zeros(len(model.get_input_embeddings().weight), dtype=torch.bool)
    allowed[: len(tokenizer)] = True
    allowed[tokenizer.all_special_ids] = False
    losses = [float(mean_losses(model, slots, ids[None], batch_size)[0])]
    for _ in range(iterations):
        batch = sample_candidates(ids, token_gradients(model, slots, ids), allowed, top_k, candidates, generator)
        batch = batch[(batch != ids).any(1)]
        batch = batch[stable(tokenizer, prompt_format, slots, batch, position)] if len(batch) else batch
        loss = losses[-1]
        if len(batch):
            scores = mean_losses(model, slots, batch, batch_size)
            best = int(scores.argmin())
            if scores[best] < loss:
                ids, loss = batch[best], float(scores[best])
        losses.append(loss)
    return ids.tolist(), losses


class AdversarialPrompt(Attack):
    """Search for a string of adversarial tokens, added to every question, under which the true answers come back."""

    def __init__(
        self, n_tokens: int = 20, position: Literal["suffix", "prefix"] = "suffix", iterations: int = 100,
        top_k: int = 256, candidates: int = 128, mode: Literal["universal", "per_question"] = "universal",
        train_fraction: float = 0.5, batch_size: int = 64, seed: int = 0,
    ) -> None:  # fmt: skip
        """
        Args:
            n_tokens: adversarial tokens in the string (each starts as "!").
            position: the string goes after (suffix) or before (prefix) the question, one space apart.
            iterations: GCG steps: a gradient, `candidates` single-token swaps scored exactly, the best kept.
            top_k: tokens per position, by most negative gradient, that swaps draw from.
            candidates: swaps scored per iteration.
            mode: universal optimises one string on `train_fraction` of the forget QA rows (left out of every
                evaluation task) and adds it to every question asked; per_question optimises one string per question of
                the forget MCQ task, on its correct choice, and adds it to that question only (an upper bound).
            train_fraction: the share of forget rows a universal string is optimised on, drawn by `seed`.
            batch_size: sequences per forward when scoring candidates.
            seed: chooses the training rows and the swaps.
        """
        problems = [f"{name}={value} must be at least 1" for name, value in
                    (("n_tokens", n_tokens), ("iterations", iterations), ("top_k", top_k), ("candidates", candidates),
                     ("batch_size", batch_size)) if value < 1]  # fmt: skip
        if position not in ("suffix", "prefix"):
            problems.append(f"position={position!r} must be suffix or prefix")
        if mode not in ("universal", "per_question"):
            problems.append(f"mode={mode!r} must be universal or per_question")
        if not 0 < train_fraction < 1:
            problems.append(f"train_fraction={train_fraction} must be in (0, 1): the rest is held out")
        if problems:
            raise ValueError(f"AdversarialPrompt: {'; '.join(problems)}")
        self.n_tokens, self.position, self.iterations, self.top_k = n_tokens, position, iterations, top_k
        self.candidates, self.mode, self.train_fraction = candidates, mode, train_fraction
        self.batch_size, self.seed = batch_size, seed

    def seen(self, forget: list[dict]) -> list[dict]:
        if self.mode == "per_question":
            return []
        return held_out_split(forget, round(self.train_fraction * len(forget)), self.seed, "AdversarialPrompt")

    def search(self, target: Target, pairs: list[tuple[str, str]], generator: torch.Generator) -> dict:
        """The string GCG finds for (question, answer) pairs, its token ids and its loss per iteration."""
        module = target.module
        slots = make_slots(module.tokenizer, module.prompt_format, pairs, self.position)
        ids, losses = gcg(
            target.model.requires_grad_(False), module.tokenizer, module.prompt_format, slots, position=self.position,
            n_tokens=self.n_tokens, iterations=self.iterations, top_k=self.top_k, candidates=self.candidates,
            batch_size=self.batch_size, generator=generator,
        )  # fmt: skip
        return {"string": module.tokenizer.decode(ids), "token_ids": ids, "losses": losses}

    def run(self, target: Target) -> dict:
        generator = torch.Generator().manual_seed(self.seed)
        if self.mode == "universal":
            rows = self.seen(target.forget)
            found = self.search(target, [(row["question"], row["answer"]) for row in rows], generator)
            target.ask_instead(lambda question: attacked(question, found["string"], self.position))
            split = {"seed": self.seed, "trained": [row["question"] for row in rows],
                     "held_out": len(target.forget) - len(rows)}  # fmt: skip
            numbers = {"mode": self.mode, "position": self.position, **found, "split": split}
        else:
            rows = target.evaluator.rows[forget_mcq(target, "AdversarialPrompt per_question")]
            pairs = {row["question"]: row["choices"][row["answer"]] for row in rows}
            strings = {q: self.search(target, [(q, answer)], generator) for q, answer in pairs.items()}
            target.ask_instead(lambda q: attacked(q, strings[q]["string"], self.position) if q in strings else q)
            numbers = {"mode": self.mode, "position": self.position, "strings": strings}
        return {**numbers, "file": str(atomic_write_json(target.root / "adversarial_prompt.json", numbers))}
