"""Plain helpers the test files share (fixtures are in conftest.py), so that no test file imports another."""

from collections.abc import Callable
from pathlib import Path

import yaml

from unlearn.config import load_config
from unlearn.models import BUILTIN

CONFIGS = Path(__file__).parents[1] / "configs"
TINY = BUILTIN["tiny-target"]

EARLIER = {
    "metrics.json": '{"complete": true}',
    "config.yaml": "earlier: true\n",
    "model/config.json": "{}",
    "logs/metrics.csv": "epoch,step,train/loss\n0,0,1.0\n",
}


def quick_config(tmp_path: Path, name: str = "npo", steps: int = 3, **model_args) -> Path:
    """A shipped config (its defaults merged) cut to a few steps and a few evaluation rows, writing under tmp_path."""
    config = load_config(CONFIGS / f"{name}.yaml")
    config["trainer"].update(max_steps=steps, default_root_dir=str(tmp_path / "run"), enable_progress_bar=False)
    config["trainer"]["callbacks"][0]["init_args"].update(limit=10, holdout=None)
    config["model"]["init_args"].update(model_args)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def earlier_result(run: Path) -> None:
    """What a finished earlier run left in `run` (EARLIER's files)."""
    for name, text in EARLIER.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)


def source(kind: str, path: str, **init_args) -> list[str]:
    """CLI arguments that make data.forget a QASource or TextSource reading `path`."""
    args = [f"--data.forget.class_path=unlearn.data.sources.{kind}", f"--data.forget.init_args.path={path}"]
    return args + [f"--data.forget.init_args.{key}={value}" for key, value in init_args.items()]


def evaluator(**init_args) -> Callable[[dict], None]:
    """A config edit setting the SyntheticEvaluator's arguments."""
    return lambda config: config["trainer"]["callbacks"][0]["init_args"].update(init_args)


def configured(tmp_path: Path, name: str, edit: Callable[[dict], None] | None) -> Path:
    """A quick method config under tmp_path, edited."""
    path = quick_config(tmp_path, name, steps=1)
    if edit is not None:
        config = yaml.safe_load(path.read_text())
        edit(config)
        path.write_text(yaml.safe_dump(config))
    return path
