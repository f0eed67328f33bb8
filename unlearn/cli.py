"""`python -m unlearn {fit,validate,test,attack} --config X.yaml`: LightningCLI over the methods and data module."""

from __future__ import annotations

import signal
import sys
from argparse import ArgumentError
from pathlib import Path

import lightning.pytorch as pl
from jsonargparse import ActionConfigFile
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from unlearn.config import compose
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.io import prepare_output
from unlearn.methods import UnlearnModule
from unlearn.robustness.trainer import UnlearnTrainer


class ComposedConfigFile(ActionConfigFile):
    """`--config` whose file may name parents under `defaults:`: jsonargparse then reads the merged YAML."""

    def __call__(self, parser, cfg, values, option_string=None) -> None:
        try:
            values = compose(values)
        except (OSError, ValueError) as error:
            raise ArgumentError(self, str(error)) from error
        self.apply_config(parser, cfg, self.dest, values)


class SaveConfig(SaveConfigCallback):
    """Lightning's config.yaml, but an earlier one is moved aside (as every output of a run is), never overwritten."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.already_saved:
            path = Path(trainer.log_dir) / self.config_filename
            prepare_output(path, "trainer.default_root_dir", move=trainer.is_global_zero)
        super().setup(trainer, pl_module, stage)


class UnlearnCLI(LightningCLI):
    """The method is chosen by `model.class_path`; the data module reads the model's tokenizer and prompt format."""

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        """LightningCLI's parser with a `--config` that composes (every subcommand's parser is made here)."""
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={pl.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ComposedConfigFile, help="Path to a YAML config, or YAML text.")
        return parser

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands and `attack` (UnlearnTrainer.attack: a robustness attack, unlearn.robustness)."""
        return {**LightningCLI.subcommands(), "attack": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.model", "data.tokenizer", apply_on="parse")
        parser.link_arguments("model.init_args.prompt_format", "data.prompt_format", apply_on="parse")


def main(args: list[str] | None = None) -> UnlearnCLI:
    """Entry point of `python -m unlearn`; a run stopped by SIGTERM exits 143, as a killed process does, not 0."""
    try:
        return UnlearnCLI(
            UnlearnModule,
            UnlearnDataModule,
            subclass_mode_model=True,
            save_config_callback=SaveConfig,
            trainer_class=UnlearnTrainer,
            seed_everything_default=0,
            args=args,
        )
    except SIGTERMException:  # Lightning stops at the next step on SIGTERM with a SystemExit whose code is 0
        print("stopped by SIGTERM before the run finished: no metrics.json or model was written", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
