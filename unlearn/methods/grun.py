"""GRUN (Ren et al. 2025, arXiv:2502.17823): a gated low-rank representation intervention on a frozen base.

At each chosen decoder layer, at the last prompt token, the layer's output h becomes

    h' = h + σ(g(h))·((W h + b) − R h)·R        R (r, D) with orthonormal rows, W (r, D), b (r,), g: D → 1

(LoReFT, Wu et al. 2024, scaled by a soft gate). The gate is trained with BCE (forget prompts 1, retain prompts 0)
beside the wrapped method's objective (GA, GradDiff, NPO, SimNPO, IDK, DPO): pass `adapter: GRUN` to that method.
The reference is the same network with the intervention off.

As in the authors' code (github.com/renjie3/GRUN): interventions on block outputs, at the last prompt position
only (so generation changes through the cached keys and values of that position), a linear gate by default
(their Llama setting; `gate_hidden` gives their MLP gate), BCE over every intervened layer's gate with weight 10.
Where this differs:
- the last prompt token is found in the token ids themselves, as the last occurrence of `marker` (what the prompt
  format puts after the question, e.g. "\nAnswer:"), so training, scoring and generation agree without passing
  positions around; rows without it (plain-text passages; generated tokens) are not intervened. The authors pass
  positions from the data (their WMDP passages take the token at 80% of the length). Hence RMU and RR get no
  gradient through GRUN from passages; on QA rows (configs/grun_rmu.yaml) the answers see the edited prompt end
  through attention, a weak lever on this model (forget MCQ 1.00 -> 0.95 after 80 steps): prefer LoRA for them.
- W is initialised to R and b to 0, so the intervention starts as the identity (pyreft draws W at random) and the
  evaluation before unlearning sees the base model.
Not mergeable into the weights: the gate depends on the input, so `merge=True` is refused.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from unlearn.data.prompts import PromptFormat
from unlearn.io import atomic_write_json
from unlearn.losses import gate_bce_loss
from unlearn.methods.adapter import Adapter, AdapterLayer
from unlearn.methods.representation import check_layers, layer_outputs
from unlearn.models import decoder_layers, resolve
from unlearn.strategies import is_zero3

CONFIG_NAME = "grun_config.json"
WEIGHTS_NAME = "grun.safetensors"


class GRUN(Adapter):
    """Gated LoReFT interventions at the last prompt token of chosen layers; the base stays frozen."""

    def __init__(
        self,
        layers: list[int] | None = None,
        rank: int = 4,
        gate_hidden: list[int] | None = None,
        gate_weight: float = 10.0,
        marker: str | None = None,
        merge: bool = False,
    ) -> None:
        """
        Args:
            layers: decoder layers whose outputs are intervened (negative counts from the end); default the last
                two (the authors use late layers, e.g. 20, 25, 31 of Llama-3.1-8B's 32).
            rank: r, the rank of the intervention subspace.
            gate_hidden: widths of the gate's hidden ReLU layers; none = a linear gate (the authors' [256, 64] is
                their Mistral setting).
            gate_weight: weight of the gate's BCE next to the method's loss.
            marker: the text that ends every prompt, whose last token is where the intervention acts; default
                what the prompt format puts after the question ("\nAnswer:" for plain).
            merge: refused: an input-dependent gate cannot be folded into the weights.
        """
        if merge:
            raise ValueError(
                "GRUN cannot be merged into the base weights: its gate σ(g(h)) depends on the input; "
                "set merge: false and load the adapter with unlearn.methods.grun.load_grun"
            )
        if rank < 1 or gate_weight < 0:
            raise ValueError(f"GRUN needs rank >= 1 and gate_weight >= 0; got rank={rank}, gate_weight={gate_weight}")
        self.layers = layers or [-2, -1]
        self.rank = rank
        self.gate_hidden = gate_hidden or []
        self.gate_weight = gate_weight
        self.marker = marker
        self.merge = merge

    def attach(self, model: torch.nn.Module, model_name: str, tokenizer, prompt_format: PromptFormat) -> None:
        suffix = prompt_format.suffix(tokenizer)
        marker = suffix if self.marker is None else self.marker
        if not marker or not suffix.endswith(marker):
            raise ValueError(
                f"GRUN's marker={marker!r} must end every prompt, which end in {suffix!r}; "
                "leave marker unset to use that"
            )
        count = len(decoder_layers(model))
        layers = sorted({i % count if -count <= i < 0 else i for i in self.layers})
        check_layers(model, model_name, "GRUN", layers)
        model.requires_grad_(False)
        hidden = model.get_input_embeddings().embedding_dim
        ids = marker_ids(tokenizer, marker, prompt_format)
        model.grun = Interventions(hidden, layers, self.rank, self.gate_hidden, ids)
        model.grun.install(model)
        self._model_name = model_name

    def strategy_problems(self, strategy) -> list[str]:
        """ZeRO-3 gathers a module's weights only while that module runs; GRUN's hooks read them from outside."""
        if not is_zero3(strategy):
            return []
        return [
            "GRUN reads its weights from forward hooks, outside the modules that ZeRO-3 gathers them for, so it "
            "cannot run under a ZeRO-3 strategy; use trainer.strategy: ddp or a ZeRO-2 one, or LoRA under ZeRO-3"
        ]

    def needed_data(self) -> dict[str, str]:
        missing = "GRUN trains its gate on forget (1) against retain (0) prompts: add data.{}"
        return {role: missing.format(role) for role in ("forget", "retain")}

    def data_problems(self, kinds: dict[str, str]) -> list[str]:
        """GRUN intervenes at a prompt's end, which passages do not have: both roles need question-answer rows."""
        return [
            f"GRUN intervenes at the end of a prompt, which the passages of data.{role} do not have; give it "
            "question-answer rows (e.g. unlearn.data.sources.QASource)"
            for role in ("forget", "retain")
            if kinds.get(role) == "text"
        ]

    def extend_objective(self, module, batch: dict, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss + gate_weight·BCE(gate; forget prompts 1, retain prompts 0)."""
        if "retain" not in batch:
            raise ValueError("GRUN trains its gate on forget (1) against retain (0) prompts: add data.retain")
        forget = gate_logits(module.model, batch["forget"])
        if forget.numel() == 0:
            raise ValueError(
                "no forget row of this batch contains the prompt's end, so GRUN has "
                "nowhere to intervene; use question-answer forget data (e.g. SyntheticQA)"
            )
        bce = gate_bce_loss(forget, gate_logits(module.model, batch["retain"]))
        return {**terms, "loss": terms["loss"] + self.gate_weight * bce, "gate": bce}

    def save(self, model: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
        grun = model.grun
        config = {
            "base_model": resolve(getattr(self, "_model_name", "")),
            "layers": grun.layer_ids,
            "rank": self.rank,
            "gate_hidden": self.gate_hidden,
            "marker": self.marker,
            "marker_ids": grun.marker_ids.tolist(),
        }
        weights = {k.removeprefix("grun."): v.contiguous() for k, v in state.items() if k.startswith("grun.")}
        save_file(weights, folder / WEIGHTS_NAME)
        atomic_write_json(folder / CONFIG_NAME, config)


class GatedLoReFT(AdapterLayer):
    """h + σ(g(h))·((W h + b) − R h)·R at one layer; R's rows stay orthonormal through a parametrisation.

    The weights are made fp32 whatever the default dtype, and the method module keeps them so through casts (bf16
    keeps 8 significant bits: an AdamW step under 2⁻⁹·|w| would leave a weight as it was); it computes in their
    dtype and returns h's. DeepSpeed's bf16 optimizer, which keeps its own fp32 copy, makes them bf16.
    """

    def __init__(self, hidden: int, rank: int, gate_hidden: list[int]) -> None:
        super().__init__()
        fp32 = {"dtype": torch.float32}  # whatever the default dtype (Lightning's bf16-true sets it while loading)
        self.rotation = torch.nn.Linear(hidden, rank, bias=False, **fp32)
        torch.nn.utils.parametrize.register_parametrization(self.rotation, "weight", OrthonormalRows())
        self.source = torch.nn.Linear(hidden, rank, **fp32)
        with torch.no_grad():
            self.source.weight.copy_(self.rotation.weight)  # W = R, b = 0: the identity to begin with
            self.source.bias.zero_()
        widths = [hidden, *gate_hidden]
        blocks = [m for a, b in pairwise(widths) for m in (torch.nn.Linear(a, b, **fp32), torch.nn.ReLU())]
        self.gate = torch.nn.Sequential(*blocks, torch.nn.Linear(widths[-1], 1, **fp32))

    def gate_logit(self, h: torch.Tensor) -> torch.Tensor:
        """g(h) (...,) in the weights' dtype, before the sigmoid."""
        return self.gate(h.to(self.source.weight.dtype)).squeeze(-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (N, D)
        """h plus its gated low-rank edit, computed in the weights' dtype (fp32) and returned in h's."""
        x = h.to(self.source.weight.dtype)
        rotation = self.rotation.weight  # (r, D), orthonormal rows
        edit = F.linear(x, self.source.weight - rotation, self.source.bias) @ rotation  # ((W − R) h + b)·R: (N, D)
        return (x + torch.sigmoid(self.gate_logit(x)).unsqueeze(-1) * edit).to(h.dtype)


class OrthonormalRows(torch.nn.Module):
    """R = Qᵀ of the QR decomposition of Xᵀ: orthonormal rows for any X at O(D·r²).

    Not torch's `orthogonal`: for r < D it defaults to Householder, which keeps column signs as the integer part of
    X's diagonal, so AdamW's weight decay (1 → 0.99…) silently turns R into 0; its square maps cost O(D³).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (r, D)
        """R from any X, so that the optimiser moves X freely while the rotation stays orthonormal."""
        q, r = torch.linalg.qr(x.T.float())  # (D, r), (r, r); fp32, as linalg.qr has no bf16 kernel
        return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).T.to(x.dtype)  # signs fixed: R continuous in X


class Interventions(torch.nn.Module):
    """GRUN's layers inside the model (so the optimiser, devices and checkpoints see them) and their hooks."""

    def __init__(self, hidden: int, layers: list[int], rank: int, gate_hidden: list[int], marker: list[int]):
        super().__init__()
        self.layer_ids = layers
        self.edits = torch.nn.ModuleDict({str(i): GatedLoReFT(hidden, rank, gate_hidden) for i in layers})
        self.register_buffer("marker_ids", torch.tensor(marker), persistent=False)
        self.positions: torch.Tensor | None = None  # (B,) of the running forward, -1 where no prompt end
        self.recorded: list[torch.Tensor] | None = None  # gate logits, while gate_logits() runs

    def install(self, model: torch.nn.Module) -> Interventions:
        """Find the prompt end before each forward of the backbone, which the logits path and the fused log-prob path
        (`model.base_model` alone) both run; edit the chosen layers' outputs there."""
        model.base_model.register_forward_pre_hook(self.locate, with_kwargs=True)
        blocks = decoder_layers(model)
        for i in self.layer_ids:
            blocks[i].register_forward_hook(EditHook(self, self.edits[str(i)]))
        return self

    def locate(self, module, args, kwargs):
        """Finds each row's prompt end before the backbone runs, where the layer hooks then edit."""
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        self.positions = None if input_ids is None else prompt_end_positions(input_ids, self.marker_ids)


class EditHook:
    """One layer's forward hook: an object, not a closure, so a deep copy of the model (the robustness suite's fresh
    copy per attack) edits with the copy's interventions and the prompt ends its own forward found."""

    def __init__(self, grun: Interventions, edit: GatedLoReFT) -> None:
        self.grun, self.edit = grun, edit

    def __call__(self, module, args, output):
        grun, edit = self.grun, self.edit
        hidden = output[0] if isinstance(output, tuple) else output  # (B, T, D)
        if not edit.active or grun.positions is None:
            return None
        rows = (grun.positions >= 0).nonzero().squeeze(-1)  # (N,)
        if rows.numel() == 0:
            return None
        cols = grun.positions[rows]
        h = hidden[rows, cols]  # (N, D)
        if grun.recorded is not None:
            grun.recorded.append(edit.gate_logit(h))
        hidden = hidden.index_put((rows, cols), edit(h))
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def gate_logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every intervened layer's gate logit at each row's prompt end (N·L,); the forward stops after the last layer."""
    grun = model.grun
    grun.recorded = []
    try:
        layer_outputs(model, inputs, [max(grun.layer_ids)])
        return torch.cat(grun.recorded) if grun.recorded else torch.zeros(0, device=inputs["input_ids"].device)
    finally:
        grun.recorded = None


def prompt_end_positions(input_ids: torch.Tensor, marker: torch.Tensor) -> torch.Tensor:
    """Index of the last token of the last `marker` occurrence per row (B,), -1 where it does not occur."""
    width = marker.numel()
    if input_ids.shape[1] < width:
        return torch.full(input_ids.shape[:1], -1, device=input_ids.device)
    found = (input_ids.unfold(1, width, 1) == marker.to(input_ids.device)).all(-1)  # (B, T - width + 1)
    starts = torch.arange(1, found.shape[1] + 1, device=input_ids.device)
    last = (found * starts).argmax(-1) + width - 1  # (B,)
    return torch.where(found.any(-1), last, torch.full_like(last, -1))


def marker_ids(tokenizer, marker: str, prompt_format: PromptFormat) -> list[int]:
    """The marker's token ids as they occur at the end of a prompt (tokenised in context, not alone)."""
    prompt, special = prompt_format.prompt("x", tokenizer), prompt_format.special_tokens
    whole = tokenizer(prompt, add_special_tokens=special).input_ids
    head = tokenizer(prompt[: -len(marker)], add_special_tokens=special).input_ids
    if len(whole) <= len(head) or whole[: len(head)] != head:
        return whole[-1:]  # the tokenizer merges across the boundary: fall back to the prompt's last token
    return whole[len(head) :]


def load_grun(model: torch.nn.Module, folder: str | Path) -> torch.nn.Module:
    """Attach a saved GRUN adapter to its base model (in place) and return the model."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    hidden = model.get_input_embeddings().embedding_dim
    model.grun = Interventions(hidden, config["layers"], config["rank"], config["gate_hidden"], config["marker_ids"])
    model.grun.load_state_dict(load_file(folder / WEIGHTS_NAME))
    model.grun.to(model.get_input_embeddings().weight.device).install(model)
    return model
