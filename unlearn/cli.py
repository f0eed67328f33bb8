"""`python -m unlearn {fit,validate,test,attack} --config X.yaml`: LightningCLI over the methods and data module."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
from jsonargparse import ActionConfigFile
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from unlearn.checks import UsageError, refuse
from unlearn.config import compose
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.io import prepare_output
from unlearn.methods import UnlearnModule
from unlearn.monitor import ParameterSummary, RunCSVLogger, StepProgressBar
from unlearn.robustness.trainer import UnlearnTrainer
from unlearn.strategies import register_cpu_presets
from unlearn.validate import settings_problems

DEBUG = "UNLEARN_DEBUG"  # set to 1 (or pass --debug) for the traceback of a user error
USER_ERRORS = (ValueError, OSError, MisconfigurationException)  # the project's own checks raise these, not bugs


class Parser(LightningArgumentParser):
    """Lightning's parser, whose errors print one paragraph and exit 2 without the 55-line usage dump."""

    def error(self, message: str, ex: Exception | None = None):
        """A bad argument as one paragraph and exit status 2, not the usage dump (raised when debugging)."""
        if not self.exit_on_error or debugging():
            raise ArgumentError(None, message) from ex
        print(paragraph(f"{message} (--print_config shows every setting, --help lists them)"), file=sys.stderr)
        raise SystemExit(2)


class ComposedConfigFile(ActionConfigFile):
    """`--config` whose file may name parents under `defaults:`: jsonargparse then reads the merged YAML."""

    def __call__(self, parser, cfg, values, option_string=None) -> None:
        try:
            values = compose(values)
        except (OSError, ValueError) as error:
            raise ArgumentError(self, str(error)) from error
        self.apply_config(parser, cfg, self.dest, values)


class SaveConfig(SaveConfigCallback):
    """Lightning's config.yaml, but in the run folder (Lightning's goes to the logger's folder) and an earlier one
    moved aside (as every output of a run is), never overwritten."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Saves config.yaml in the run folder once, an earlier one moved aside, and tells every rank so."""
        if self.already_saved:
            return
        path = Path(trainer.default_root_dir) / self.config_filename
        prepare_output(path, "trainer.default_root_dir", move=trainer.is_global_zero)
        if trainer.is_global_zero:
            self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)  # every rank knows, as Lightning's


class UnlearnCLI(LightningCLI):
    """The method is chosen by `model.class_path`; the data module reads the model's tokenizer and prompt format."""

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        """LightningCLI's parser with a `--config` that composes (every subcommand's parser is made here)."""
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={pl.__version__}"])
        parser = Parser(**kwargs)
        parser.add_argument("-c", "--config", action=ComposedConfigFile, help="Path to a YAML config, or YAML text.")
        return parser

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands and `attack` (UnlearnTrainer.attack: a robustness attack, unlearn.robustness)."""
        return {**LightningCLI.subcommands(), "attack": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser) -> None:
        """The data module takes the model's tokenizer and prompt format, so the two cannot disagree."""
        parser.link_arguments("model.init_args.model", "data.tokenizer", apply_on="parse")
        parser.link_arguments("model.init_args.prompt_format", "data.prompt_format", apply_on="parse")
        parser.set_defaults({"trainer.log_every_n_steps": 1})  # a curve point per step: runs are short

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        """Lightning's, with the run's defaults: the training curves in `<default_root_dir>/logs/metrics.csv` unless
        `trainer.logger` names another logger (or false); a one-line step bar and a parameter summary without
        Lightning's FLOPs column (unlearn.monitor) unless `trainer.enable_progress_bar` or `enable_model_summary` is
        false or the config's callbacks hold one of their own; the CPU DeepSpeed presets registered so
        `trainer.strategy` can name them."""
        register_cpu_presets()
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = RunCSVLogger(config.get("default_root_dir") or os.getcwd())
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        ours = []
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            ours.append(StepProgressBar())
        if config.get("enable_model_summary", True) is not False and not any(
            isinstance(c, ModelSummary) for c in callbacks
        ):
            ours.append(ParameterSummary())
            kwargs["enable_model_summary"] = False  # Lightning's default summary off: no "already configured" note
        if ours:
            kwargs.setdefault("callbacks", [*callbacks, *ours])
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        """Lightning's, refused with one error listing every problem found before any model loads: the config's
        cross-cutting ones, a class's own (the first class to fail stops the building) and the method/data match."""
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        problems = settings_problems(config, self.subcommand)
        try:
            super().instantiate_classes()
        except (ValueError, MisconfigurationException) as error:
            if not (problems and isinstance(error, MisconfigurationException)):  # the Trainer's checks repeat ours
                problems += _problems(innermost(error))
            refuse(problems)
        if self.subcommand == "fit":
            problems += self.model.missing_data(self.datamodule)
        refuse(problems)


