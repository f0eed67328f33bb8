"""Turn rows into padded tensors whose labels keep only answer tokens (never prompt or padding)."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def qa_prompt(question: str) -> str:
    """The one prompt format the tiny models were trained on and every evaluator uses."""
    return f"Question: {question}\nAnswer:"


def prompt_and_answer(row: dict) -> tuple[str, str]:
    """Split a QA or text row into the part we condition on and the part the loss sees."""
    if "text" in row:
        return "", row["text"]
    return qa_prompt(row["question"]), " " + row["answer"]


class Collator:
    """Tokenise prompt and answer separately, so the answer mask is exact whatever the tokenizer merges."""

    def __init__(self, tokenizer, max_length: int = 256, add_eos: bool = True) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.add_eos = add_eos

    def encode(self, row: dict) -> tuple[list[int], int]:
        """Token ids of one row and how many of them belong to the prompt."""
        prompt, answer = prompt_and_answer(row)
        prompt_ids = self.tokenizer(prompt).input_ids
        answer_ids = self.tokenizer(answer, add_special_tokens=False).input_ids
        if self.add_eos and self.tokenizer.eos_token_id is not None:
            answer_ids = answer_ids + [self.tokenizer.eos_token_id]
        ids = (prompt_ids + answer_ids)[: self.max_length]
        return ids, min(len(prompt_ids), len(ids))

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
