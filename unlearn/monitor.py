"""What a run shows and records while it trains: a parameter summary, a one-line step bar and CSV training curves in
the run folder.

The CLI makes all three the default (unlearn.cli.UnlearnCLI.instantiate_trainer): `trainer.enable_model_summary:
false` turns the summary off, `trainer.enable_progress_bar: false` the bar, `trainer.logger: false` the curves; another
logger (TensorBoard, W&B) replaces the CSV one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import ModelSummary, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from unlearn.io import prepare_output

LOSS = "train/loss"  # what every method logs as its training objective (UnlearnModule.training_step)


class ParameterSummary(ModelSummary):
    """Lightning's summary of the method's modules without its FLOPs column, which reads 0 for every method (Lightning
    counts FLOPs only from an `example_input_array`, which a method cannot have: its batches are role dictionaries)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        """The modules' table (name, type, parameters, train/eval mode) and the parameter counts, as plain text."""
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        widths = [max(len(name), *map(len, values)) for name, values in columns]
        rows = [[name for name, _ in columns], *zip(*(values for _, values in columns), strict=True)]
        lines = [" | ".join(map(str.ljust, row, widths)).rstrip() for row in rows]
        counts = {
            "Trainable params": trainable_parameters,
            "Non-trainable params": total_parameters - trainable_parameters,
            "Total params": total_parameters,
        }
        lines += [f"{get_human_readable_count(int(count)):<10}{label}" for label, count in counts.items()]
        lines.append(f"{model_size:<10.1f}Total estimated model params size (MB)")
        rank_zero_info("\n".join(lines))


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar counting optimizer steps out of the run's total (max_steps), with the loss only.

    `train  37/80 |███▋     | [00:12<00:14,  3.10step/s, loss=1.234]`: one line that fits 80 columns, where
    Lightning's default reads "Epoch 0/-2" under max_steps and lists every logged term (they are in the CSV log).
    Bars go to stderr, as the evaluators' do, so stdout holds the results only.
    """

    BAR_FORMAT = "{desc} {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

    def __init__(self, refresh_rate: int = 1, process_position: int = 0) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=False)

    def _tqdm(self, desc: str, position: int = 0, leave: bool = True, **kwargs: Any) -> Tqdm:
        return Tqdm(
            desc=desc,
            position=2 * self.process_position + position,
            disable=self.is_disabled,
            leave=leave,
            dynamic_ncols=True,
            file=sys.stderr,
            bar_format=self.BAR_FORMAT,
            **kwargs,
        )

    @property
    def sanity_check_description(self) -> str:
        """The sanity check bar's name, short so that the line fits 80 columns."""
        return "sanity check"

    @property
    def validation_description(self) -> str:
        """The validation bar's name, short so that the line fits 80 columns."""
        return "validate"

    def init_train_tqdm(self) -> Tqdm:
        """The run's one step bar, counting optimizer steps (on from the checkpoint's when resumed)."""
        total = convert_inf(self.trainer.estimated_stepping_batches)
        step = self.trainer.global_step  # resumed: counts on from the checkpoint's step
        return self._tqdm("train", unit="step", smoothing=0, total=total, initial=step)

    def init_sanity_tqdm(self) -> Tqdm:
        """The sanity check's bar, gone once it is done."""
        return self._tqdm(self.sanity_check_description, leave=False, unit="batch")

    def init_validation_tqdm(self) -> Tqdm:
        """The validation bar: below the step bar on a terminal, on a line of its own in a log file."""
        has_main_bar = self.trainer.state.fn != "validate"
        below = has_main_bar and sys.stderr.isatty()  # a second line needs cursor moves, junk in a log file
        return self._tqdm(self.validation_description, position=int(below), leave=not has_main_bar, unit="batch")

    def init_test_tqdm(self) -> Tqdm:
        """The test bar, in the step bar's format."""
        return self._tqdm("test", unit="batch")

    def init_predict_tqdm(self) -> Tqdm:
        """The predict bar, in the step bar's format."""
        return self._tqdm("predict", unit="batch", smoothing=0)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Lightning's, without the " DataLoader 0" it adds to the name (validation here has one loader)."""
        if self.has_dataloader_changed(dataloader_idx):
            desc = self.sanity_check_description if trainer.sanity_checking else self.validation_description
            self.val_progress_bar.set_description_str(desc, refresh=False)
            self.val_progress_bar.reset(total=convert_inf(self.total_val_batches_current_dataloader))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """One bar for the whole run: its total is the run's optimizer steps, whatever the epochs."""
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        """Nothing: the bar counts steps across epochs (Lightning's resets it per epoch)."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        """Moves the bar to the optimizer step with the loss, and closes it at the last step."""
        bar, step = self.train_progress_bar, trainer.global_step
        if bar is not None and not bar.disable and self._should_update(step, bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)
            if bar.total is not None and step >= bar.total:
                bar.close()  # done: Lightning's "`Trainer.fit` stopped" note goes on a line of its own

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keeps the bar open across epochs (Lightning's closes it), updating its loss."""
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, str]:
        """The loss, to 4 significant digits; every other logged term is in the CSV log."""
        loss = trainer.progress_bar_metrics.get(LOSS)
        return {} if loss is None else {"loss": f"{float(loss):.4g}"}


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing `<save_dir>/logs/metrics.csv` (one row per logged step) and `hparams.yaml`.

    No version folders: an earlier `logs/` is moved aside as the run starts, as every output of a run is
    (unlearn.io), rather than Lightning's deleting its metrics.csv. Checkpoints without a `dirpath` stay in
    `<save_dir>/checkpoints`, where they went without a logger.
    """

    def __init__(self, save_dir: str, folder: str = "logs", flush_logs_every_n_steps: int = 100) -> None:
        """
        Args:
            save_dir: the run folder (trainer.default_root_dir).
            folder: the logs' folder in it.
            flush_logs_every_n_steps: rows kept in memory between writes to metrics.csv (all are written at the end).
        """
        super().__init__(save_dir, name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)
        self.folder = folder

    @property
    def log_dir(self) -> str:
        """`<save_dir>/logs`, with no version folder: a run's logs sit with its other outputs."""
        return str(Path(self.save_dir) / self.folder)

    @property
    @rank_zero_experiment
    def experiment(self):
        """Lightning's writer, an earlier logs/ moved aside first, as every output of a run is."""
        if self._experiment is None:  # Lightning asks for it first thing, before the callbacks' setup
            prepare_output(Path(self.log_dir), "trainer.default_root_dir", move=True)  # rank zero's
        return super().experiment
