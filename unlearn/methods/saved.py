"""Load what `fit` saved, whatever it was: a whole model, or an adapter folder (GRUN, LoRA) on the base it names."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unlearn.checks import UsageError
from unlearn.methods.grun import CONFIG_NAME as GRUN_CONFIG
from unlearn.methods.grun import load_grun
from unlearn.models import load_model

PEFT_CONFIG = "adapter_config.json"


def load_saved(name_or_path: str, dtype: str = "float32") -> torch.nn.Module:
    """A model by hub id or path; a GRUN folder gets its interventions on its base, a LoRA folder is merged into its
    base, so `test`, `attack` and the robustness suite read an adapter run's model/ like any other."""
    folder = Path(name_or_path).expanduser()
    if (folder / GRUN_CONFIG).is_file():
        return load_grun(load_model(_base(folder / GRUN_CONFIG, "base_model"), dtype), folder)
    if (folder / PEFT_CONFIG).is_file():
        from peft import PeftModel

        base = load_model(_base(folder / PEFT_CONFIG, "base_model_name_or_path"), dtype)
        return PeftModel.from_pretrained(base, folder).merge_and_unload()
    return load_model(name_or_path, dtype)


def _base(config: Path, key: str) -> str:
    """The base model an adapter's config names; one error when it names none or one that is gone."""
    base = json.loads(config.read_text()).get(key)
    if not base:
        raise UsageError(f"{config} names no base model ({key!r}); add it, the model the adapter was trained on")
    if base.startswith(("/", ".", "~")) and not Path(base).expanduser().is_dir():
        raise UsageError(f"{config} names the base model {base!r}, which does not exist here; set {key!r} to it")
    return base
