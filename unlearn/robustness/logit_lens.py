"""Logit lens (nostalgebraist 2020; for unlearning, Lynch et al. 2024, "Eight methods", arXiv:2402.16835)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from unlearn.eval.tasks import MCQTask
from unlearn.methods.representation import check_layers
from unlearn.models import decoder_layers
from unlearn.robustness.base import Attack, Target
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


class LogitLens(Attack):
    """MCQ accuracy read from the residual stream after every layer; the attacked model stops at one layer."""

    def __init__(self, layer: int | None = None, batch_size: int = 64, plot: bool = True) -> None:
        """
        Args:
            layer: the layer the attacked model (`after`) reads its answers from; None takes the layer with the best
                forget MCQ accuracy (an oracle choice on the evaluated rows: an upper bound on what the lens finds).
            batch_size: rows per forward.
            plot: write logit_lens.png (accuracy per layer, one line per MCQ task) into the run folder.
        """
        self.layer, self.batch_size, self.plot = layer, batch_size, plot

    def run(self, target: Target) -> dict:
        model, module, evaluator = target.model, target.module, target.evaluator
        count = len(decoder_layers(model))
        if self.layer is not None:
            check_layers(model, module.model_name, "LogitLens", [self.layer])
        tasks = [t for t in evaluator.tasks if isinstance(t, MCQTask)]
        forget = [t.metric_name for t in tasks if t.split == "forget"]
        if not forget:
            raise ValueError("LogitLens reads MCQ accuracy per layer: add an MCQTask on the forget split")
        per_layer: dict[str, list[float]] = {t.metric_name: [] for t in tasks}
        for layer in range(count):
            with truncated(model, layer):
                for task in tasks:
                    metric = task.make_metric()
                    rows = evaluator.rows[task.metric_name]
                    task.run(model, module.tokenizer, rows, metric, self.batch_size, False, module.prompt_format)
                    per_layer[task.metric_name].append(float(metric.compute()))
        curve = per_layer[forget[0]]
        layer = self.layer if self.layer is not None else max(range(count), key=curve.__getitem__)
        del decoder_layers(model)[layer + 1 :]  # the attacked model: the lens at `layer`, for every task
        numbers = {"per_layer": per_layer, "layer": layer, "layer_chosen_by": "config" if self.layer is not None
                   else f"best {forget[0]}"}  # fmt: skip
        if self.plot:
            numbers["plot"] = str(plot_per_layer(per_layer, target.root / "logit_lens.png", "logit lens"))
        return numbers
