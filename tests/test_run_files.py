"""What a run leaves in its folder: a result only when finished, nothing earlier overwritten, the exit code to match."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import EARLIER, earlier_result, quick_config
from unlearn.cli import main

FAST_GA = ["--model.init_args.optimizer.init_args.lr", "0.02"]  # GA at a rate that moves the numbers in 2 steps


def with_checkpoints(config: Path, folder: Path) -> Path:
    """The config with a Lightning checkpoint saved into `folder` after every training step."""
    settings = yaml.safe_load(config.read_text())
    settings["trainer"]["enable_checkpointing"] = True
    checkpoint = {"dirpath": str(folder), "every_n_train_steps": 1}
    settings["trainer"]["callbacks"].append(
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": checkpoint}
    )
    config.write_text(yaml.safe_dump(settings))
    return config


def result(tmp_path: Path) -> dict:
    """The run's metrics.json."""
    return json.loads((tmp_path / "run" / "metrics.json").read_text())


def assert_earlier_result_moved_aside(run: Path) -> None:
    """Each earlier output is in one `<name>.prev-*`, unchanged."""
    for name, text in EARLIER.items():
        top, _, inner = name.partition("/")
        (backup,) = run.glob(f"{top}.prev-*")
        assert (backup / inner if inner else backup).read_text() == text


def test_sigterm_during_fit_exits_nonzero_and_leaves_no_result(tmp_path):
    run, checkpoints = tmp_path / "run", tmp_path / "checkpoints"
    earlier_result(run)
    config = with_checkpoints(quick_config(tmp_path, "ga", steps=100_000), checkpoints)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "unlearn", "fit", "--config", str(config)]
    with (tmp_path / "stderr.txt").open("w") as stderr:  # a file: a full pipe would stall the run
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 120
        while not any(checkpoints.glob("*.ckpt")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # a checkpoint: training has started
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in err
    assert not (run / "metrics.json").exists() and not (run / "model").exists()
    assert_earlier_result_moved_aside(run)


def test_ctrl_c_while_saving_leaves_no_metrics(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("unlearn.methods.base.atomic_save_dir", interrupt)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(quick_config(tmp_path))])
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C from then on
    assert exit_info.value.code == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_finished_result_is_complete_with_the_whole_config_and_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        main(["fit", "--config", str(quick_config(tmp_path))])
    finally:
        os.umask(umask)
    fitted, run = result(tmp_path), tmp_path / "run"
    assert fitted["complete"] is True
    resolved = fitted["resolved_config"]
    assert resolved["trainer"]["max_steps"] == 3 and resolved["data"]["batch_size"] == 16
    assert resolved["model"]["class_path"] == "unlearn.methods.NPO" and resolved["seed_everything"] == 0
    assert (run / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (run / "model").stat().st_mode & 0o777 == 0o755


def test_rerun_moves_every_earlier_output_aside(tmp_path):
    run = tmp_path / "run"
    earlier_result(run)
    main(["fit", "--config", str(quick_config(tmp_path))])
    assert_earlier_result_moved_aside(run)
    assert result(tmp_path)["complete"] and "max_steps: 3" in (run / "config.yaml").read_text()


def test_unwritable_save_dir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the model's folder should go")
    config = quick_config(tmp_path, save_dir=str(blocker / "sub" / "model"))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config)])
    out, err = capsys.readouterr()
    assert re.search(r"cannot write to .*file/sub .*model\.init_args\.save_dir", err)
    assert "evaluated" not in out, "checked before the model is evaluated or trained"
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_unwritable_run_folder_names_the_setting(tmp_path, capsys):
    (tmp_path / "file").write_text("a file where the run folder should go")
    config = quick_config(tmp_path)
    args = ["--trainer.default_root_dir", str(tmp_path / "file" / "run")]
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), *args])
    assert re.search(r"cannot write to .*file/run .*trainer\.default_root_dir", capsys.readouterr().err)


def first_run_with_checkpoint(tmp_path: Path) -> tuple[dict, Path]:
    """A 2-step GA run's metrics.json and its last checkpoint."""
    config = with_checkpoints(quick_config(tmp_path, "ga", steps=2), tmp_path / "checkpoints")
    main(["fit", "--config", str(config), *FAST_GA])
    first = result(tmp_path)
    assert first["before"] != first["after"], "the test needs a checkpoint whose numbers differ from the original's"
    (checkpoint,) = (tmp_path / "checkpoints").glob("*step=2.ckpt")
    return first, checkpoint


def resume(tmp_path: Path, checkpoint: Path) -> dict:
    """Two more steps from `checkpoint`; the resumed run's metrics.json."""
    main(["fit", "--config", str(quick_config(tmp_path, "ga", steps=4)), *FAST_GA, "--ckpt_path", str(checkpoint)])
    return result(tmp_path)


def test_resume_reports_the_original_before(tmp_path):
    first, checkpoint = first_run_with_checkpoint(tmp_path)
    resumed = resume(tmp_path, checkpoint)
    assert resumed["before"] == first["before"]
    assert resumed["items"]["before"] == first["items"]["before"]

    state = torch.load(checkpoint, weights_only=False)
    state["callbacks"] = {k: v for k, v in state["callbacks"].items() if "Evaluator" not in k}  # an older checkpoint
    torch.save(state, checkpoint)
    with pytest.warns(UserWarning, match="holds no 'before' numbers"):
        without = resume(tmp_path, checkpoint)
    assert "before" not in without and without["complete"]
