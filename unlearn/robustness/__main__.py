"""`python -m unlearn.robustness MODEL... --out DIR`: every attack of a suite config against each model, one table."""

from __future__ import annotations

import argparse
import sys
from argparse import ArgumentError
from pathlib import Path

from lightning.fabric.utilities.seed import reset_seed

from unlearn.checks import UsageError, refuse
from unlearn.cli import SaveConfig, UnlearnCLI, quiet_library_noise, take_debug_flag, user_errors
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.eval.summary import resolved_config
from unlearn.io import check_writable
from unlearn.methods import UnlearnModule
from unlearn.robustness.base import Attack
from unlearn.robustness.suite import run_suite
from unlearn.robustness.table import write
from unlearn.validate import Named, named_problems


class SuiteCLI(UnlearnCLI):
    """The attack configs' trainer, model and data, with `attacks:` (a list, each by class_path) instead of one."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--attacks", type=list[Attack], required=True, help="the attacks, each by class_path")


def model_folder(path: str) -> str:
    """A run folder (runs/npo) stands for the model fit saved in it (runs/npo/model)."""
    inner = Path(path) / "model"
    return str(inner) if inner.is_dir() and not (Path(path) / "config.json").is_file() else path


def main(argv: list[str] | None = None) -> list[Path]:
    """Entry point of `python -m unlearn.robustness`; a user error prints one paragraph, as `python -m unlearn` does."""
    quiet_library_noise()
    argv = sys.argv[1:] if argv is None else list(argv)
    take_debug_flag(argv)
    with user_errors():
        return run(argv)


def run(argv: list[str]) -> list[Path]:
    """Run the suite against every model and write robustness.json, robustness.md and robustness.png under --out;
    every model is checked (a missing folder, a hub id nothing could fetch) before any runs."""
    parser = argparse.ArgumentParser(prog="python -m unlearn.robustness", description=__doc__)
    parser.add_argument("models", nargs="*", help="unlearned model folders, or run folders holding model/")
    parser.add_argument("--model", action="append", default=[], help="a model folder (repeatable; as MODEL)")
    parser.add_argument("--config", default="configs/attacks/suite.yaml", help="the suite: data, evaluator, attacks")
    parser.add_argument("--out", required=True, type=Path, help="folder for robustness.{json,md,png}")
    args, overrides = parser.parse_known_args(argv)  # the rest overrides the config, as in `python -m unlearn`
    models = [model_folder(m) for m in [*args.models, *args.model]]
    if not models:
        parser.error("give at least one model folder (MODEL or --model runs/<method>/model)")
    folders = [args.out] if len(models) == 1 else [args.out / f"model{k}" for k in range(len(models))]
    clis = suite_clis(models, args.config, overrides, folders)
    check_writable(args.out, "--out")
    results = []
    for cli, out in zip(clis, folders, strict=True):
        reset_seed()  # each model's attacks draw from the config's seed, as if its suite were the only one
        result = run_suite(cli.trainer, cli.model, cli.datamodule, cli.config_init["attacks"], out)
        results.append({**result, **resolved_config(cli.trainer)})
    paths = write(args.out, results, {"config": args.config, "overrides": overrides})
    print("wrote " + ", ".join(map(str, paths)))
    return paths


def suite_clis(models: list[str], config: str, overrides: list[str], folders: list[Path]) -> list[SuiteCLI]:
    """Each model's suite built before any of them runs (no weights load until an attack does), refused with one
    error that lists every problem: the models' own (a missing folder, a hub id nothing could fetch) and the
    config's with each model that exists (settings, layers, data; a hub id is asked of the hub once)."""
    problems, clis = [], []
    for model, out in zip(models, folders, strict=True):
        own = named_problems([Named("model", model)])
        problems += own
        if own:
            continue
        arguments = ["--config", config, "--model.init_args.model", model, "--trainer.default_root_dir", str(out)]
        try:
            clis.append(
                SuiteCLI(
                    UnlearnModule,
                    UnlearnDataModule,
                    subclass_mode_model=True,
                    save_config_callback=SaveConfig,
                    seed_everything_default=0,
                    run=False,
                    parser_kwargs={"exit_on_error": False},
                    args=[*arguments, *overrides],
                )
            )
        except (UsageError, ArgumentError) as error:
            found = error.problems if isinstance(error, UsageError) else [str(error)]
            problems += [p for p in found if p not in problems]
    refuse(problems)
    return clis


if __name__ == "__main__":
    main()
