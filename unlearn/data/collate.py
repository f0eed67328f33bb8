"""Turn rows into padded tensors whose labels keep only answer tokens (never prompt or padding)."""

from __future__ import annotations

import torch

from unlearn.data.prompts import PLAIN, PromptFormat

IGNORE_INDEX = -100


def encode_answer(tokenizer, prompt: str, answer: str, *, special_tokens: bool = True) -> tuple[list[int], int]:
    """Token ids of prompt + answer tokenised together, and the index of the first token that covers the answer.

    Never the answer tokenised alone: a tokenizer that prepends its word marker to every text (the "▁" of Llama-2's
    and Mistral's tokenizer.json) turns " Jane" alone into "▁", "▁Jane" but into "▁Jane" after a prompt. The answer
    starts at the first token whose characters end past the prompt (by the fast tokenizer's offsets), so a token
    that merges across the boundary counts as answer.
    """
    if not getattr(tokenizer, "is_fast", False):
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ValueError(
            f"the tokenizer of {name} is a slow (Python) tokenizer without character offsets, which answer masks "
            "need; save a fast one (tokenizer.json: AutoTokenizer.from_pretrained(..., use_fast=True)) and load that"
        )
    encoded = tokenizer(prompt + answer, add_special_tokens=special_tokens, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    boundary = len(prompt)
    special = set(tokenizer.all_special_ids)
    first = next(
        (k for k, ((_, end), i) in enumerate(zip(offsets, ids, strict=True)) if end > boundary and i not in special),
        len(ids),
    )
    return ids, first


class Collator:
    """Tokenise prompt and answer together; labels keep the tokens from the first one that covers the answer."""

    def __init__(
        self, tokenizer, max_length: int | None = 256, add_eos: bool = True, prompt_format: PromptFormat = PLAIN
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.add_eos = add_eos
        self.prompt_format = prompt_format

    def encode(self, row: dict) -> tuple[list[int], int]:
        """Token ids of one row and how many of them belong to the prompt."""
        if "text" in row:  # a passage: every token is trained on, BOS as the tokenizer adds it
            ids, n_prompt = encode_answer(self.tokenizer, "", row["text"])
        else:
            fmt = self.prompt_format
            prompt, answer = fmt.prompt(row["question"], self.tokenizer), fmt.answer(row["answer"])
            ids, n_prompt = encode_answer(self.tokenizer, prompt, answer, special_tokens=fmt.special_tokens)
        if self.add_eos and self.tokenizer.eos_token_id is not None:
            ids = ids + [self.tokenizer.eos_token_id]
        ids = ids[: self.max_length]
        return ids, min(n_prompt, len(ids))

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(row) for row in rows]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, n_prompt) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention_mask[i, : len(ids)] = 1
            labels[i, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if all("index" in row for row in rows):
            batch["index"] = torch.tensor([row["index"] for row in rows])
        return batch
