"""What a parameter-efficient variant (LoRA, GRUN) provides to the base module: attach, switch off, extend, save."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from unlearn.data.prompts import PromptFormat


class Adapter(ABC):
    """Trains a few added weights on a frozen base; the reference is the same network with them switched off.

    An adapter object holds configuration only (it is a hyper-parameter of the module, pickled into checkpoints);
    the weights it adds live inside the model, so the optimiser, device moves and checkpoints see them.
    """

    @abstractmethod
    def attach(self, model: torch.nn.Module, model_name: str, tokenizer, prompt_format: PromptFormat) -> None:
        """Add the adapter's weights to `model` in place and freeze everything else."""

    @abstractmethod
    def save(self, model: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
        """Write the adapter (and, where asked and possible, a merged model) from the model's full `state` (which
        ZeRO-3 gathers; the live weights may be partitions) into an empty folder."""

    def strategy_problems(self, strategy) -> list[str]:
        """What the adapter cannot do under the trainer's strategy, each with what to use instead (nothing here)."""
        return []

    def needed_data(self) -> dict[str, str]:
        """The data roles the adapter's own terms train on, each with what to say when it is missing (none here)."""
        return {}

    def data_problems(self, kinds: dict[str, str]) -> list[str]:
        """What the adapter cannot train on, given the kind of rows (qa, text, mixed) of each data role there is."""
        return []

    def extend_objective(self, module, batch: dict, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add the adapter's own loss terms to the method's (none by default)."""
        return terms

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class AdapterLayer(torch.nn.Module):
    """A module an adapter adds that can be switched off: PEFT's `enable_adapters` convention."""

    def __init__(self) -> None:
        super().__init__()
        self.active = True

    def enable_adapters(self, enabled: bool) -> None:
        """Switch this layer's effect on or off; its weights stay as they are."""
        self.active = enabled


def adapter_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The switchable adapter layers inside `model`: PEFT tuner layers (LoRA) and our own (GRUN)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AdapterLayer))]


@contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, `model` computes as its base: every adapter layer switched off, then back on."""
    layers = adapter_layers(model)
    trainable = {param: param.requires_grad for param in model.parameters()}  # PEFT's switch resets requires_grad
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for param, flag in trainable.items():
            param.requires_grad_(flag)
