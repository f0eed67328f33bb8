"""The CLI's checks across sections (optimiser, trainer, device, model files), made on the parsed config before any
class is built or model loaded; each class checks its own arguments (see unlearn.checks)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from jsonargparse import Namespace

from unlearn.models import BUILTIN, model_problems

LAYER_KEYS = ("layer", "adv_layer", "layers", "trainable_layers")


def settings_problems(config: Namespace, subcommand: str | None) -> list[str]:
    """Every cross-cutting problem of a parsed config, each naming the setting and the fix."""
    model = str(config.get("model.init_args.model", "tiny-target"))
    shape = local_config(model) or {}
    problems = model_problems(model) + positions_problems(model, shape, config.get("data.max_length"))
    problems += layer_problems(model, shape, config.get("model.init_args"))
    trainer = [config.get(f"trainer.{key}") for key in ("accelerator", "precision", "strategy")]
    problems += device_problems(*trainer)
    if subcommand == "fit":
        problems += training_problems(config.get("model.init_args.optimizer"), config.get("trainer.max_steps"))
    return problems


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
