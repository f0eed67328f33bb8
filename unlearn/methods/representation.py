"""Representation misalignment: scramble the activations the forget data produces, keep the rest."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from unlearn.checks import refuse
from unlearn.losses import adaptive_steering_coeff, mean_token_nll, rmu_loss, rr_coefficients, rr_loss
from unlearn.methods.base import UnlearnModule, position_count
from unlearn.methods.reference import frozen_copy
from unlearn.models import decoder_layers
from unlearn.strategies import mean_over_ranks


class _StopForward(Exception):
    """Raised by a hook once the last hooked layer has run: later layers are never needed."""


def rmu_problems(steering_coeff: float, retain_weight: float) -> list[str]:
    """RMU's numbers that make a run meaningless: no control vector to steer to, or a rewarded retain drift."""
    problems = []
    if steering_coeff == 0:
        problems.append("model.init_args.steering_coeff=0 steers forget activations to zero; set it > 0 (6-400)")
    if retain_weight < 0:
        problems.append(
            f"model.init_args.retain_weight={retain_weight} would reward retain drift; set retain_weight >= 0"
        )
    return problems


class RMU(UnlearnModule):
    """RMU: map forget activations at one layer to a fixed random direction c·u, keep retain activations.

    `kernel_backend: triton` also runs both masked MSE terms in the one-pass kernel (auto keeps PyTorch for them).
    """

    partial_forward = True
    renamed_args = {"alpha": "retain_weight"}

    def __init__(
        self,
        *,
        layer: int = 2,
        steering_coeff: float = 20.0,
        retain_weight: float = 100.0,
        trainable_layers: list[int] | None = None,
        trainable_param: str = "mlp.down_proj",
        control_seed: int = 0,
        **kwargs,
    ) -> None:
        """
        Args:
            layer: index of the decoder layer whose output is steered (0-based).
            steering_coeff: c, the norm-scale of the random control vector.
            retain_weight: weight of the retain activation-matching term.
            trainable_layers: layers whose `trainable_param` is updated; default layer-2..layer.
            trainable_param: which weight inside each trainable layer is updated.
            control_seed: seeds the random direction u.
            **kwargs: see UnlearnModule (an explicit `trainable` regex overrides the two above).
        """
        self.trainable_layers = trainable_layers or [i for i in range(layer - 2, layer + 1) if i >= 0]
        kwargs["trainable"] = kwargs.get("trainable") or layer_regex(self.trainable_layers, trainable_param)
        super().__init__(**kwargs)
        refuse(rmu_problems(steering_coeff, retain_weight))
        self.layer = layer
        self.steering_coeff = steering_coeff
        self.retain_weight = retain_weight
        self.control_seed = control_seed

    def prepare(self) -> None:
        check_layers(self.model, self.model_name, type(self).__name__, [self.layer, *self.trainable_layers])
        hidden_size = self.model.get_input_embeddings().embedding_dim
        generator = torch.Generator().manual_seed(self.control_seed)
        direction = torch.rand(hidden_size, generator=generator, dtype=torch.float32)  # the same u in every precision
        self.register_fp32_buffer("direction", direction / direction.norm(), persistent=False)
        self.reference = frozen_copy(self.model, keep_layers=self.layer + 1)

    def control_vector(self, forget: dict[str, torch.Tensor]) -> torch.Tensor:
        """c·u (D,) in fp32, the target of the forget activations."""
        return self.steering_coeff * self.direction

    def forget_hidden(self, forget: dict[str, torch.Tensor]) -> torch.Tensor:
        """h_π(f) (B, T, D) at the steered layer."""
        return layer_output(self.model, forget, self.layer)

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget, retain = batch["forget"], batch["retain"]
        with torch.no_grad():
            retain_reference = layer_output(self.reference, retain, self.layer)
        control = self.control_vector(forget)
        total, forget_term, retain_term = rmu_loss(
            self.forget_hidden(forget),
            forget["attention_mask"],
            control,
            layer_output(self.model, retain, self.layer),
            retain_reference,
            retain["attention_mask"],
            retain_weight=self.retain_weight,
            forget_tokens=position_count(forget),
            retain_tokens=position_count(retain),
            backend=self.kernel_backend,
        )
        return {"loss": total, "forget": forget_term, "retain": retain_term, "coeff": control.norm()}