def innermost(error: BaseException) -> BaseException:
    """The first error of a chain: a class's own, not jsonargparse's "Does not validate ..." around it."""
    while isinstance(error.__cause__ or error.__context__, ValueError):
        error = error.__cause__ or error.__context__
    return error


def _problems(error: BaseException) -> list[str]:
    """The problems an error reports: a UsageError's list, or its one message."""
    return error.problems if isinstance(error, UsageError) else [str(error)]


def paragraph(message: str) -> str:
    """`error: <message>` as one paragraph (no blank lines), with how to see the traceback."""
    lines = [line for line in f"error: {message}".splitlines() if line.strip()]
    return "\n".join([*lines, f"(set {DEBUG}=1 or pass --debug for the traceback)"])


def debugging() -> bool:
    """Whether a user error should show its traceback."""
    return os.environ.get(DEBUG, "") not in ("", "0")


class _DropMessages(logging.Filter):
    """Drops a library logger's records that start with any of `prefixes`."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


LIBRARY_NOISE = {
    # Lightning's advertisements for its cloud services (LitLogger, LitModels), printed on every run.
    "lightning.pytorch.utilities.rank_zero": _DropMessages("💡 Tip:"),
    # DeepSpeed, imported to check for ZeRO-3 when a model is saved, on a machine without a GPU: Lightning's
    # "GPU available: False" line already says so, and the CPU strategies say nothing else to configure.
    "DeepSpeed": _DropMessages("Setting accelerator to CPU"),
}


def quiet_library_noise() -> None:
    """Silence, at the entry point, what libraries print on every run that asks nothing of the user; what a user can
    act on (our own warnings, Lightning's about the settings, a run stopped early) is kept."""
    # Lightning's CombinedLoader flattens every dataloader with torch's deprecated LeafSpec (in
    # lightning.pytorch.utilities._pytree): a note to Lightning's authors, nothing whoever runs the command can change.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    for name, drop in LIBRARY_NOISE.items():
        library = logging.getLogger(name)
        if drop not in library.filters:
            library.addFilter(drop)


def main(args: list[str] | None = None) -> UnlearnCLI:
    """Entry point of `python -m unlearn`; a run stopped by SIGTERM exits 143, as a killed process does, not 0; a user
    error prints one paragraph and exits 2 when refused before the run starts (UsageError), 1 when found later."""
    quiet_library_noise()
    args = None if args is None else list(args)
    take_debug_flag(sys.argv if args is None else args)  # Lightning warns when given args as well as a command line
    try:
        with user_errors():
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


def take_debug_flag(argv: list[str]) -> None:
    """`--debug` anywhere on a command line: removed, and user errors show their traceback in this process."""
    if "--debug" in argv:
        argv.remove("--debug")
        os.environ[DEBUG] = "1"


@contextmanager
def user_errors() -> Iterator[None]:
    """A user error printed as one paragraph, exiting 2 when refused before the run starts (UsageError), 1 when found
    later; raised as it is, traceback and all, when debugging."""
    try:
        yield
    except USER_ERRORS as error:
        if debugging():
            raise
        print(paragraph(str(error)), file=sys.stderr)
        raise SystemExit(2 if isinstance(error, UsageError) else 1) from None
