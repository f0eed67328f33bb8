"""What a run shows and records: bars named by task, a one-line step bar, CSV training curves, no library noise."""

import csv
import os
import re
import subprocess
import sys

import pytest
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from tests.helpers import CONFIGS, quick_config
from unlearn.cli import main
from unlearn.models import load_model

STEPS = 10
NOISE = {  # what libraries printed on every run before unlearn.cli.quiet_library_noise
    "torch's LeafSpec deprecation, raised inside Lightning": "isinstance(treespec, LeafSpec)",
    "Lightning's cloud advertisement": "litlogger",
    "DeepSpeed's accelerator note on a CPU machine": "Setting accelerator to CPU",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 10-step NPO fit through `python -m unlearn`, bars on, in an 80-column terminal, over an earlier result:
    its folder, stdout and stderr."""
    tmp = tmp_path_factory.mktemp("output")
    config = quick_config(tmp, steps=STEPS)
    folder = tmp / "run"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"complete": true}')
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80", "LINES": "24"}  # tqdm's width without a terminal
    command = [sys.executable, "-m", "unlearn", "fit", "--config", str(config), "--trainer.enable_progress_bar", "true"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done.stdout, done.stderr


def bar_lines(stderr: str) -> list[str]:
    """Every state a bar was drawn in (tqdm redraws a line after a carriage return)."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip()]


def test_train_bar_counts_steps_out_of_max_steps_in_80_columns(run):
    lines = bar_lines(run[2])
    train = [line for line in lines if line.startswith("train ")]
    assert train, "the training bar is drawn"
    assert any(f"{STEPS}/{STEPS}" in line and "loss=" in line for line in train), train[-3:]
    assert max(len(line) for line in train) <= 80, max(train, key=len)
    assert not any("Epoch" in line for line in lines), "Lightning's 'Epoch 0/-2' bar is gone"


def test_evaluation_bars_are_named_by_split_and_task(run):
    lines = bar_lines(run[2])
    for name in ("forget QA generate", "forget MCQ", "retain QA generate", "retain MCQ"):
        assert any(line.startswith(f"{name}: 100%") for line in lines), name
    assert not any(line.startswith(("generate:", "score choices:")) for line in lines), "no bar says only what it does"


def test_fit_writes_the_training_curves_as_csv(run):
    with (run[0] / "logs" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    train = [row for row in rows if row.get("train/loss")]
    assert [int(row["step"]) for row in train] == list(range(STEPS)), "one row per step"
    assert all(float(row["train/loss"]) > 0 for row in train)
    assert (run[0] / "logs" / "hparams.yaml").is_file()
    assert (run[0] / "config.yaml").is_file(), "config.yaml stays in the run folder, not the logger's"


def test_parameter_summary_counts_the_trained_weights_without_a_flops_column(run):
    """The quick NPO config trains every weight of tiny-target (its reference is cached: no frozen copy); the count
    here is taken independently, from the model itself."""
    weights = get_human_readable_count(sum(p.numel() for p in load_model("tiny-target").parameters()))
    out = run[1] + run[2]
    assert re.search(rf"^{re.escape(weights)} +Trainable params$", out, re.M), out[:2000]
    assert re.search(r"^0 +Non-trainable params$", out, re.M)
    assert re.search(r"^0 \| model +\| LlamaForCausalLM +\| " + re.escape(weights) + r" +\| train$", out, re.M)
    assert "FLOPs" not in out and "already configured" not in out, "Lightning's FLOPs column reads 0 for every method"


@pytest.mark.parametrize("what", NOISE)
def test_library_noise_is_silenced(run, what):
    assert NOISE[what] not in run[1] + run[2]


def test_what_a_user_needs_is_kept(run):
    err = run[2]
    assert "the earlier result was moved to" in err, "our own warnings stay"
    assert "`Trainer.fit` stopped: `max_steps=10` reached" in err and "GPU available" in err


def test_tensorboard_is_one_config_line(tmp_path, capsys):
    """README: a run logs to TensorBoard instead of CSV with one line under `trainer:`."""
    line = "  logger: {class_path: lightning.pytorch.loggers.TensorBoardLogger, init_args: {save_dir: runs/npo}}"
    overlay = tmp_path / "tensorboard.yaml"
    overlay.write_text(f"# TensorBoard\ntrainer:\n{line}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "npo.yaml"), "--config", str(overlay), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "lightning.pytorch.loggers.TensorBoardLogger" in capsys.readouterr().out
