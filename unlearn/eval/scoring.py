"""Score a causal LM: open answers by generation, multiple choice by the log-likelihood of each choice."""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from tqdm.auto import tqdm

from unlearn.data.collate import qa_prompt
from unlearn.strategies import in_lockstep

LETTERS = string.ascii_uppercase
TEMPLATES = ("cloze", "letter")


def generate_answers(
    model,
    tokenizer,
    questions: list[str],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    stop: Sequence[str] = ("\n",),
    progress: bool = False,
) -> list[str]:
    """Answer each `qa_prompt(question)`, left-padded so every row continues from its own last token.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer, with a pad token; its padding side is restored afterwards.
        questions: the questions, without the prompt format.
        max_new_tokens: generation budget per answer.
        batch_size: prompts per `generate` call.
        do_sample: greedy when False; otherwise pure temperature sampling (no top-k / top-p), so repeated
            samples follow the model's own distribution.
        temperature: softmax temperature when sampling.
        stop: strings that end an answer; generation also stops early once every row has produced one.
        progress: show a progress bar over batches.

    Returns:
        One answer per question: the continuation cut at EOS and at the first stop string, stripped.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = _eos_ids(model, tokenizer)
    sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if do_sample else {}
    stopping = {"stop_strings": list(stop), "tokenizer": tokenizer} if stop else {}
    answers = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        with _inference(model):
            for start in tqdm(range(0, len(questions), batch_size), desc="generate", disable=not progress):
                prompts = [qa_prompt(q) for q in questions[start : start + batch_size]]
                batch = tokenizer(prompts, return_tensors="pt", padding=True)
                output = model.generate(
                    input_ids=batch["input_ids"].to(model.device),
                    attention_mask=batch["attention_mask"].to(model.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    pad_token_id=pad_id,
                    synced_gpus=False if in_lockstep(model) else None,
                    **sampling,
                    **stopping,
                )  # (B, T + new)
                for ids in output[:, batch["input_ids"].shape[1] :].tolist():
                    ids = ids[: next((k for k, t in enumerate(ids) if t in eos_ids), len(ids))]
                    answers.append(_cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stop))
    finally:
        tokenizer.padding_side = padding_side
    return answers


def letter_prompt(question: str, choices: Sequence[str], *, description: str = "") -> str:
    """lm-evaluation-harness's zero-shot MMLU/WMDP prompt, so letter scores compare with published ones."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"the letter template labels at most {len(LETTERS)} choices; got {len(choices)}")
    lines = [f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices, strict=False)]
    return description + "\n".join([question.strip(), *lines, "Answer:"])


