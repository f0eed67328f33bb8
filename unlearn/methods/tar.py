"""TAR: train the safeguard against a simulated fine-tuning attack, so that relearning the forget data fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch.func import functional_call

from unlearn.checks import refuse
from unlearn.losses import hidden_distance, kl_to_reference, mean_token_nll, tamper_resistance_loss, trajectory_weights
from unlearn.methods.base import SelfBackward, position_count, token_count, token_count_in
from unlearn.methods.divergence import RetainRegularised
from unlearn.strategies import average_over_ranks_, averaged_over_ranks

Params = Sequence[torch.Tensor]


def tamper_gradient(
    params: Params,
    attack_loss: Callable[[Params], torch.Tensor],
    tamper_loss: Callable[[Params], torch.Tensor],
    *,
    steps: int,
    lr: float,
    weights: torch.Tensor,
    optimizer: Literal["adamw", "sgd"] = "adamw",
    first_order: bool = True,
    average: Callable[[list[torch.Tensor]], list[torch.Tensor]] = list,
) -> tuple[list[torch.Tensor], torch.Tensor, list[float]]:
    """TAR's outer gradient of the tamper-resistance term, ``∇_θ Σ_k w_k·L_TR(θ_k)``, θ_k after k attack steps.

    The attack: K = `steps` steps of `optimizer` (torch's AdamW with its defaults, or plain SGD) at `lr` on
    `attack_loss`, from θ = `params`. `first_order`: the attack runs on a detached copy of θ and each term's gradient
    is taken at the attacked weights, ``Σ_k w_k ∇L_TR(θ_k)`` (the paper's first-order approximation, as in
    first-order MAML: dθ_k/dθ taken as the identity). Otherwise (SGD only) the inner steps stay in the graph
    (θ_{k+1} = θ_k − lr·∇L_A(θ_k), create_graph) and the exact meta-gradient is returned. `params`' own .grad is
    never touched.

    Args:
        params: the trainable weights θ (leaves that require grad).
        attack_loss: the attacker's loss of a list of weights like `params` (forget NLL on its rows).
        tamper_loss: L_TR of such a list (on held-out forget rows).
        steps: K ≥ 1.
        lr: the attack's learning rate.
        weights: (K,) w_k (``trajectory_weights``).
        optimizer: adamw or sgd.
        first_order: see above.
        average: the attack gradients' mean over the ranks (``averaged_over_ranks`` under DDP, so that every rank
            attacks with the global batch's gradient, as one process would); the identity on one process.

    Returns:
        (one gradient per parameter, Σ_k w_k·L_TR(θ_k) detached, the attack loss at each step).
    """
    if not first_order and optimizer != "sgd":
        raise ValueError("the exact (second-order) meta-gradient is implemented for optimizer='sgd' only")
    weights = weights.tolist()
    attack_losses: list[float] = []
    if not first_order:
        current: list[torch.Tensor] = list(params)
        total = 0.0
        for k in range(steps):
            loss = attack_loss(current)
            grads = torch.autograd.grad(loss, current, create_graph=True, allow_unused=True)
            grads = average(_zeros_for_none(grads, current))
            current = [p - lr * g for p, g in zip(current, grads, strict=True)]
            attack_losses.append(loss.item())
            total = total + weights[k] * tamper_loss(current)
        grads = torch.autograd.grad(total, list(params), allow_unused=True)
        return _zeros_for_none(grads, params), total.detach(), attack_losses
    attacked = [p.detach().clone().requires_grad_(True) for p in params]
    inner = torch.optim.AdamW(attacked, lr=lr) if optimizer == "adamw" else torch.optim.SGD(attacked, lr=lr)
    summed = [torch.zeros_like(p) for p in params]
    value = torch.zeros((), dtype=torch.float32, device=attacked[0].device)
    for k in range(steps):
        with torch.enable_grad():
            loss = attack_loss(attacked)
            grads = torch.autograd.grad(loss, attacked, allow_unused=True)
        for tensor, grad in zip(attacked, average(_zeros_for_none(grads, attacked)), strict=True):
            tensor.grad = grad
        inner.step()
        attack_losses.append(loss.item())
        with torch.enable_grad():
            tamper = tamper_loss(attacked)
            grads = _zeros_for_none(torch.autograd.grad(tamper, attacked, allow_unused=True), attacked)
        torch._foreach_add_(summed, grads, alpha=weights[k])
        value += weights[k] * tamper.detach().float()
    return summed, value, attack_losses


def _zeros_for_none(grads: Sequence[torch.Tensor | None], like: Params) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if g is None else g for p, g in zip(like, grads, strict=True)]


class TAR(SelfBackward, RetainRegularised):
    """TAR: tamper-resistance against a simulated fine-tuning attack, plus a retain term, from an unlearned model.

    Paper: Tamirisa et al. 2024, "Tamper-Resistant Safeguards for Open-Weight LLMs", arXiv:2408.00761.

    Each step splits the forget batch in two: the attacker's rows A and held-out rows H. From the current weights θ, a
    simulated attack takes K = `inner_steps` AdamW steps at `inner_lr` on the NLL of A (a copy of the trainable
    weights, run through torch.func.functional_call); after each, L_TR (``tamper_resistance_loss``, the paper's
    max_entropy by default: −entropy of the attacked model on H's answer tokens) is taken at the attacked weights
    θ_k. The step's gradient is

        tamper_weight · Σ_k w_k ∇L_TR(θ_k)  +  retain_weight · ∇[L_retain(θ) + representation_weight · L_rep(θ)]

    (first-order: each L_TR gradient taken at θ_k and applied at θ), w_k from ``trajectory_weights``; L_retain is
    the retain NLL (or KL, ``retain_loss``), L_rep the mean L2 distance of every layer's retain activations to the
    starting model's (``hidden_distance``, the paper's representation term; 0 drops it and the frozen copy).

    The paper starts from an already unlearned model (an RMU-style initial safeguard): give any model folder as
    `model` (e.g. runs/rmu/model). Where this differs from the paper: one attack per step, at a fixed learning rate and
    K (the paper samples the attack's data, learning rate and length per step, K up to 64), on half of the step's
    forget batch; no lower bound on L_TR. Manual optimisation: the trainer's gradient clipping and accumulation do not
    apply. The attack keeps a copy of the trainable weights and their AdamW state: 3× their memory, so whole weights
    on every rank (one device or DDP).
    """

    whole_weights_use = (
        "copies every trainable weight for its simulated attack and adds the whole tamper-resistance gradient to each"
    )

    def __init__(
        self,
        *,
        inner_steps: int = 8,
        inner_lr: float = 2.0e-4,
        inner_optimizer: Literal["adamw", "sgd"] = "adamw",
        tamper_weight: float = 4.0,
        adversary_loss: Literal["max_entropy", "nll"] = "max_entropy",
        schedule_lambda: float = 0.0,
        representation_weight: float = 0.0,
        first_order: bool = True,
        **kwargs,
    ) -> None:
        """
        Args:
            inner_steps: K, steps of the simulated attack per training step (the paper: up to 64 on 8B models; 8
                here, at a learning rate that moves the tiny model about as far as the Relearn attack's 100 steps
                at 2e-5).
            inner_lr: the simulated attacker's learning rate (the paper samples 2e-6 to 4e-5 on 8B models).
            inner_optimizer: adamw (torch's defaults, as the Relearn attack) or sgd.
            tamper_weight: λ_TR, weight of the tamper-resistance term (4 in the authors' bio run).
            adversary_loss: max_entropy (the paper's for weaponization knowledge: maximise the attacked model's
                entropy on held-out forget answers) or nll (maximise its forget NLL).
            schedule_lambda: λ of the trajectory weights exp(λ·k); 0 is the plain mean over the K steps.
            representation_weight: weight of the representation retain term inside the retain term (0 drops it).
            first_order: the paper's first-order approximation; false takes the exact meta-gradient through the
                inner steps (inner_optimizer: sgd only, K times the activation memory).
            **kwargs: see RetainRegularised (retain_weight, retain_loss) and UnlearnModule (model: the unlearned
                starting model).
        """
        super().__init__(**kwargs)
        problems = []
        if inner_steps < 1:
            problems.append(f"model.init_args.inner_steps={inner_steps} must be >= 1")
        if inner_lr <= 0:
            problems.append(f"model.init_args.inner_lr={inner_lr} must be > 0")
        if tamper_weight < 0 or representation_weight < 0:
            problems.append(
                f"model.init_args.tamper_weight={tamper_weight} and representation_weight={representation_weight} "
                "must be >= 0"
            )
        if inner_optimizer not in ("adamw", "sgd"):
            problems.append(f"model.init_args.inner_optimizer={inner_optimizer!r} must be adamw or sgd")
        if adversary_loss not in ("max_entropy", "nll"):
            problems.append(f"model.init_args.adversary_loss={adversary_loss!r} must be max_entropy or nll")
        if not first_order and inner_optimizer != "sgd":
            problems.append("model.init_args.first_order: false differentiates through sgd steps only; set "
                            "inner_optimizer: sgd or first_order: true")  # fmt: skip
        if self.fused_logprob:
            problems.append(
                "TAR's simulated attack runs the model through torch.func.functional_call, which returns logits; "
                "set model.init_args.fused_logprob: false"
            )
        refuse(problems)
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.inner_optimizer = inner_optimizer
        self.tamper_weight = tamper_weight
        self.adversary_loss = adversary_loss
        self.schedule_lambda = schedule_lambda
        self.representation_weight = representation_weight
        self.first_order = first_order

    def needs_frozen_reference(self) -> bool:
        return super().needs_frozen_reference() or (self.retain_weight > 0 and self.representation_weight > 0)

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        """Leaves tamper_weight·∇(tamper term) + retain_weight·∇(retain term) in .grad; returns the terms, detached."""
        names, params = zip(*[(n, p) for n, p in self.model.named_parameters() if p.requires_grad], strict=True)
        attack_rows, held_out = split_rows(batch["forget"])

        def logits(weights: Params, inputs: dict) -> torch.Tensor:
            kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
            return functional_call(self.model, dict(zip(names, weights, strict=True)), args=(), kwargs=kwargs).logits

        def attack_loss(weights: Params) -> torch.Tensor:
            labels = attack_rows["labels"]
            count = token_count_in(labels, batch["forget"])
            return mean_token_nll(logits(weights, attack_rows), labels, num_tokens=count)

        def tamper_loss(weights: Params) -> torch.Tensor:
            labels = held_out["labels"]
            return tamper_resistance_loss(
                logits(weights, held_out), labels, adversary_loss=self.adversary_loss,
                num_tokens=token_count_in(labels, batch["forget"]),
            )  # fmt: skip

        grads, tamper, attack_losses = tamper_gradient(
            params, attack_loss, tamper_loss, steps=self.inner_steps, lr=self.inner_lr,
            weights=trajectory_weights(self.inner_steps, schedule_lambda=self.schedule_lambda),
            optimizer=self.inner_optimizer, first_order=self.first_order, average=averaged_over_ranks,
        )  # fmt: skip
        average_over_ranks_(grads)  # the global batch's tamper gradient on every DDP rank, as .grad gets
        terms = {
            "loss": self.tamper_weight * tamper,
            "tamper": tamper,
            "attack_first": tamper.new_tensor(attack_losses[0]),
            "attack_last": tamper.new_tensor(attack_losses[-1]),
        }
        if self.retain_weight > 0:
            retain, parts = self.retain_terms(batch)
            self.manual_backward(self.retain_weight * retain)
            terms |= {"loss": terms["loss"] + self.retain_weight * retain.detach(), **parts}
        with torch.no_grad():
            for param, grad in zip(params, grads, strict=True):
                step = self.tamper_weight * grad.to(param.dtype)
                param.grad = step if param.grad is None else param.grad.add_(step)
        return terms

    def retain_terms(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_retain + representation_weight·L_rep at θ, and the parts to log (detached)."""
        if self.representation_weight == 0:
            retain = self.retain_term(batch)
            return retain, {"retain": retain.detach()}
        inputs = batch["retain"]
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        out = self.model(**kwargs, output_hidden_states=True)  # one forward for both terms, the reference's too
        with torch.no_grad():
            ref = self.reference(**kwargs, output_hidden_states=True)
        if self.retain_loss == "nll":
            retain = mean_token_nll(out.logits, inputs["labels"], num_tokens=token_count(inputs))
        else:
            retain = kl_to_reference(out.logits, ref.logits, inputs["labels"], num_tokens=token_count(inputs))
        representation = hidden_distance(
            torch.stack(out.hidden_states[1:]), torch.stack(ref.hidden_states[1:]), inputs["attention_mask"],
            num_tokens=position_count(inputs),
        )  # fmt: skip
        total = retain + self.representation_weight * representation
        return total, {"retain": retain.detach(), "representation": representation.detach()}


def split_rows(inputs: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """The forget batch's rows split in two: the attacker's (even rows) and the held-out ones (odd rows)."""
    rows = len(inputs["input_ids"])
    if rows < 2:
        raise ValueError(
            f"TAR splits each forget batch into the attacker's rows and held-out rows, but this one has {rows} row; "
            "set data.batch_size >= 2"
        )
    keys = ("input_ids", "attention_mask", "labels")
    return ({k: inputs[k][0::2] for k in keys}, {k: inputs[k][1::2] for k in keys})
