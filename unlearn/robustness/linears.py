"""The weights that weight attacks (pruning, quantization) change: every linear layer inside the decoder layers."""

from __future__ import annotations

import torch

from unlearn.models import decoder_layers


def decoder_linear_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """{name: weight} of each nn.Linear in the decoder layers; the lm-head stays (often tied to the embedding)."""
    return {
        f"layers.{index}.{name}.weight": module.weight
        for index, block in enumerate(decoder_layers(model))
        for name, module in block.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
