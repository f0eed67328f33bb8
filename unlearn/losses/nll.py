"""Answer-token log-likelihoods: the one place where logits, labels, shift and mask meet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from unlearn.data.collate import IGNORE_INDEX


@dataclass
class LMHeadInputs:
    """Final hidden states and the lm-head, given instead of logits so the fused kernel never builds (B, T, V)."""

    hidden: Tensor  # (B, T, H) last hidden states, after the final norm
    weight: Tensor  # (V, H) lm-head weight
    bias: Tensor | None = None  # (V,)
    backend: Literal["auto", "triton", "torch"] = "auto"
    # The lm-head module itself: the kernel then runs as its forward, reading its weight and bias at that moment,
    # so hooks on it run as for a plain call (ZeRO-3 gathers the partitioned weight for forward and backward).
    head: torch.nn.Module | None = None
    # Set, every call also computes the entropy at this temperature in the same kernel pass and keeps both outputs
    # for later calls with the same labels: a log-prob loss and an entropy loss then share one kernel call.
    entropy_temperature: float | None = None
    _kept: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def answer_token_outputs(
        self, labels: Tensor, *, ignore_index: int, temperature: float = 1.0, with_entropy: bool = False
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """(logp, entropy or None, mask), each (B, T-1): only answer positions reach the kernel."""
        if self.entropy_temperature is None or (with_entropy and temperature != self.entropy_temperature):
            return self._kernel_outputs(labels, ignore_index, temperature, with_entropy)
        key = (id(labels), ignore_index)
        if key not in self._kept:  # labels kept too, so that its id stays its own
            self._kept[key] = labels, self._kernel_outputs(labels, ignore_index, self.entropy_temperature, True)
        logp, entropy, mask = self._kept[key][1]
        return logp, entropy if with_entropy else None, mask

    def _kernel_outputs(
        self, labels: Tensor, ignore_index: int, temperature: float, with_entropy: bool
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """One fused kernel call on the answer positions, its outputs scattered back to (B, T-1)."""
        from unlearn.kernels import fused_linear_logprob  # Triton exists on Linux only; import on first use

        mask = labels[:, 1:] != ignore_index  # (B, T-1)
        targets = labels[:, 1:][mask]  # (N,), N answer tokens

        def kernel(hidden: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
            return fused_linear_logprob(
                hidden,
                weight,
                targets,
                bias=bias,
                ignore_index=ignore_index,
                temperature=temperature,
                with_entropy=with_entropy,
                backend=self.backend,
            )

        hidden = self.hidden[:, :-1][mask]  # (N, H)
        if self.head is None:
            logp, entropy = kernel(hidden, self.weight, self.bias)
        else:
            logp, entropy = _as_forward(self.head, lambda h: kernel(h, self.head.weight, self.head.bias), hidden)
        return _scatter(logp, mask), None if entropy is None else _scatter(entropy, mask), mask


def _as_forward(module: torch.nn.Module, function, *args):
    """`function(*args)` called as `module`'s forward, inside the hooks that a call to the module runs."""
    module.forward = function
    try:
        return module(*args)
    finally:
        del module.forward


def _scatter(values: Tensor, mask: Tensor) -> Tensor:
    """Put per-answer-token values (N,) back at their (B, T-1) positions, 0 elsewhere."""
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)


def shifted_logprobs(
    logits: Tensor | LMHeadInputs, labels: Tensor, *, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Per-token log-likelihood of each answer token, so every objective masks and shifts the same way.

    ``logp[b, t] = log softmax(logits[b, t])[labels[b, t+1]]``, 0 where ``labels[b, t+1] == ignore_index``.
    Computed in at least float32, whatever the dtype of ``logits``. Given ``LMHeadInputs`` instead of logits,
    the fused kernel computes the same numbers without materialising the logits.

    Args:
        logits: (B, T, V) next-token logits, or the hidden states and lm-head that produce them.
        labels: (B, T) token ids; prompt and padding positions hold ``ignore_index``.
        ignore_index: label value that marks a position the loss never sees.

    Returns:
        logp: (B, T-1) log-probabilities, 0 at ignored positions.
        mask: (B, T-1) bool, True at answer tokens.
    """
    if isinstance(logits, LMHeadInputs):
        logp, _, mask = logits.answer_token_outputs(labels, ignore_index=ignore_index)
        return logp, mask
    logits = logits[:, :-1]  # (B, T-1, V)
    labels = labels[:, 1:]  # (B, T-1)
    mask = labels != ignore_index
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logprobs = torch.log_softmax(logits.to(dtype), dim=-1)  # (B, T-1, V)
    index = torch.where(mask, labels, 0).unsqueeze(-1)  # ignore_index must never reach gather
    logp = logprobs.gather(-1, index).squeeze(-1)  # (B, T-1)
    return torch.where(mask, logp, 0.0), mask


def sequence_nll(logits: Tensor | LMHeadInputs, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed answer NLL per sequence, the S of sequence-level objectives (NPO, SimNPO, DPO).

    ``S_b = −Σ_t logp[b, t]``, ``n_b = Σ_t mask[b, t]`` (see ``shifted_logprobs``).

    Args:
        logits: (B, T, V) next-token logits, or ``LMHeadInputs``.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.

    Returns:
        S: (B,) summed answer-token NLL.
        n: (B,) answer-token counts, float.
    """
    logp, mask = shifted_logprobs(logits, labels)
    return -logp.sum(dim=-1), mask.sum(dim=-1).to(logp.dtype)


def mean_token_nll(logits: Tensor | LMHeadInputs, labels: Tensor, *, num_tokens: Tensor | None = None) -> Tensor:
    """Token-mean answer NLL over the batch, so long answers weigh by their length (standard LM loss).

    ``NLL = Σ_b S_b / N``, N = ``num_tokens`` or else ``Σ_b n_b``; 0.0 (still attached to ``logits``) when no
    answer token exists.

    Args:
        logits: (B, T, V) next-token logits, or ``LMHeadInputs``.
        labels: (B, T) token ids, ``IGNORE_INDEX`` outside answers.
        num_tokens: the denominator; pass the global batch's answer tokens per rank (a batch's
            ``tokens_per_rank``) so that averaging gradients over ranks gives the global token mean.

    Returns:
        Scalar tensor.
    """
    nll, count = sequence_nll(logits, labels)
    return nll.sum() / token_denominator(count, num_tokens)


def token_denominator(counts: Tensor, num_tokens: Tensor | None) -> Tensor:
    """What a token mean divides by: the given count, else the batch's own; at least 1, so no answer gives 0."""
    total = counts.sum() if num_tokens is None else torch.as_tensor(num_tokens, device=counts.device)
    return total.to(torch.promote_types(counts.dtype, torch.float32)).clamp(min=1.0)  # float: N/world may be x.5
