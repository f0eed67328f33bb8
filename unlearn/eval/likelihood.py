"""Teacher-forced answer likelihoods of QA rows, batched: what the MIA and TOFU metrics score."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from unlearn.data.collate import Collator
from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.eval.mia import loss_score
from unlearn.losses import shifted_logprobs
from unlearn.models import evaluating


def answer_forward(
    model, tokenizer, rows: list[dict], batch_size: int, prompt_format: PromptFormat = PLAIN
) -> Iterator[tuple[list[dict], torch.Tensor, torch.Tensor]]:
    """Yield (rows, logits (B, T, V), labels (B, T)) per batch; labels keep only answer tokens and the EOS."""
    collate, device = Collator(tokenizer, prompt_format=prompt_format), model.device
    with evaluating(model), torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            yield chunk, logits, batch["labels"]


def mean_answer_logprobs(
    model, tokenizer, rows: list[dict], batch_size: int, prompt_format: PromptFormat = PLAIN
) -> torch.Tensor:
    """(N,) ``log P(a|q)^(1/|a|)``, the mean answer-token log-prob of each row, on the CPU in float64.

    |a| counts the answer's tokens and the EOS the collator appends, as TOFU's labels include it.
    """
    values = [
        -loss_score(*shifted_logprobs(logits, labels)).double().cpu()
        for _, logits, labels in answer_forward(model, tokenizer, rows, batch_size, prompt_format)
    ]
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)