def choice_logprobs(
    model,
    tokenizer,
    rows: list[dict],
    *,
    template: Literal["cloze", "letter"] = "cloze",
    description: str = "",
    batch_size: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """Summed log-probability of each choice's continuation given its question, as lm-evaluation-harness does.

    cloze: context `qa_prompt(question)`, continuation `" " + choice`; letter: context `letter_prompt(...)`,
    continuation `" A"`, `" B"`, ... The context is tokenised with special tokens; a continuation's tokens are those
    that context + continuation adds, as lm-evaluation-harness's HFLM splits them (its predictions are ours).
    When every continuation is one token, one forward per question over its context scores all its choices.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        rows: dicts with `question` and `choices` (strings); rows may have different numbers of choices.
        template: `cloze` or `letter`.
        description: text before each letter-template prompt (ignored by cloze).
        batch_size: sequences per forward pass.
        progress: show a progress bar over batches.

    Returns:
        (N, C) float32 scores on the model's device, C the most choices of any row; missing choices are -inf.
    """
    if template not in TEMPLATES:
        raise ValueError(f"template={template!r} is unknown; choose one of {TEMPLATES}")
    empty = [k for k, row in enumerate(rows) if not row["choices"]]
    if empty:
        raise ValueError(f"rows {empty} have no choices to score")
    contexts, continuations = _encode_choices(tokenizer, rows, template, description)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    single_token = all(len(ids) == 1 for conts in continuations for ids in conts)
    score = _next_token_scores if single_token else _continuation_scores
    with _inference(model):
        per_row = score(
            model, contexts, continuations, pad_id=pad_id, batch_size=batch_size, progress=progress
        )
    width = max((len(conts) for conts in continuations), default=0)
    scores = torch.full((len(rows), width), float("-inf"), device=model.device)  # (N, C)
    for k, row_scores in enumerate(per_row):
        scores[k, : len(row_scores)] = row_scores
    return scores


def mcq_predictions(scores: torch.Tensor) -> torch.Tensor:
    """Index of the most likely choice per row; an empty batch gives an empty result rather than an error."""
    if scores.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    return scores.argmax(dim=-1)  # (N,)


def _encode_choices(
    tokenizer, rows: list[dict], template: str, description: str
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Context ids (with special tokens) per row and continuation ids per choice, split as the harness splits them.

    A continuation's ids are the tail of the tokenised context + continuation past the tokenised context, not the
    continuation tokenised alone: a tokenizer that prepends its word marker to every text (the "▁" of Llama-2's
    and Mistral's tokenizer.json) turns " A" alone into two tokens, "▁" and "▁A", but into "▁A" after "Answer:".
    """
    if template == "cloze":
        contexts = [qa_prompt(row["question"]) for row in rows]
        texts = [[" " + choice for choice in row["choices"]] for row in rows]
    else:
        contexts = [letter_prompt(row["question"], row["choices"], description=description) for row in rows]
        texts = [[" " + letter for letter in LETTERS[: len(row["choices"])]] for row in rows]
    context_ids = tokenizer(contexts).input_ids if contexts else []
    whole = [context + text for context, row_texts in zip(contexts, texts, strict=True) for text in row_texts]
    whole_ids = tokenizer(whole).input_ids if whole else []
    continuations, start = [], 0
    for k, (ids, row_texts) in enumerate(zip(context_ids, texts, strict=True)):
        continuations.append([full[len(ids) :] for full in whole_ids[start : start + len(row_texts)]])
        start += len(row_texts)
        empty = [text for text, conts in zip(row_texts, continuations[-1], strict=True) if not conts]
        if empty:
            raise ValueError(
                f"row {k}: the tokenizer merges the continuations {empty} into the end of the context, so they "
                f"have no tokens of their own to score; end the question differently or use the other template"
            )
    return context_ids, continuations


def _next_token_scores(
    model,
    contexts: list[list[int]],
    continuations: list[list[list[int]]],
    *,
    pad_id: int,
    batch_size: int,
    progress: bool,
) -> list[torch.Tensor]:
    """Fast path for one-token continuations: the next-token log-softmax at each context's last position."""
    per_row: list[torch.Tensor] = [torch.empty(0)] * len(contexts)
    for index, lengths, logits in _right_padded_forward(model, contexts, pad_id, batch_size, progress):
        rows = torch.arange(len(index), device=logits.device)
        logprobs = logits[rows, lengths - 1].float().log_softmax(dim=-1)  # (B, V)
        for row, k in enumerate(index):
            per_row[k] = logprobs[row, [ids[0] for ids in continuations[k]]]  # (C_k,)
    return per_row


def _continuation_scores(
    model,
    contexts: list[list[int]],
    continuations: list[list[list[int]]],
    *,
    pad_id: int,
    batch_size: int,
    progress: bool,
) -> list[torch.Tensor]:
    """General path: one forward per (question, choice) pair, summing the continuation tokens' log-probs."""
    pairs = [(k, c) for k, conts in enumerate(continuations) for c in range(len(conts))]
    sequences = [contexts[k] + continuations[k][c] for k, c in pairs]
    pair_scores = torch.empty(len(pairs), device=model.device)  # (P,)
    for index, _, logits in _right_padded_forward(model, sequences, pad_id, batch_size, progress):
        rows, positions, targets = [], [], []
        for row, p in enumerate(index):
            k, c = pairs[p]
            first = len(contexts[k]) - 1  # the position that predicts the continuation's first token
            rows += [row] * len(continuations[k][c])
            positions += range(first, first + len(continuations[k][c]))
            targets += continuations[k][c]
        rows_t = torch.tensor(rows, device=logits.device)
        positions_t = torch.tensor(positions, device=logits.device)
        targets_t = torch.tensor(targets, device=logits.device)
        logprobs = logits[rows_t, positions_t].float().log_softmax(dim=-1)  # (K, V)
        token_logprobs = logprobs.gather(-1, targets_t[:, None]).squeeze(-1)  # (K,)
        sums = torch.zeros(len(index), device=logits.device).index_add_(0, rows_t, token_logprobs)  # (B,)
        pair_scores[torch.tensor(index, device=logits.device)] = sums
    per_row, start = [], 0
    for conts in continuations:
        per_row.append(pair_scores[start : start + len(conts)])  # (C_k,)
        start += len(conts)
    return per_row


def _right_padded_forward(
    model, sequences: list[list[int]], pad_id: int, batch_size: int, progress: bool
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Yield (indices, lengths, logits) per batch, longest first so batches pad little.

    Right padding keeps real tokens at their unpadded positions: no model needs mask-derived position ids.
    """
    order = sorted(range(len(sequences)), key=lambda k: -len(sequences[k]))
    for start in tqdm(range(0, len(order), batch_size), desc="score", disable=not progress):
        index = order[start : start + batch_size]
        lengths = torch.tensor([len(sequences[k]) for k in index])  # (B,)
        input_ids = torch.full((len(index), int(lengths.max())), pad_id, dtype=torch.long)  # (B, T)
        for row, k in enumerate(index):
            input_ids[row, : lengths[row]] = torch.tensor(sequences[k])
        attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()  # (B, T)
        device = model.device
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        yield index, lengths.to(logits.device), logits  # logits: (B, T, V)


@contextmanager
def _inference(model) -> Iterator[None]:
    """Eval mode without autograd, then each module's own training flag back, so callbacks can run mid-fit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, training in flags:
            module.training = training


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends an answer: the tokenizer's EOS and whatever the model's generation config adds."""
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = config_eos if isinstance(config_eos, list) else [config_eos]
    return {i for i in [tokenizer.eos_token_id, *ids] if i is not None}


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string, stripped."""
    end = min((text.find(s) for s in stop if s and s in text), default=len(text))
    return text[:end].strip()
