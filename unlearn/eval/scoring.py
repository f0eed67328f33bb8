"""Score a causal LM: open answers by generation, multiple choice by the log-likelihood of each choice."""

from __future__ import annotations

import copy
import string
from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

import torch
from tqdm.auto import tqdm

from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.models import cache_of, evaluating, forward_takes, with_cache

LETTERS = string.ascii_uppercase
TEMPLATES = ("cloze", "letter")
Prefix = tuple[int, object]  # tokens every context starts with, and their key-value cache (None when there are none)


class _Batching(NamedTuple):
    """What every scoring path needs to run its forwards, handed on as one."""

    pad_id: int
    size: int  # sequences per forward
    bar: str | None  # the progress bar's name, None for no bar
    prefix: Prefix

    def batches(self, order: list[int]) -> Iterator[list[int]]:
        """`order` in slices of `size` row indices, each counted on the progress bar when there is one."""
        for start in tqdm(range(0, len(order), self.size), desc=self.bar, disable=self.bar is None):
            yield order[start : start + self.size]


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
    desc: str = "score choices",
    prompt_format: PromptFormat = PLAIN,
) -> torch.Tensor:
    """Summed log-probability of each choice's continuation given its question, as lm-evaluation-harness does.

    cloze: context the question in `prompt_format`, continuation the choice as an answer follows it; letter:
    context `letter_prompt(...)`, continuation `" A"`, `" B"`, ... The context is tokenised with special tokens
    (a chat prompt carries its own); a continuation's tokens are those that context + continuation adds, as
    lm-evaluation-harness's HFLM splits them (its predictions are ours).
    When every continuation is one token, one forward per question over its context scores all its choices;
    otherwise the context and all its choices run as one packed sequence (or share its key-value cache, for
    attention kernels that take no custom mask). The tokens every context starts with (a chat template's system
    prompt, a description) run once, their key-value cache copied into each batch.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        rows: dicts with `question` and `choices` (strings); rows may have different numbers of choices.
        template: `cloze` or `letter`.
        description: text before each letter-template prompt (ignored by cloze).
        batch_size: sequences per forward pass.
        progress: show a progress bar over batches.
        desc: the bar's name (the evaluator's tasks name theirs by split and task, e.g. "forget MCQ").
        prompt_format: how cloze puts the question to the model (letter is lm-evaluation-harness's own template).

    Returns:
        (N, C) float32 scores on the model's device, C the most choices of any row; missing choices are -inf.
    """
    if template not in TEMPLATES:
        raise ValueError(f"template={template!r} is unknown; choose one of {TEMPLATES}")
    empty = [k for k, row in enumerate(rows) if not row["choices"]]
    if empty:
        raise ValueError(f"rows {empty} have no choices to score")
    contexts, continuations = _encode_choices(tokenizer, rows, template, description, prompt_format)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    single_token = all(len(ids) == 1 for conts in continuations for ids in conts)
    score = _next_token_scores if single_token else _packed_scores if _takes_custom_mask(model) else _cache_scores
    with evaluating(model), torch.inference_mode():
        batching = _Batching(pad_id, batch_size, desc if progress else None, _shared_prefix(model, contexts))
        per_row = score(model, contexts, continuations, batching)
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
    tokenizer, rows: list[dict], template: str, description: str, prompt_format: PromptFormat
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Context ids (with special tokens, unless a chat prompt carries its own) per row and continuation ids per
    choice, split as the harness splits them.

    A continuation's ids are the tail of the tokenised context + continuation past the tokenised context, not the
    continuation tokenised alone: a tokenizer that prepends its word marker to every text (the "▁" of Llama-2's
    and Mistral's tokenizer.json) turns " A" alone into two tokens, "▁" and "▁A", but into "▁A" after "Answer:".
    """
    special = True
    if template == "cloze":
        contexts = [prompt_format.prompt(row["question"], tokenizer) for row in rows]
        texts = [[prompt_format.answer(choice) for choice in row["choices"]] for row in rows]
        special = prompt_format.special_tokens
    else:
        contexts = [letter_prompt(row["question"], row["choices"], description=description) for row in rows]
        texts = [[" " + letter for letter in LETTERS[: len(row["choices"])]] for row in rows]
    context_ids = tokenizer(contexts, add_special_tokens=special).input_ids if contexts else []
    whole = [context + text for context, row_texts in zip(contexts, texts, strict=True) for text in row_texts]
    whole_ids = tokenizer(whole, add_special_tokens=special).input_ids if whole else []
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
    model, contexts: list[list[int]], continuations: list[list[list[int]]], batching: _Batching
) -> list[torch.Tensor]:
    """Fast path for one-token continuations: the next-token log-softmax at each context's end, one forward."""
    per_row: list[torch.Tensor] = [torch.empty(0)] * len(contexts)
    for index, last, _, _ in _context_forward(model, contexts, batching, False):
        logprobs = last.float().log_softmax(dim=-1)  # (B, V)
        for row, k in enumerate(index):
            per_row[k] = logprobs[row, [ids[0] for ids in continuations[k]]]  # (C_k,)
    return per_row


def _cache_scores(
    model, contexts: list[list[int]], continuations: list[list[list[int]]], batching: _Batching
) -> list[torch.Tensor]:
    """Multi-token path for attention kernels without custom masks: each context runs once, its key-value cache
    shared by all its choices' continuations.

    The first continuation token is scored from the context's last position, the rest from a second forward of the
    continuations alone over the copied cache, the lm-head only at continuation positions.
    """
    per_row: list[torch.Tensor] = [torch.empty(0)] * len(contexts)
    for index, last, cache, mask in _context_forward(model, contexts, batching, True):
        pairs = [(row, c) for row, k in enumerate(index) for c in range(len(continuations[k]))]
        owner = torch.tensor([row for row, _ in pairs], device=last.device)  # (P,) the context row of each pair
        tokens = [continuations[index[row]][c] for row, c in pairs]
        width = max(len(ids) for ids in tokens)
        targets = torch.full((len(pairs), width), batching.pad_id, dtype=torch.long)  # (P, W)
        real = torch.zeros((len(pairs), width), dtype=torch.bool)  # (P, W)
        for p, ids in enumerate(tokens):
            targets[p, : len(ids)], real[p, : len(ids)] = torch.tensor(ids), True
        targets, real = targets.to(last.device), real.to(last.device)
        predictions = last[owner, None]  # (P, 1, V): what the context's end predicts
        if width > 1:
            cache.batch_select_indices(owner)
            lengths = mask.sum(-1)[owner]  # (P,)
            out = model(
                input_ids=targets[:, :-1],
                attention_mask=torch.cat([mask[owner], real[:, :-1].long()], dim=1),
                position_ids=lengths[:, None] + torch.arange(width - 1, device=last.device),
                **with_cache(model, cache),
                **_keep_logits(model, width - 1),
            )
            predictions = torch.cat([predictions, out.logits[:, -(width - 1) :]], dim=1)  # (P, W, V)
        logprobs = predictions.float().log_softmax(dim=-1).gather(-1, targets[..., None]).squeeze(-1)  # (P, W)
        sums = logprobs.masked_fill(~real, 0.0).sum(-1)  # (P,)
        start = 0
        for k in index:
            count = len(continuations[k])
            per_row[k] = sums[start : start + count]  # (C_k,)
            start += count
    return per_row


def _packed_scores(
    model, contexts: list[list[int]], continuations: list[list[list[int]]], batching: _Batching
) -> list[torch.Tensor]:
    """Multi-token path: a question's context and all its choices run as one sequence, each choice attending to the
    context and to itself only (a 4-D mask), so the context's work is done once with no cache copied per choice.

    Rows are right-padded, longest first (little padding); the lm-head runs on the columns from the earliest
    context end in the batch onwards only (`logits_to_keep`).
    """
    per_row: list[torch.Tensor] = [torch.empty(0)] * len(contexts)
    shared, cache = batching.prefix
    contexts = [ids[shared:] for ids in contexts]
    blocks = [sum(len(ids) for ids in conts) for conts in continuations]
    order = sorted(range(len(contexts)), key=lambda k: -(len(contexts[k]) + blocks[k]))
    device = model.device
    dtype = next(model.parameters()).dtype
    for index in batching.batches(order):
        width = max(len(contexts[k]) + blocks[k] for k in index)
        keep = width - min(len(contexts[k]) for k in index) + 1  # lm-head columns: every row's context end onwards
        input_ids = torch.full((len(index), width), batching.pad_id, dtype=torch.long)  # (B, T)
        positions = torch.zeros((len(index), width), dtype=torch.long)  # (B, T)
        segment = torch.full((len(index), width), -1, dtype=torch.long)  # (B, T): -1 pad, 0 context, c + 1 choice c
        tail = max(blocks[k] for k in index)
        targets = torch.full((len(index), tail), batching.pad_id, dtype=torch.long)  # (B, W): each row's choice tokens
        source = torch.zeros((len(index), tail), dtype=torch.long)  # (B, W): the kept column predicting each
        choice = torch.full((len(index), tail), -1, dtype=torch.long)  # (B, W): its choice, -1 for padding
        for row, k in enumerate(index):
            context, offset = contexts[k], len(contexts[k])
            input_ids[row, :offset] = torch.tensor(context)
            positions[row, :offset] = shared + torch.arange(offset)
            segment[row, :offset] = 0
            for c, ids in enumerate(continuations[k]):
                span, block = (
                    slice(offset, offset + len(ids)),
                    slice(offset - len(context), offset - len(context) + len(ids)),
                )
                input_ids[row, span], targets[row, block], choice[row, block] = torch.tensor(ids), torch.tensor(ids), c
                positions[row, span] = shared + len(context) + torch.arange(len(ids))
                segment[row, span] = c + 1
                # a choice's first token is predicted at the context's end, each next one by the token before it
                predictor = torch.tensor([len(context) - 1, *range(offset, offset + len(ids) - 1)])
                source[row, block] = predictor - (width - keep)
                offset += len(ids)
        query, key = segment[:, :, None], segment[:, None, :]  # (B, T, 1), (B, 1, T)
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        allowed = causal & (key >= 0) & ((key == 0) | (key == query))  # (B, T, T)
        allowed |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: finite, and attended by none
        allowed = torch.cat([torch.ones((len(index), width, shared), dtype=torch.bool), allowed], dim=-1)
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)  # (B, T, P+T)
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=mask[:, None].to(device),
            position_ids=positions.to(device),
            **_batch_cache(model, cache, len(index)),
            **_keep_logits(model, keep),
        )
        logits = out.logits[:, -keep:]  # (B, K, V)
        source, choice, targets = source.to(device), choice.to(device), targets.to(device)
        predictions = logits.gather(1, source[..., None].expand(-1, -1, logits.shape[-1]))  # (B, W, V)
        logprobs = predictions.float().log_softmax(dim=-1).gather(-1, targets[..., None]).squeeze(-1)  # (B, W)
        sums = torch.zeros((len(index), max(len(continuations[k]) for k in index) + 1), device=device)  # (B, C + 1)
        sums.scatter_add_(1, choice + 1, logprobs.masked_fill(choice < 0, 0.0))
        for row, k in enumerate(index):
            per_row[k] = sums[row, 1 : len(continuations[k]) + 1]  # (C_k,)
    return per_row


