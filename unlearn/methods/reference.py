"""The reference model behind one helper: log-probs cached before training, a frozen copy, or adapters off."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from unlearn.losses import LMHeadInputs, sequence_nll
from unlearn.methods.adapter import adapter_layers, adapters_disabled
from unlearn.models import decoder_layers, evaluating, load_model
from unlearn.strategies import is_partitioned


class AdaptersOff(torch.nn.Module):
    """The policy run with its adapters switched off and in eval mode: a LoRA or GRUN reference at no extra memory.

    The policy is held outside the module tree, so it is not registered twice (parameters, checkpoints, `eval()`);
    attributes the wrapper lacks (`model.layers`, `config`, ...) are the policy's, so layer hooks work unchanged.
    """

    def __init__(self, policy: torch.nn.Module, part: torch.nn.Module | None = None) -> None:
        """`part` (default the policy itself) is what forward runs, e.g. the backbone without the lm-head."""
        super().__init__()
        self._policy = [policy]
        self._part = [policy if part is None else part]

    def forward(self, *args, **kwargs):
        """The wrapped part of the policy run as its base: adapters off and eval mode, for this call only."""
        policy = self._policy[0]
        with adapters_disabled(policy), evaluating(policy):
            return self._part[0](*args, **kwargs)

    @property
    def base_model(self) -> AdaptersOff:
        """The backbone (no lm-head) with the adapters off: what the fused log-prob path runs."""
        return AdaptersOff(self._policy[0], self._policy[0].base_model)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("_policy", "_part"):  # looked up before __init__ set them: DeepSpeed's zero.Init asks
                raise  # hasattr(module, ...) before running __init__, and the policy is not there yet to ask
            return getattr(self._policy[0], name)


def frozen_copy(model: torch.nn.Module, keep_layers: int | None = None) -> torch.nn.Module:
    """A gradient-free copy of the policy; `keep_layers` drops the blocks a hooked layer never needs.

    Under ZeRO-3 (partitioned parameters) the copy is loaded again from the policy's checkpoint, so it is
    partitioned too; it must then be built before training changes the policy (in `prepare`, as methods do).

    A policy with adapters (LoRA, GRUN) is not copied: its reference is itself with the adapters off
    (`keep_layers` is then moot, as layer hooks stop the forward at the hooked layer anyway).
    """
    if adapter_layers(model):
        return AdaptersOff(model)
    if is_partitioned(model):
        # ZeRO-3 partitions cannot be deep-copied: load the weights again, partitioned like the policy.
        reference = load_model(model.name_or_path, str(model.dtype).removeprefix("torch."))
    else:
        reference = copy.deepcopy(model)
    if keep_layers is not None:
        del decoder_layers(reference)[keep_layers:]
    reference.requires_grad_(False)
    return reference.eval()


@torch.no_grad()
def cache_sequence_nll(
    model: torch.nn.Module,
    dataloader,
    role: str,
    size: int,
    outputs: Callable[[torch.nn.Module, dict], torch.Tensor | LMHeadInputs],
) -> torch.Tensor:
    """Summed answer NLL of every row, by row index: NPO's and DPO's reference with no second model.

    `outputs(model, inputs)` gives the logits or fused lm-head inputs (UnlearnModule.outputs_of). Adapters are off
    while caching, so the cache is the base model's whatever the adapters' initial state.
    """
    device = next(model.parameters()).device
    cache = torch.full((size,), float("nan"), dtype=torch.float32, device=device)
    with adapters_disabled(model), evaluating(model):
        for batch in dataloader:
            inputs = {k: v.to(device) for k, v in batch[role].items()}
            nll, _ = sequence_nll(outputs(model, inputs), inputs["labels"])
            cache[inputs["index"]] = nll.float()
    if torch.isnan(cache).any():
        raise RuntimeError(f"the reference cache missed {int(torch.isnan(cache).sum())} of {size} {role} rows")
    return cache
