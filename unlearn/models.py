"""Load a causal LM and its tokenizer from a hub id, a local directory, or a built-in name (tiny models, SmolLM2)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from unlearn import smollm2
from unlearn.checks import UsageError, refuse

ASSETS = Path(__file__).parent / "assets"
BUILTIN = {"tiny-target": ASSETS / "tiny-target", "tiny-retain": ASSETS / "tiny-retain"}
SCRATCH = "tiny-scratch"  # tiny-target's tokenizer and shape with seeded random weights, for pre-training
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")


def resolve(name_or_path: str) -> str:
    """Map a built-in name to its directory (shipped, or converted into the user's cache); fail early on bad paths."""
    if name_or_path in BUILTIN:
        return str(BUILTIN[name_or_path])
    if name_or_path == smollm2.NAME:
        return str(smollm2.local_dir())
    refuse(_path_problems(name_or_path))
    return name_or_path


def model_problems(name_or_path: str, tokenizer: bool = True) -> list[str]:
    """What would make loading `name_or_path` fail, found without loading it: a missing local path, a model folder
    without tokenizer files (when `tokenizer`), a truncated weight file (hub ids are not looked up here)."""
    if name_or_path in (*BUILTIN, smollm2.NAME, SCRATCH):
        return []
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return _path_problems(name_or_path)
    problems = [f"{file}: {error}" for file, error in _damaged_weights(folder)]
    if tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(_no_tokenizer(folder))
    return [f"model {name_or_path!r}: {p}" for p in problems]


def names_local_path(name_or_path: str) -> bool:
    """Whether a name can only mean a local path: it starts with / . ~, is not shaped like a hub id, or its first part
    is a local folder."""
    first = Path(name_or_path.split("/")[0])
    return name_or_path.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(name_or_path) or first.is_dir()


def _path_problems(name_or_path: str) -> list[str]:
    """A name that must be a local path (it starts with / . ~, has several slashes, or its first part is a local
    folder) but does not exist; the hub would only say "Repo id must be in the form 'namespace/repo_name'"."""
    path = Path(name_or_path).expanduser()
    if not names_local_path(name_or_path) or path.exists():
        return []
    near = path.parent if path.parent.is_dir() else None
    seen = f"; {near} holds {sorted(p.name for p in near.iterdir())[:8]}" if near else ""
    return [f"model path {name_or_path!r} does not exist (relative to {Path.cwd()}){seen}. {_hint()}"]


def _damaged_weights(folder: Path) -> list[tuple[Path, str]]:
    """Safetensors files whose header does not cover the file (truncated or corrupt), each with the reader's error."""
    from safetensors import safe_open

    damaged = []
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(file, "pt"):
                pass
        except Exception as error:  # SafetensorError is not importable by name across versions
            damaged.append((file, f"truncated or corrupt weights ({error}); copy or download the file again"))
    return damaged


def _no_tokenizer(folder: Path) -> str:
    """The fix for a model folder saved without its tokenizer (transformers blames sentencepiece or tiktoken)."""
    return (
        f"{folder} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}); save the tokenizer next to the "
        "weights (tokenizer.save_pretrained(folder)) or copy those files from the base model"
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """A tokenizer with a pad token, so batches can always be padded; `tiny-scratch` has tiny-target's."""
    refuse(model_problems(name_or_path))
    source = "tiny-target" if name_or_path == SCRATCH else name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve(source))
    except (OSError, ValueError) as err:  # transformers' ValueError: no tokenizer it can build
        raise UsageError(f"cannot load a tokenizer from {name_or_path!r}: {err} {_hint()}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, dtype: str = "float32") -> torch.nn.Module:
    """Any AutoModelForCausalLM by hub id or path; `tiny-scratch` builds the untrained tiny Llama."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; choose one of {sorted(DTYPES)}")
    if name_or_path == SCRATCH:
        return _scratch_model().to(DTYPES[dtype])
    refuse(model_problems(name_or_path, tokenizer=False))
    try:
        return AutoModelForCausalLM.from_pretrained(resolve(name_or_path), dtype=DTYPES[dtype])
    except OSError as err:
        raise UsageError(f"cannot load a model from {name_or_path!r}: {err} {_hint()}") from err


def _scratch_model() -> LlamaForCausalLM:
    """tiny-target's Llama with seed-0 random weights: the same model in every process (unlearn.tiny's recipe)."""
    config = LlamaConfig.from_pretrained(BUILTIN["tiny-target"])
    config.name_or_path = SCRATCH  # reloading by model.name_or_path gives this model, not the trained tiny-target
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LlamaForCausalLM(config)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer blocks of a decoder-only model (Llama, Mistral, Qwen, Gemma, GPT-NeoX...)."""
    for path in (
        "model.layers",
        "model.decoder.layers",
        "transformer.h",
        "gpt_neox.layers",
        "base_model.model.model.layers",
    ):
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(
        f"{type(model).__name__} has no decoder layers at model.layers / transformer.h / gpt_neox.layers; "
        "representation methods need a decoder-only transformer"
    )


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) within the block, then each module's own training flag back, so it works mid-fit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _hint() -> str:
    names = ", ".join([*BUILTIN, smollm2.NAME])
    return f"Use a local directory, a hub id reachable from this machine, or a built-in name: {names}."


def forward_takes(model: torch.nn.Module, name: str) -> bool:
    """Whether the transformers model's forward takes argument `name`, asked of the model itself where a wrapper's
    forward takes **kwargs (PEFT's, also behind AdaptersOff, which hands attribute lookups to the policy)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(inner.forward).parameters


def with_cache(model: torch.nn.Module, cache: object) -> dict:
    """The key-value cache argument by the name this transformers version reads (`cache` replaces past_key_values)."""
    return {"cache" if forward_takes(model, "cache") else "past_key_values": cache}


def cache_of(out) -> object:
    """A forward's key-value cache under the name this transformers version gives it (`cache`, once past_key_values)."""
    return out["cache"] if "cache" in out else out["past_key_values"]
