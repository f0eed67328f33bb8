"""Quantization (Zhang et al. 2024, "Catastrophic failure of LLM unlearning via quantization", arXiv:2410.16454)."""

from __future__ import annotations

import torch

from unlearn.robustness.base import Attack, Target
from unlearn.robustness.linears import decoder_linear_weights


def fake_quantize(
    weight: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = True
) -> torch.Tensor:
    """Round-to-nearest `bits`-bit quantization of a (out, in) matrix, dequantized back to its dtype.

    One scale per output channel, or per `group_size` consecutive inputs of a channel. Symmetric: s = max|w| / (2^(b-1)
    - 1), w' = s · clamp(round(w / s), -2^(b-1), 2^(b-1) - 1). Asymmetric (min-max): s = (max - min) / (2^b - 1),
    z = round(-min / s), w' = s · (clamp(round(w / s) + z, 0, 2^b - 1) - z). A constant group (s = 0) stays as it is.
    """
    rows, cols = weight.shape
    group = group_size or cols
    if cols % group:
        raise ValueError(f"group_size {group} does not divide the {cols} inputs of a {tuple(weight.shape)} weight")
    w = weight.float().reshape(rows, cols // group, group)
    if symmetric:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale, zero = w.abs().amax(-1, keepdim=True) / high, 0.0
    else:
        low, high = 0, 2**bits - 1
        least, most = w.amin(-1, keepdim=True).clamp(max=0), w.amax(-1, keepdim=True).clamp(min=0)
        scale = (most - least) / high
        zero = torch.round(-least / scale.where(scale > 0, 1.0))
    safe = scale.where(scale > 0, 1.0)
    quantized = (torch.clamp(torch.round(w / safe) + zero, low, high) - zero) * safe
    return quantized.where(scale > 0, w).reshape(rows, cols).to(weight.dtype)


class Quantization(Attack):
    """Quantize every linear weight of the decoder layers and dequantize it in place (simulated: runs on CPU)."""

    def __init__(self, bits: int = 4, group_size: int | None = None, symmetric: bool = True) -> None:
        """
        Args:
            bits: integer width, e.g. 8 or 4.
            group_size: inputs sharing one scale (e.g. 128, as GPTQ and AWQ); None: one scale per output channel.
            symmetric: absmax scale around zero; false: a min-max scale with an integer zero point.
        """
        if not 2 <= bits <= 16:
            raise ValueError(f"bits must be between 2 and 16, got {bits}")
        self.bits, self.group_size, self.symmetric = bits, group_size, symmetric

    def run(self, target: Target) -> dict:
        weights = decoder_linear_weights(target.model)
        change = 0.0
        with torch.no_grad():
            for weight in weights.values():
                quantized = fake_quantize(weight, self.bits, self.group_size, self.symmetric)
                change += float((quantized.float() - weight.float()).abs().sum())
                weight.copy_(quantized)
        count = sum(w.numel() for w in weights.values())
        return {"weights": count, "matrices": len(weights), "mean_abs_change": change / count}
