"""Direction ablation (Arditi et al. 2024, arXiv:2406.11717; for unlearning Seyitoğlu et al. 2024, arXiv:2411.02631)."""

from __future__ import annotations

import torch

from unlearn.data.prompts import PromptFormat
from unlearn.io import atomic_save_dir
from unlearn.methods.representation import check_layers, layer_outputs
from unlearn.models import decoder_layers, load_model
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.logit_lens import sublayer


def project_out(hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """h - (h·d) d for every vector of `hidden` (..., D), d (D,) a unit (or zero) direction."""
    return hidden - (hidden @ direction)[..., None] * direction


def mean_difference_direction(
    unlearned: torch.Tensor, original: torch.Tensor, tolerance: float = 1e-6
) -> tuple[torch.Tensor, float]:
    """The unit direction of mean(unlearned) - mean(original) over rows (N, D), and that difference's norm.

    A difference below `tolerance` x the mean activation norm has no direction (the models agree at that layer, as
    before an adapter's first edited layer): the zero vector, which ablation leaves as it is.
    """
    difference = unlearned.float().mean(0) - original.float().mean(0)  # (D,)
    norm = float(torch.linalg.vector_norm(difference))
    scale = float(torch.linalg.vector_norm(original.float(), dim=-1).mean())
    if norm <= tolerance * max(scale, 1e-12):
        return torch.zeros_like(difference), norm
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


def unlearning_directions(
    target: Target, original: str, layers: list[int], batch_size: int, attack: str
) -> dict[int, tuple[torch.Tensor, float]]:
    """Per layer, the unit mean difference of `target.model`'s and the `original` model's activations at the end of
    the forget prompts, and its norm: the direction along which unlearning moved them."""
    model, module = target.model, target.module
    questions = [row["question"] for row in target.forget if "question" in row]
    if not questions:
        raise ValueError(f"{attack} reads forget prompts: set data.forget to a qa source")
    loaded = load_model(original, module.dtype_name).to(next(model.parameters()).device).eval()
    check_layers(loaded, original, attack, layers)
    args = (module.tokenizer, module.prompt_format, questions, layers, batch_size)
    unlearned_acts, original_acts = prompt_end_activations(model, *args), prompt_end_activations(loaded, *args)
    del loaded
    found = {layer: mean_difference_direction(unlearned_acts[layer], original_acts[layer]) for layer in layers}
    if not any(direction.any() for direction, _ in found.values()):
        norms = ", ".join(f"layer {layer}: {norm:.3g}" for layer, (_, norm) in found.items())
        raise ValueError(
            f"the unlearned and original activations do not differ ({norms}): no direction to ablate; is "
            "`original` the model that was unlearned, and `model` the unlearned one?"
        )
    return found


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


def fold(model: torch.nn.Module, direction: torch.Tensor) -> None:
    """Project `direction` out of every write to the residual stream, in the weights: the embedding rows and each
    attention and MLP output projection (its last nn.Linear); a tied lm-head is untied first, as it reads the stream."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is not None and head.weight is embedding.weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    d = direction.to(embedding.weight)
    with torch.no_grad():
        embedding.weight.copy_(project_out(embedding.weight, d))  # (V, D): one stream vector per token
        for block in decoder_layers(model):
            for part in ("attention", "mlp"):
                writer = [m for m in sublayer(block, part).modules() if isinstance(m, torch.nn.Linear)][-1]
                writer.weight.copy_(project_out(writer.weight.T, d).T)  # (D, in): W <- (I - d d^T) W
                if writer.bias is not None:
                    writer.bias.copy_(project_out(writer.bias, d))


class DirectionAblation(Attack):
    """Remove, per layer, the direction along which unlearning moved the activations of forget prompts."""

    def __init__(
        self, original: str = "tiny-target", layers: list[int] | None = None, fold: bool = False, batch_size: int = 64
    ) -> None:
        """
        Args:
            original: the model before unlearning (built-in name, hub id or path).
            layers: decoder layers whose outputs lose their direction; None ablates every layer.
            fold: Arditi et al.'s weight orthogonalization: the direction of the one layer in `layers` is projected out
                of the embedding and of every attention and MLP output, in the weights (the residual stream never
                carries it), and the attacked model is saved as a plain Hugging Face model in <run folder>/model.
            batch_size: prompts per forward when measuring activations.
        """
        if fold and (layers is None or len(layers) != 1):
            raise ValueError(
                f"fold projects one direction out of every layer: give one layer in `layers`, got {layers}"
            )
        self.original, self.layers, self.fold, self.batch_size = original, layers, fold, batch_size

    def models(self) -> dict[str, str]:
        return {"DirectionAblation's original model": self.original}

    def run(self, target: Target) -> dict:
        model, module = target.model, target.module
        layers = self.layers if self.layers is not None else list(range(len(decoder_layers(model))))
        check_layers(model, module.model_name, "DirectionAblation", layers)
        found = unlearning_directions(target, self.original, layers, self.batch_size, "DirectionAblation")
        numbers = {
            "layers": layers,
            "prompts": len(target.forget),
            "difference_norm": {str(k): n for k, (_, n) in found.items()},
            "unmoved_layers": [k for k, (direction, _) in found.items() if not direction.any()],
        }
        if not self.fold:
            ablate(model, {layer: direction for layer, (direction, _) in found.items()})
            return numbers
        fold(model, found[layers[0]][0])

        def save(folder):
            model.save_pretrained(folder)
            module.tokenizer.save_pretrained(folder)

        return {**numbers, "model": str(atomic_save_dir(target.root / "model", save))}
