"""The attacker's fine-tuning: plain AdamW on answer NLL, every weight trainable, rows in a seeded order."""

from __future__ import annotations

import torch

from unlearn.data.collate import Collator
from unlearn.losses import mean_token_nll


def seeded_subset(rows: list[dict], k: int, seed: int) -> list[dict]:
    """k rows drawn without replacement by a permutation seeded by `seed`: the same rows on every run."""
    if not 1 <= k < len(rows):
        raise ValueError(f"k={k} must be between 1 and {len(rows) - 1}: the rest of the {len(rows)} rows is held out")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    return [rows[i] for i in sorted(order[:k])]


def held_out_split(forget: list[dict], k: int, seed: int, attack: str) -> list[dict]:
    """The k forget rows an attack learns from (`Attack.seen`); the evaluation keeps only the other questions."""
    if any("question" not in row for row in forget):
        raise ValueError(
            f"{attack} needs question/answer forget rows: a passage states facts that the held-out questions ask, "
            "so its rows could not be kept out of the evaluation; set data.forget to a qa source"
        )
    return seeded_subset(forget, k, seed)


def finetune(
    model: torch.nn.Module, collator: Collator, rows: list[dict], *, steps: int, batch_size: int, lr: float, seed: int
) -> list[float]:
    """Train every parameter of `model` for `steps` AdamW steps on `rows` (cycled in a seeded order); the losses."""
    if steps < 1 or batch_size < 1 or not rows:
        raise ValueError(
            f"fine-tuning needs steps >= 1, batch_size >= 1 and rows; got {steps}, {batch_size}, {len(rows)}"
        )
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    device = next(model.parameters()).device
    losses = []
    model.train()
    for step in range(steps):
        picked = [rows[order[(step * batch_size + j) % len(rows)]] for j in range(batch_size)]
        batch = {key: value.to(device) for key, value in collator(picked).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = mean_token_nll(logits, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses
