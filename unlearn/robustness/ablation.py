"""Direction ablation (Arditi et al. 2024, arXiv:2406.11717; for unlearning Seyitoğlu et al. 2024, arXiv:2411.02631)."""

from __future__ import annotations

import torch

from unlearn.data.prompts import PromptFormat
from unlearn.methods.representation import check_layers, layer_outputs
from unlearn.models import decoder_layers, load_model
from unlearn.robustness.base import Attack, Target


def project_out(hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """h - (h·d) d for every vector of `hidden` (..., D), d (D,) a unit (or zero) direction."""
    return hidden - (hidden @ direction)[..., None] * direction


def mean_difference_direction(
    unlearned: torch.Tensor, original: torch.Tensor, tolerance: float = 1e-6
) -> tuple[torch.Tensor, float]:
    """The unit direction of mean(unlearned) - mean(original) over rows (N, D), and that difference's norm.

    A difference below `tolerance` x the mean activation norm has no direction (the models agree): refused.
    """
    difference = unlearned.float().mean(0) - original.float().mean(0)  # (D,)
    norm = float(torch.linalg.vector_norm(difference))
    scale = float(torch.linalg.vector_norm(original.float(), dim=-1).mean())
    if norm <= tolerance * max(scale, 1e-12):
        raise ValueError(
            f"the unlearned and original activations differ by {norm:.3g} (mean norm {scale:.3g}): no direction to "
            "ablate; is `original` the model that was unlearned, and `model` the unlearned one?"
        )
    return difference / norm, norm


def prompt_end_activations(
    model: torch.nn.Module, tokenizer, prompt_format: PromptFormat, questions: list[str], layers: list[int],
    batch_size: int,
) -> dict[int, torch.Tensor]:  # fmt: skip
    """Each layer's output (N, D) at the last prompt token, where the model decides its answer."""
    collected: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    device = next(model.parameters()).device
    for start in range(0, len(questions), batch_size):
        prompts = [prompt_format.prompt(q, tokenizer) for q in questions[start : start + batch_size]]
        encoded = tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="right",
            add_special_tokens=prompt_format.special_tokens,
        ).to(device)  # fmt: skip
        last = encoded["attention_mask"].sum(-1) - 1  # (B,)
        with torch.inference_mode():
            outputs = layer_outputs(model, encoded, layers)
        for layer, hidden in zip(layers, outputs, strict=True):
            collected[layer].append(hidden[torch.arange(len(last), device=device), last].float().cpu())  # (B, D)
    return {layer: torch.cat(parts) for layer, parts in collected.items()}


def ablate(model: torch.nn.Module, directions: dict[int, torch.Tensor]) -> list[torch.utils.hooks.RemovableHandle]:
    """Project each direction out of its decoder layer's output at every position, by forward hooks."""
    blocks = decoder_layers(model)

    def hook_for(direction: torch.Tensor):
        def hook(module, args, output):
            if isinstance(output, tuple):
                return (project_out(output[0], direction.to(output[0].dtype)), *output[1:])
            return project_out(output, direction.to(output.dtype))

        return hook

    return [blocks[layer].register_forward_hook(hook_for(d)) for layer, d in directions.items()]


class DirectionAblation(Attack):
    """Remove, per layer, the direction along which unlearning moved the activations of forget prompts."""

    def __init__(self, original: str = "tiny-target", layers: list[int] | None = None, batch_size: int = 64) -> None:
        """
        Args:
            original: the model before unlearning (built-in name, hub id or path).
            layers: decoder layers whose outputs lose their direction; None ablates every layer.
            batch_size: prompts per forward when measuring activations.
        """
        self.original, self.layers, self.batch_size = original, layers, batch_size

    def models(self) -> dict[str, str]:
        return {"DirectionAblation's original model": self.original}

    def run(self, target: Target) -> dict:
        model, module = target.model, target.module
        layers = self.layers if self.layers is not None else list(range(len(decoder_layers(model))))
        check_layers(model, module.model_name, "DirectionAblation", layers)
        questions = [row["question"] for row in target.forget if "question" in row]
        if not questions:
            raise ValueError("DirectionAblation reads forget prompts: set data.forget to a qa source")
        original = load_model(self.original, module.dtype_name).to(next(model.parameters()).device).eval()
        check_layers(original, self.original, "DirectionAblation", layers)
        args = (module.tokenizer, module.prompt_format, questions, layers, self.batch_size)
        unlearned_acts, original_acts = prompt_end_activations(model, *args), prompt_end_activations(original, *args)
        del original
        found = {layer: mean_difference_direction(unlearned_acts[layer], original_acts[layer]) for layer in layers}
        ablate(model, {layer: direction for layer, (direction, _) in found.items()})
        return {
            "layers": layers,
            "prompts": len(questions),
            "difference_norm": {str(k): n for k, (_, n) in found.items()},
        }
