"""Representation misalignment: scramble the activations the forget data produces, keep the rest."""

from __future__ import annotations

import torch

from unlearn.losses import rmu_loss
from unlearn.methods.base import UnlearnModule
from unlearn.methods.reference import frozen_copy
from unlearn.models import decoder_layers


class _StopForward(Exception):
    """Raised by a hook once the hooked layer has run: later layers are never needed."""


def layer_output(model: torch.nn.Module, inputs: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """Hidden states (B, T, D) leaving decoder layer `layer`; the forward stops there."""
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0]


class RMU(UnlearnModule):
    """RMU: map forget activations at one layer to a fixed random direction c·u, keep retain activations."""

    def __init__(
        self,
        *,
        layer: int = 2,
        steering_coeff: float = 20.0,
        alpha: float = 100.0,
        trainable_layers: list[int] | None = None,
        trainable_param: str = "mlp.down_proj",
        control_seed: int = 0,
        **kwargs,
    ) -> None:
        """
        Args:
            layer: index of the decoder layer whose output is steered (0-based).
            steering_coeff: c, the norm-scale of the random control vector.
            alpha: weight of the retain activation-matching term.
            trainable_layers: layers whose `trainable_param` is updated; default layer-2..layer.
            trainable_param: which weight inside each trainable layer is updated.
            control_seed: seeds the random direction u.
            **kwargs: see UnlearnModule (an explicit `trainable` regex overrides the two above).
        """
        self.trainable_layers = trainable_layers or [i for i in range(layer - 2, layer + 1) if i >= 0]
        names = "|".join(str(i) for i in self.trainable_layers)
        if kwargs.get("trainable") is None:
            kwargs["trainable"] = rf"layers\.({names})\.{trainable_param}\."
        super().__init__(**kwargs)
        self.layer = layer
        self.steering_coeff = steering_coeff
        self.alpha = alpha
        self.control_seed = control_seed

    def prepare(self) -> None:
        count = len(decoder_layers(self.model))
        bad = [i for i in [self.layer, *self.trainable_layers] if not 0 <= i < count]
        if bad:
            raise ValueError(
                f"RMU layer index {bad} is out of range: {self.model_name} has {count} decoder layers (0..{count - 1})"
            )
        hidden_size = self.model.get_input_embeddings().embedding_dim
        generator = torch.Generator().manual_seed(self.control_seed)
        direction = torch.rand(hidden_size, generator=generator)
        self.register_buffer("control", self.steering_coeff * direction / direction.norm(), persistent=False)
        self.reference = frozen_copy(self.model, keep_layers=self.layer + 1)

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget, retain = batch["forget"], batch["retain"]
        with torch.no_grad():
            retain_reference = layer_output(self.reference, retain, self.layer)
        total, forget_term, retain_term = rmu_loss(
            layer_output(self.model, forget, self.layer),
            forget["attention_mask"],
            self.control.to(self.dtype),
            layer_output(self.model, retain, self.layer),
            retain_reference,
            retain["attention_mask"],
            alpha=self.alpha,
        )
        return {"loss": total, "forget": forget_term, "retain": retain_term}
