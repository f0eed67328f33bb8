"""LoRA (Hu et al. 2021) through PEFT: any method trains low-rank adapters instead of the full weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from unlearn.methods.adapter import Adapter
from unlearn.models import resolve
from unlearn.strategies import is_partitioned

ADAPTER_WEIGHTS = "adapter_model.safetensors"

if TYPE_CHECKING:
    from unlearn.data.prompts import PromptFormat


class LoRA(Adapter):
    """W + (α/r)·B·A on the target linear layers, B = 0 at the start, so the adapted model begins as the base.

    Saved in PEFT's format (adapter_config.json + adapter_model.safetensors, loadable with
    `peft.PeftModel.from_pretrained(base, folder)`); with `merge`, also a full Hugging Face model in `merged/`.
    α is `lora_alpha`.
    """

    renamed_args = {"alpha": "lora_alpha"}

    def __init__(
        self,
        r: int = 8,
        lora_alpha: float = 16.0,
        dropout: float = 0.0,
        target_modules: list[str] | str = "all-linear",
        merge: bool = False,
    ) -> None:
        """
        Args:
            r: rank of the update.
            lora_alpha: scale numerator (PEFT's name); the update is (lora_alpha / r)·B·A.
            dropout: dropout on the adapter's input.
            target_modules: module names (suffixes) to adapt, or "all-linear" for every linear layer but the lm-head.
            merge: also save the merged model (W + (α/r)·B·A) in Hugging Face format under `<save_dir>/merged`.
        """
        if r < 1 or lora_alpha <= 0 or not 0 <= dropout < 1:
            raise ValueError(
                f"LoRA needs r >= 1, lora_alpha > 0 and 0 <= dropout < 1; got r={r}, lora_alpha={lora_alpha}, "
                f"dropout={dropout}"
            )
        self.r = r
        self.lora_alpha = lora_alpha
        self.dropout = dropout
        self.target_modules = target_modules
        self.merge = merge

    def config(self, model_name: str):
        """The PEFT LoraConfig these arguments describe."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            base_model_name_or_path=resolve(model_name),
        )

    def attach(self, model: torch.nn.Module, model_name: str, tokenizer, prompt_format: PromptFormat) -> None:
        from peft import inject_adapter_in_model
        from peft.tuners.tuners_utils import cast_adapter_dtype

        try:
            with whole_while_built(model):
                inject_adapter_in_model(self.config(model_name), model)  # freezes the base weights
        except ValueError as err:
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
            raise ValueError(f"LoRA target_modules={self.target_modules!r}: {err}; linear layers are {names}") from err
        cast_adapter_dtype(model, "default")  # fp32 adapters on a bf16 base (PEFT casts inputs and outputs)

    def save(self, model: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        config = model.peft_config["default"]
        config.save_pretrained(folder)
        weights = get_peft_model_state_dict(model, state_dict=state, save_embedding_layers=False)
        save_file({f"base_model.model.{k}": v.contiguous() for k, v in weights.items()}, folder / ADAPTER_WEIGHTS)
        if self.merge:
            save_merged(model, state, folder / "merged")


@contextlib.contextmanager
def whole_while_built(model: torch.nn.Module) -> Iterator[None]:
    """Under ZeRO-3, build the adapters whole: DeepSpeed partitions them when it wraps the model.

    zero.Init would partition each lora_A / lora_B the moment its nn.Linear is built, before PEFT initialises it, so
    that initialisation would write into empty local tensors: B would keep nn.Linear's random weights instead of 0
    and the adapted model would not begin as the base (nor match its adapters-off reference). Built whole, they are
    initialised exactly as on one device (the same random A for the same seed).
    """
    if not is_partitioned(model):
        yield
        return
    from deepspeed.runtime.zero.partition_parameters import restore_init_context, shutdown_init_context

    shutdown_init_context()
    try:
        yield
    finally:
        restore_init_context()


def save_merged(model: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """W + (α/r)·B·A in plain Hugging Face format, from the full `state`: the live model is not touched (no
    merge-unmerge rounding) and may be partitioned."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import transpose

    merged = {name.replace(".base_layer.", "."): t for name, t in state.items() if ".lora_" not in name}
    with torch.no_grad():
        for name, layer in model.named_modules():
            if isinstance(layer, LoraLayer):
                down, up = state[f"{name}.lora_A.default.weight"], state[f"{name}.lora_B.default.weight"]
                delta = transpose(up.float() @ down.float(), layer.fan_in_fan_out) * layer.scaling["default"]
                merged[f"{name}.weight"] = state[f"{name}.base_layer.weight"] + delta.to(up.dtype)
    model.save_pretrained(folder, state_dict=merged)
