"""The reference model behind one helper: log-probs cached before training, or a frozen copy."""

from __future__ import annotations

import copy

import torch

from unlearn.losses import sequence_nll
from unlearn.models import decoder_layers

REFERENCE_STRATEGIES = ("cached", "frozen")


def frozen_copy(model: torch.nn.Module, keep_layers: int | None = None) -> torch.nn.Module:
    """A gradient-free copy of the policy; `keep_layers` drops the blocks a hooked layer never needs."""
    reference = copy.deepcopy(model)
    if keep_layers is not None:
        del decoder_layers(reference)[keep_layers:]
    reference.requires_grad_(False)
    return reference.eval()


@torch.no_grad()
def cache_sequence_nll(model: torch.nn.Module, dataloader, role: str, size: int) -> torch.Tensor:
    """Summed answer NLL of every row, by row index: NPO's and DPO's reference with no second model."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    cache = torch.full((size,), float("nan"), device=device)
    for batch in dataloader:
        inputs = {k: v.to(device) for k, v in batch[role].items()}
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        nll, _ = sequence_nll(logits, inputs["labels"])
        cache[inputs["index"]] = nll.float()
    model.train(was_training)
    if torch.isnan(cache).any():
        raise RuntimeError(f"the reference cache missed {int(torch.isnan(cache).sum())} of {size} {role} rows")
    return cache