class AdaptiveRMU(RMU):
    """Adaptive RMU (Dang et al. 2025): c = k·mean‖h_ref(f)‖ per batch, so one k fits every layer and model.

    `steering_coeff` is unused: the coefficient comes from the frozen reference's forget activations.
    """

    def __init__(self, *, scale: float = 5.0, **kwargs) -> None:
        """
        Args:
            scale: k, the multiple of the reference's mean per-token activation norm (the paper's β).
            **kwargs: see RMU.
        """
        super().__init__(**kwargs)
        self.scale = scale

    def control_vector(self, forget: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            reference = layer_output(self.reference, forget, self.layer)
            coeff = adaptive_steering_coeff(reference, forget["attention_mask"], scale=self.scale)
            # The global batch's mean norm, whatever the number of ranks it is split over.
            coeff = mean_over_ranks(coeff, forget["attention_mask"].sum())
        return coeff * self.direction


class RMULAT(RMU):
    """RMU+LAT (Sheshadri et al. 2024): RMU's forget term under a latent adversary that tries to restore the answers.

    Before each step, a few PGD steps find δ (added to the output of decoder layer `adv_layer` on every non-padding
    forget token, ‖δ‖₂ ≤ ε per token) that minimises the token-mean NLL of the forget batch's labelled tokens: the
    answers of QA rows and the whole text of passage rows (with the default mixture, both). Only δ receives the
    gradient of these steps. The RMU forget activations are then taken with δ applied; the retain term is not.
    """

    def __init__(
        self,
        *,
        adv_layer: int = 1,
        epsilon: float = 4.0,
        pgd_steps: int = 4,
        pgd_step_size: float | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            adv_layer: decoder layer whose output the adversary perturbs; must come before `layer`.
            epsilon: ε, the largest L2 norm of δ at one token.
            pgd_steps: PGD steps per training step.
            pgd_step_size: L2 length of each PGD step per token; default 2.5·ε/pgd_steps.
            **kwargs: see RMU.
        """
        super().__init__(**kwargs)
        if not 0 <= adv_layer < self.layer:
            raise ValueError(
                f"adv_layer={adv_layer} must be in 0..{self.layer - 1}: the adversary perturbs a layer before the "
                f"steered layer={self.layer}; lower adv_layer or raise layer"
            )
        if epsilon <= 0 or pgd_steps < 1:
            raise ValueError(f"need epsilon > 0 and pgd_steps >= 1; got epsilon={epsilon}, pgd_steps={pgd_steps}")
        self.adv_layer = adv_layer
        self.epsilon = epsilon
        self.pgd_steps = pgd_steps
        self.pgd_step_size = pgd_step_size or 2.5 * epsilon / pgd_steps

    def attack(self, forget: dict[str, torch.Tensor]) -> torch.Tensor:
        """δ (B, T, D): PGD on the forget NLL within the per-token ε-ball, zero on padding."""
        return latent_pgd(
            self.model,
            forget,
            self.adv_layer,
            epsilon=self.epsilon,
            steps=self.pgd_steps,
            step_size=self.pgd_step_size,
        )

    def forget_hidden(self, forget: dict[str, torch.Tensor]) -> torch.Tensor:
        perturbation = self.attack(forget)
        with added_to_output(self.model, self.adv_layer, perturbation):
            return layer_output(self.model, forget, self.layer)


class RR(UnlearnModule):
    """RR / circuit breakers (Zou et al. 2024): reroute forget activations orthogonal to the original ones.

    Forget and retain terms read the same hooked layers; the frozen reference stops after the last of them.
    """

    partial_forward = True

    def __init__(
        self,
        *,
        layers: list[int] | None = None,
        forget_coeff: float = 1.0,
        retain_coeff: float = 1.0,
        schedule: bool = True,
        trainable_layers: list[int] | None = None,
        trainable_param: str = "(self_attn|mlp)",
        **kwargs,
    ) -> None:
        """
        Args:
            layers: decoder layers whose outputs are rerouted (forget) and held (retain); default [1, 2].
            forget_coeff: α_f, the forget (rerouting) coefficient.
            retain_coeff: α_r, the retain coefficient.
            schedule: the paper's schedule, c_f = α_f·(1 − t/2T) and c_r = α_r·t/2T; off keeps c_f = α_f, c_r = α_r.
            trainable_layers: layers whose `trainable_param` is updated; default 0..max(layers).
            trainable_param: which weights inside each trainable layer are updated (a regex).
            **kwargs: see UnlearnModule (an explicit `trainable` regex overrides the two above).
        """
        self.layers = sorted(set(layers or [1, 2]))
        self.trainable_layers = trainable_layers or list(range(max(self.layers) + 1))
        kwargs["trainable"] = kwargs.get("trainable") or layer_regex(self.trainable_layers, trainable_param)
        super().__init__(**kwargs)
        self.forget_coeff = forget_coeff
        self.retain_coeff = retain_coeff
        self.schedule = schedule

    def prepare(self) -> None:
        check_layers(self.model, self.model_name, type(self).__name__, [*self.layers, *self.trainable_layers])
        self.reference = frozen_copy(self.model, keep_layers=max(self.layers) + 1)

    def coefficients(self) -> tuple[float, float]:
        """(c_f, c_r) at this optimiser step."""
        if not self.schedule:
            return self.forget_coeff, self.retain_coeff
        return rr_coefficients(
            self.global_step,
            int(self.trainer.estimated_stepping_batches),
            forget_coeff=self.forget_coeff,
            retain_coeff=self.retain_coeff,
        )

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget, retain = batch["forget"], batch["retain"]
        with torch.no_grad():
            forget_reference = torch.stack(layer_outputs(self.reference, forget, self.layers))  # (L, B, T, D)
            retain_reference = torch.stack(layer_outputs(self.reference, retain, self.layers))
        forget_coeff, retain_coeff = self.coefficients()
        total, forget_term, retain_term = rr_loss(
            torch.stack(layer_outputs(self.model, forget, self.layers)),
            forget_reference,
            forget["attention_mask"],
            torch.stack(layer_outputs(self.model, retain, self.layers)),
            retain_reference,
            retain["attention_mask"],
            forget_coeff=forget_coeff,
            retain_coeff=retain_coeff,
            forget_tokens=position_count(forget),
            retain_tokens=position_count(retain),
        )
        return {
            "loss": total,
            "forget": forget_term,
            "retain": retain_term,
            "forget_coeff": total.new_tensor(forget_coeff),  # on the loss's device: sync_dist all-reduces it (NCCL)
            "retain_coeff": total.new_tensor(retain_coeff),
        }


def layer_outputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor], layers: Sequence[int]) -> list[torch.Tensor]:
    """Hidden states (B, T, D) leaving each decoder layer in `layers`, in order; the forward stops after the last."""
    blocks = decoder_layers(model)
    captured: dict[int, torch.Tensor] = {}
    last = max(layers)

    def capture(index: int):
        def hook(module, args, output):
            captured[index] = output[0] if isinstance(output, tuple) else output
            if index == last:
                raise _StopForward

        return hook

    handles = [blocks[i].register_forward_hook(capture(i)) for i in set(layers)]
    try:
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return [captured[i] for i in layers]


def layer_output(model: torch.nn.Module, inputs: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """Hidden states (B, T, D) leaving decoder layer `layer`; the forward stops there."""
    return layer_outputs(model, inputs, [layer])[0]


@contextmanager
def added_to_output(model: torch.nn.Module, layer: int, perturbation: torch.Tensor) -> Iterator[None]:
    """Within the block, decoder layer `layer` outputs h + δ: how a latent adversary perturbs the residual stream."""

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + perturbation, *output[1:])
        return output + perturbation

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def latent_pgd(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    layer: int,
    *,
    epsilon: float,
    steps: int,
    step_size: float,
) -> torch.Tensor:
    """A latent adversary (B, T, D) at `layer`'s output that lowers the NLL of `inputs`' labels, ‖δ_bt‖₂ ≤ ε.

    L2 PGD from δ = 0: each step moves every token's δ by `step_size` along its normalised descent direction,
    then projects it back into the ε-ball. Only δ gets gradients; the model's `.grad` is never touched.
    """
    batch, length = inputs["input_ids"].shape
    weight = model.get_input_embeddings().weight
    mask = inputs["attention_mask"].unsqueeze(-1).to(weight.dtype)  # (B, T, 1)
    perturbation = torch.zeros(batch, length, weight.shape[1], dtype=weight.dtype, device=weight.device)  # (B, T, D)
    for _ in range(steps):
        perturbation.requires_grad_(True)
        with torch.enable_grad(), added_to_output(model, layer, perturbation * mask):
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            (grad,) = torch.autograd.grad(mean_token_nll(logits, inputs["labels"]), perturbation)
        step = grad / torch.linalg.vector_norm(grad, dim=-1, keepdim=True).clamp(min=1e-12)
        perturbation = perturbation.detach() - step_size * step
        perturbation = perturbation * (
            epsilon / torch.linalg.vector_norm(perturbation, dim=-1, keepdim=True).clamp(min=1e-12)
        ).clamp(max=1)
    return perturbation * mask


def layer_regex(layers: Sequence[int], param: str) -> str:
    """The `trainable` regex selecting `param` inside the given decoder layers."""
    return rf"layers\.({'|'.join(str(i) for i in layers)})\.{param}\."


def check_layers(model: torch.nn.Module, model_name: str, method: str, layers: Sequence[int]) -> None:
    """Fail on a layer index the model does not have, naming its range."""
    count = len(decoder_layers(model))
    bad = [i for i in layers if not 0 <= i < count]
    if bad:
        raise ValueError(
            f"{method} layer index {bad} is out of range: {model_name} has {count} decoder layers (0..{count - 1})"
        )