def _shared_prefix(model, contexts: list[list[int]]) -> Prefix:
    """The longest token prefix all contexts start with (a system prompt, a description), short of each one's last
    token, and its key-value cache from one forward; (0, None) when there is none."""
    shared = min((len(ids) for ids in contexts), default=1) - 1
    for ids in contexts[1:]:
        shared = next((t for t in range(shared) if ids[t] != contexts[0][t]), shared)
    if len(contexts) < 2 or shared < 1:
        return 0, None
    ids = torch.tensor([contexts[0][:shared]], device=model.device)
    return shared, cache_of(model(input_ids=ids, use_cache=True, **_keep_logits(model, 1)))


def _batch_cache(model, cache, rows: int) -> dict:
    """The shared prefix's cache repeated for a batch of `rows`, as the forward's cache argument (none without one)."""
    if cache is None:
        return {}
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(rows)
    return with_cache(model, cache)


def _takes_custom_mask(model) -> bool:
    """Whether the model's attention reads a 4-D float mask as given (eager and SDPA do; flash kernels do not)."""
    return getattr(model.config, "_attn_implementation", None) in ("eager", "sdpa")


def _context_forward(
    model, contexts: list[list[int]], batching: _Batching, keep_cache: bool
) -> Iterator[tuple[list[int], torch.Tensor, object, torch.Tensor]]:
    """Yield (indices, last-position logits (B, V), key-value cache or None, attention mask (B, P + T)) per batch.

    Contexts past the shared prefix are left-padded, longest first, with position ids counted from each row's
    first real token, so every row ends at the last column and the lm-head runs there only (`logits_to_keep`).
    """
    shared, cache = batching.prefix
    contexts = [ids[shared:] for ids in contexts]
    order = sorted(range(len(contexts)), key=lambda k: -len(contexts[k]))
    device = model.device
    for index in batching.batches(order):
        width = len(contexts[index[0]])
        input_ids = torch.full((len(index), width), batching.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(index), width), dtype=torch.long)  # (B, T)
        for row, k in enumerate(index):
            input_ids[row, width - len(contexts[k]) :] = torch.tensor(contexts[k])
            mask[row, width - len(contexts[k]) :] = 1
        mask = torch.cat([torch.ones((len(index), shared), dtype=torch.long), mask], dim=1).to(device)
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0)[:, shared:],
            use_cache=keep_cache,
            **_batch_cache(model, cache, len(index)),
            **_keep_logits(model, 1),
        )
        yield index, out.logits[:, -1], cache_of(out) if keep_cache else None, mask


def _keep_logits(model, count: int) -> dict:
    """Ask for the last `count` positions' logits only, where the model supports it (transformers' logits_to_keep)."""
    return {"logits_to_keep": count} if forward_takes(model, "logits_to_keep") else {}
