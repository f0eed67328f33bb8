"""Informed prompt perturbation (Łucki et al. 2024, "An adversarial perspective on unlearning", arXiv:2409.18025)."""

from __future__ import annotations

import torch

from unlearn.data.prompts import PromptFormat
from unlearn.io import atomic_write_json
from unlearn.methods.representation import check_layers, layer_outputs
from unlearn.models import decoder_layers
from unlearn.robustness.ablation import unlearning_directions
from unlearn.robustness.base import Attack, Target

Span = tuple[int, int, float]  # a token's start and end in its question, and its activation's cosine with a direction


def token_cosines(
    model: torch.nn.Module, tokenizer, prompt_format: PromptFormat, questions: list[str], direction: torch.Tensor,
    layer: int, batch_size: int,
) -> list[list[Span]]:  # fmt: skip
    """Per question, each of its tokens in its prompt: its character span in the question and the cosine of its
    activation leaving decoder layer `layer` with `direction`."""
    start, device = len(prompt_format.prefix(tokenizer)), next(model.parameters()).device
    spans = []
    for first in range(0, len(questions), batch_size):
        chunk = questions[first : first + batch_size]
        encoded = tokenizer(
            [prompt_format.prompt(q, tokenizer) for q in chunk], return_tensors="pt", padding=True,
            padding_side="right", add_special_tokens=prompt_format.special_tokens, return_offsets_mapping=True,
        )  # fmt: skip
        offsets = encoded.pop("offset_mapping").tolist()
        with torch.inference_mode():
            (hidden,) = layer_outputs(model, encoded.to(device), [layer])  # (B, T, D)
        cosines = torch.cosine_similarity(hidden.float(), direction.to(device).float(), dim=-1).tolist()
        for question, row_offsets, row_cosines in zip(chunk, offsets, cosines, strict=True):
            spans.append([
                (a - start, b - start, c) for (a, b), c in zip(row_offsets, row_cosines, strict=True)
                if start <= a < b <= start + len(question)
            ])  # fmt: skip
    return spans


def insertion_point(question: str, start: int, end: int) -> int | None:
    """Where a character goes inside the token question[start:end]: the middle of its text past a leading space;
    None when fewer than two characters are left to split."""
    text = question[start:end]
    start += len(text) - len(text.lstrip())
    return start + (end - start) // 2 if end - start >= 2 else None


def perturb_once(question: str, spans: list[Span], character: str, per_round: int, min_cosine: float) -> str:
    """`question` with `character` inserted inside each of its `per_round` splittable tokens most aligned with the
    direction (cosine above `min_cosine`)."""
    aligned = [(c, p) for a, b, c in spans if c > min_cosine and (p := insertion_point(question, a, b)) is not None]
    for point in sorted((p for _, p in sorted(aligned, reverse=True)[:per_round]), reverse=True):
        question = question[:point] + character + question[point:]
    return question


def perturb(
    model: torch.nn.Module, tokenizer, prompt_format: PromptFormat, questions: list[str], direction: torch.Tensor,
    layer: int, *, rounds: int, per_round: int, character: str, min_cosine: float, batch_size: int,
) -> tuple[dict[str, str], int]:  # fmt: skip
    """Each question perturbed and re-tokenised round by round until it stops changing or `rounds` ran, and the number
    of rounds that changed any question."""
    current, changing, changed_rounds = {q: q for q in questions}, list(questions), 0
    while changing and changed_rounds < rounds:
        texts = [current[q] for q in changing]
        spans = token_cosines(model, tokenizer, prompt_format, texts, direction, layer, batch_size)
        new = [perturb_once(t, s, character, per_round, min_cosine) for t, s in zip(texts, spans, strict=True)]
        current.update(zip(changing, new, strict=True))
        changing = [q for q, old, text in zip(changing, texts, new, strict=True) if text != old]
        changed_rounds += bool(changing)
    return current, changed_rounds


class InformedPerturbation(Attack):
    """Break up, by inserted characters, the prompt tokens whose activations point along the unlearning direction."""

    def __init__(
        self, original: str = "tiny-target", layer: int | None = None, rounds: int = 3, per_round: int = 1,
        character: str = " ", min_cosine: float = 0.7, batch_size: int = 64,
    ) -> None:  # fmt: skip
        """
        Args:
            original: the model before unlearning (built-in name, hub id or path); the direction is the unit mean
                difference of the unlearned and original activations at the end of the forget prompts at `layer`.
            layer: the decoder layer whose activations are compared with the direction; None takes the middle one.
            rounds: at most this many perturb-and-re-tokenise rounds per question.
            per_round: tokens split per question and round, the most aligned first.
            character: what is inserted inside a token's text.
            min_cosine: only tokens whose cosine with the direction exceeds this are split.
            batch_size: prompts per forward.
        """
        counts = {"rounds": rounds, "per_round": per_round, "batch_size": batch_size}
        problems = [f"{name}={value} must be at least 1" for name, value in counts.items() if value < 1]
        if len(character) != 1:
            problems.append(f"character={character!r} must be one character")
        if not -1 <= min_cosine < 1:
            problems.append(f"min_cosine={min_cosine} must be in [-1, 1)")
        if problems:
            raise ValueError(f"InformedPerturbation: {'; '.join(problems)}")
        self.original, self.layer, self.rounds, self.per_round = original, layer, rounds, per_round
        self.character, self.min_cosine, self.batch_size = character, min_cosine, batch_size

    def models(self) -> dict[str, str]:
        return {"InformedPerturbation's original model": self.original}

    def run(self, target: Target) -> dict:
        model, module = target.model, target.module
        layer = self.layer if self.layer is not None else len(decoder_layers(model)) // 2
        check_layers(model, module.model_name, "InformedPerturbation", [layer])
        ((direction, norm),) = unlearning_directions(
            target, self.original, [layer], self.batch_size, "InformedPerturbation"
        ).values()
        asked = list(dict.fromkeys(row["question"] for rows in target.evaluator.rows.values() for row in rows))
        perturbed, rounds = perturb(
            model, module.tokenizer, module.prompt_format, asked, direction, layer, rounds=self.rounds,
            per_round=self.per_round, character=self.character, min_cosine=self.min_cosine, batch_size=self.batch_size,
        )  # fmt: skip
        target.ask_instead(perturbed.__getitem__)
        changed = {q: p for q, p in perturbed.items() if p != q}
        return {
            "layer": layer,
            "difference_norm": norm,
            "questions": len(asked),
            "changed": len(changed),
            "inserted": sum(len(p) - len(q) for q, p in changed.items()),
            "rounds": rounds,
            "file": str(atomic_write_json(target.root / "informed_perturbation.json", changed)),
        }
