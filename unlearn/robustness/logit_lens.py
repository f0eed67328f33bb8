"""Logit lens (nostalgebraist 2020; for unlearning, Lynch et al. 2024, "Eight methods", arXiv:2402.16835)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch

from unlearn.methods.representation import check_layers
from unlearn.models import decoder_layers
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.mcq import forget_mcq, mcq_accuracies
from unlearn.robustness.plot import plot_per_layer


@contextmanager
def truncated(model: torch.nn.Module, layer: int) -> Iterator[None]:
    """Within the block the model stops after decoder layer `layer`: its final norm and lm-head read that residual."""
    blocks = decoder_layers(model)
    dropped = list(blocks[layer + 1 :])
    del blocks[layer + 1 :]
    try:
        yield
    finally:
        blocks.extend(dropped)


SUBLAYERS = {"attention": ("self_attn", "attention", "attn"), "mlp": ("mlp",)}  # attribute names across families


def sublayer(block: torch.nn.Module, part: str) -> torch.nn.Module:
    """A decoder layer's attention or MLP module, whose output (in Llama-family blocks) is added to the residual."""
    for name in SUBLAYERS[part]:
        if isinstance(getattr(block, name, None), torch.nn.Module):
            return getattr(block, name)
    raise ValueError(f"{type(block).__name__} has no {part} module at {' / '.join(SUBLAYERS[part])}")


@contextmanager
def sublayer_lens(model: torch.nn.Module, layer: int, part: str) -> Iterator[None]:
    """Within the block the final norm and lm-head read what decoder layer `layer`'s attention or MLP adds to the
    residual, in place of that layer's output (the model stops there)."""
    captured = {}

    def capture(module, args, output):
        captured["output"] = output[0] if isinstance(output, tuple) else output

    def replace(module, args, output):
        return (captured["output"], *output[1:]) if isinstance(output, tuple) else captured["output"]

    with truncated(model, layer):
        block = decoder_layers(model)[layer]
        handles = [sublayer(block, part).register_forward_hook(capture), block.register_forward_hook(replace)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class LogitLens(Attack):
    """MCQ accuracy read from the residual (and attention, MLP outputs) of every layer; `after` stops at one."""

    def __init__(
        self, layer: int | None = None, sublayers: Sequence[Literal["attention", "mlp"]] = ("attention", "mlp"),
        batch_size: int = 64, plot: bool = True,
    ) -> None:  # fmt: skip
        """
        Args:
            layer: the layer the attacked model (`after`) reads its answers from; None takes the layer with the best
                forget MCQ accuracy (an oracle choice on the evaluated rows: an upper bound on what the lens finds).
            sublayers: also read, per layer, what its attention / MLP adds to the residual (per_layer keys
                `attention:<metric>`, `mlp:<metric>`); the attacked model reads the residual.
            batch_size: rows per forward.
            plot: write logit_lens.png (accuracy per layer, one line per MCQ task and part) into the run folder.
        """
        self.layer, self.sublayers, self.batch_size, self.plot = layer, list(sublayers), batch_size, plot

    def run(self, target: Target) -> dict:
        model, module = target.model, target.module
        count = len(decoder_layers(model))
        if self.layer is not None:
            check_layers(model, module.model_name, "LogitLens", [self.layer])
        forget = forget_mcq(target, "LogitLens")
        per_layer: dict[str, list[float]] = {}
        for layer in range(count):
            with truncated(model, layer):
                for name, accuracy in mcq_accuracies(target, self.batch_size).items():
                    per_layer.setdefault(name, []).append(accuracy)
            for part in self.sublayers:
                with sublayer_lens(model, layer, part):
                    for name, accuracy in mcq_accuracies(target, self.batch_size).items():
                        per_layer.setdefault(f"{part}:{name}", []).append(accuracy)
        curve = per_layer[forget]
        layer = self.layer if self.layer is not None else max(range(count), key=curve.__getitem__)
        del decoder_layers(model)[layer + 1 :]  # the attacked model: the lens at `layer`, for every task
        numbers = {"per_layer": per_layer, "layer": layer, "layer_chosen_by": "config" if self.layer is not None
                   else f"best {forget}"}  # fmt: skip
        if self.plot:
            numbers["plot"] = str(plot_per_layer(per_layer, target.root / "logit_lens.png", "logit lens"))
        return numbers
