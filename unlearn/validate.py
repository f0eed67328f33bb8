"""The CLI's checks across sections (optimiser, trainer, device, model files, hub ids), made on the parsed config
before any class is built or model loaded; each class checks its own arguments (see unlearn.checks)."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from jsonargparse import Namespace

from unlearn import smollm2
from unlearn.data.sources import FILE_BUILDERS, DatasetSource, shipped
from unlearn.hub import fetch_problems, hub_shaped
from unlearn.models import BUILTIN, SCRATCH, model_problems

LAYER_KEYS = ("layer", "adv_layer", "layers", "trainable_layers")
BUILT_IN = {*BUILTIN, smollm2.NAME, SCRATCH}  # made or shipped here: never looked up on the hub
# An evaluator's, its tasks' or an attack's arguments that name a model they load, and whether its tokenizer files
# are checked (an NLI model's may be spm.model alone, a file that model_problems does not count; an attack's original
# model is read with the attacked model's tokenizer).
MODEL_ARGS = {"retain_model": True, "nli_model": False, "original": False}


class Named(NamedTuple):
    """A setting that names a model or a dataset to load: a local path, a built-in name or a hub id."""

    setting: str
    name: str
    repo_type: str = "model"  # or "dataset"
    tokenizer: bool = True  # whether model_problems checks its tokenizer files


def settings_problems(config: Namespace, subcommand: str | None) -> list[str]:
    """Every cross-cutting problem of a parsed config, each naming the setting and the fix."""
    model = str(config.get("model.init_args.model", "tiny-target"))
    shape = local_config(model) or {}
    problems = named_problems([Named("model.init_args.model", model), *named_elsewhere(config)])
    problems += positions_problems(model, shape, config.get("data.max_length"))
    problems += layer_problems(model, shape, config.get("model.init_args"))
    trainer = [config.get(f"trainer.{key}") for key in ("accelerator", "precision", "strategy")]
    problems += device_problems(*trainer)
    if subcommand == "fit":
        problems += training_problems(config.get("model.init_args.optimizer"), config.get("trainer.max_steps"))
    return problems


def named_problems(named: list[Named]) -> list[str]:
    """What would make loading the named models and datasets fail: a local model's missing or damaged files, a hub
    id that nothing could fetch; the CLI's config and the robustness suite's model list are checked with it."""
    problems = [
        f"{n.setting}: {p}" for n in named if n.repo_type == "model" for p in model_problems(n.name, n.tokenizer)
    ]
    return problems + hub_problems(named)


def named_elsewhere(node: object, setting: str = "") -> Iterator[Named]:
    """The models that an evaluator, its tasks or an attack will load and the data sources' paths, anywhere under
    `node` (callback lists, evaluator tasks, mixtures, the suite's attacks), each with its setting."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from named_elsewhere(item, f"{setting}[{index}]")
    if not isinstance(node, Namespace):
        return
    init_args = node.get("init_args")
    if isinstance(init_args, Namespace):
        for key, tokenizer in MODEL_ARGS.items():
            if isinstance(init_args.get(key), str) and loads(init_args, key):
                yield Named(f"{setting}.init_args.{key}", init_args[key], tokenizer=tokenizer)
        if reads_data(node):
            yield Named(f"{setting}.init_args.path", shipped(init_args.path), "dataset")
    for key, value in vars(node).items():
        yield from named_elsewhere(value, f"{setting}.{key}" if setting else key)


def hub_problems(named: list[Named]) -> list[str]:
    """Each hub id that can be neither read from the local cache nor fetched, once with all the settings naming it;
    found now, as the loaders would retry for a minute (a missing local path is model_problems' or the source's)."""
    settings: dict[tuple[str, str], list[str]] = {}
    for n in named:
        local_file = n.repo_type == "dataset" and Path(n.name).suffix in FILE_BUILDERS
        if n.name not in BUILT_IN and not local_file and hub_shaped(n.name):
            settings.setdefault((n.name, n.repo_type), []).append(n.setting)
    return [p for (name, repo_type), where in settings.items() for p in fetch_problems(where, name, repo_type)]


def loads(init_args: Namespace, key: str) -> bool:
    """Whether the class will load the model its `key` names: SyntheticEvaluator's retain_model only when `full`, a
    TOFUTask's only on the forget side (the default, tiny-retain, then stands unused)."""
    return key != "retain_model" or (init_args.get("full") is not False and init_args.get("side") != "retain")


def reads_data(node: Namespace) -> bool:
    """Whether `node` builds a DatasetSource, whose `path` may be a hub id (other classes' paths are not data)."""
    module, _, name = str(node.get("class_path")).rpartition(".")
    source = getattr(importlib.import_module(module), name, None) if module else None
    return isinstance(source, type) and issubclass(source, DatasetSource)


def local_config(model: str) -> dict | None:
    """A local model's config.json (a built-in name or a folder), read without loading it; None for hub ids."""
    path = Path(BUILTIN.get(model, Path(model).expanduser())) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def positions_problems(model: str, shape: dict, max_length: object) -> list[str]:
    """data.max_length beyond the positions a local model was trained for: rows that long would run past them,
    which rotary models extrapolate silently and learned position tables cannot index. `shape`: its config.json."""
    positions = shape.get("max_position_embeddings")
    if not isinstance(max_length, int) or not isinstance(positions, int) or max_length <= positions:
        return []
    return [
        f"data.max_length={max_length} exceeds {model}'s max_position_embeddings={positions}: rows that long run "
        f"past the positions it was trained for; set data.max_length <= {positions}"
    ]


def layer_problems(model: str, shape: dict, init_args: Namespace | None) -> list[str]:
    """Decoder-layer indices (a method's layer, adv_layer, layers, trainable_layers; an adapter's layers, which may
    count from the end) that a local model does not have, found before it loads."""
    count = (local_config(model) or {}).get("num_hidden_layers")
    if not isinstance(count, int) or not isinstance(init_args, Namespace):
        return []
    adapter = init_args.get("adapter")
    settings = {f"model.init_args.{key}": (init_args.get(key), 0) for key in LAYER_KEYS}
    if isinstance(adapter, Namespace):
        settings["model.init_args.adapter.init_args.layers"] = (adapter.get("init_args.layers"), -count)
    problems = []
    for setting, (value, lowest) in settings.items():
        indices = value if isinstance(value, list) else [value]
        bad = [i for i in indices if isinstance(i, int) and not lowest <= i < count]
        if bad:
            problems.append(
                f"{setting}={value}: {model} has {count} decoder layers, so {bad} does not exist; use indices in "
                f"{lowest}..{count - 1}"
            )
    return problems


def training_problems(optimizer: Namespace | None, max_steps: int | None) -> list[str]:
    """Settings under which fit cannot change the model: a learning rate <= 0, or no (or a nonsensical) step count."""
    problems = []
    lr = optimizer.get("init_args.lr") if isinstance(optimizer, Namespace) else None
    if isinstance(lr, int | float) and lr <= 0:
        problems.append(
            f"model.init_args.optimizer.init_args.lr={lr}: no update is possible, so the saved model would be the "
            "base model; set a positive learning rate (the shipped configs use 1e-5 to 3e-4)"
        )
    if max_steps == 0:
        problems.append(
            "trainer.max_steps=0 trains no step (the base model would be saved as the unlearned one); set a positive "
            "number of steps, or -1 to train for trainer.max_epochs"
        )
    if max_steps is not None and max_steps < -1:
        problems.append(
            f"trainer.max_steps={max_steps} is not a step count; set a positive number of steps, or -1 to train for "
            "trainer.max_epochs"
        )
    return problems


def device_problems(accelerator: object, precision: object, strategy: object) -> list[str]:
    """Precision and strategy that need a GPU, asked for where the run will have none."""
    if str(accelerator) != "cpu" and torch.cuda.is_available():
        return []
    problems = []
    if str(precision).startswith("16"):
        problems.append(
            f"trainer.precision={precision}: float16 training needs a GPU, and this run is on CPU; set "
            "trainer.precision: bf16-mixed or 32-true"
        )
    stage = re.fullmatch(r"deepspeed_stage_(\d)(_offload.*)?", str(strategy))
    if stage:
        fix = f"deepspeed_stage_{stage[1]}_cpu" if stage[1] in "23" else "auto"
        problems.append(
            f"trainer.strategy={strategy} needs CUDA GPUs, and this run is on CPU; set trainer.strategy: {fix} "
            "(the same ZeRO stage over CPU processes)"
        )
    return problems
