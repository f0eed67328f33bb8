"""`python -m unlearn {fit,validate,test} --config X.yaml`: LightningCLI over every method and the data module."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.methods import UnlearnModule


class UnlearnCLI(LightningCLI):
    """The method is chosen by `model.class_path`; the data module reads the model's tokenizer."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.init_args.model", "data.tokenizer", apply_on="parse")


def main(args: list[str] | None = None) -> UnlearnCLI:
    """Entry point of `python -m unlearn`."""
    return UnlearnCLI(
        UnlearnModule,
        UnlearnDataModule,
        subclass_mode_model=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
