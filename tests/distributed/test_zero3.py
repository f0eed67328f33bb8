"""DeepSpeed ZeRO-3 on two CPU processes: the losses, export and resume of one process at the same global batch."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

CONFIG = """
seed_everything: 0
trainer:
  accelerator: cpu
  max_steps: 10
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: {root}/logs, name: run}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {root}/checkpoints, save_on_train_epoch_end: true, save_top_k: -1}}
{extra}
data:
  forget: {{class_path: unlearn.data.sources.SyntheticQA, init_args: {{split: forget05}}}}
  retain: {{class_path: unlearn.data.sources.SyntheticQA, init_args: {{split: retain}}}}
"""
NPO = """
model:
  class_path: unlearn.methods.NPO
  init_args:
    model: tiny-target
    reference: cached
    optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 1.0e-3}}
"""
# RMU, and an evaluator whose 25 rows per task split 13 / 12 over two ranks in batches of 4: the ranks run
# different numbers of forwards and generations, which ZeRO-3 must keep paired.
RMU = """
    - class_path: unlearn.eval.SyntheticEvaluator
      init_args: {forget: forget05, retain: retain, limit: 25, batch_size: 4, progress: false}
model:
  class_path: unlearn.methods.RMU
  init_args:
    model: tiny-target
    layer: 2
    steering_coeff: 100.0
    retain_weight: 2.0
    trainable_param: mlp
    optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 3.0e-3}}
"""


def fit(root: Path, *args: str, method: str = NPO, subcommand: str = "fit") -> list[float]:
    """Run `python -m unlearn fit` (or `test`) in a fresh process (Lightning launches the other rank); the losses."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "input.yaml").write_text(CONFIG.format(root=root, extra=method.rstrip()))
    command = [
        sys.executable,
        "-m",
        "unlearn",
        subcommand,
        "--config",
        str(root / "input.yaml"),
        "--trainer.default_root_dir",
        str(root),
        *args,
    ]
    # A build lock left by a killed run: DeepSpeed must not wait on its CPU shared-memory op (it hung CI for 900 s).
    extensions = root / "torch_extensions"
    (extensions / "deepspeed_shm_comm").mkdir(parents=True, exist_ok=True)
    (extensions / "deepspeed_shm_comm" / "lock").touch()
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    if subcommand == "test":
        return []
    logs = sorted((root / "logs" / "run").glob("version_*/metrics.csv"))[-1]
    return [float(row["train/loss"]) for row in csv.DictReader(logs.open()) if row.get("train/loss")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process with global batch 8; two ZeRO-3 ranks with 4 each; the latter resumed after its first epoch."""
    base = tmp_path_factory.mktemp("zero3")
    zero3 = ["--trainer.devices", "2", "--trainer.strategy", "deepspeed_stage_3_cpu", "--data.batch_size", "4"]
    single = fit(base / "single", "--data.batch_size", "8")
    sharded = fit(base / "sharded", *zero3)
    epoch_end = next((base / "sharded" / "checkpoints").glob("epoch=0-*"))
    resumed = fit(base / "resumed", *zero3, "--ckpt_path", str(epoch_end))
    frozen = fit(base / "frozen", *zero3, "--model.init_args.reference", "frozen")
    zero2 = fit(base / "zero2", *zero3, "--trainer.strategy", "deepspeed_stage_2_cpu")
    fused = fit(
        base / "fused", *zero3, "--model.init_args.reference", "frozen", "--model.init_args.fused_logprob", "true"
    )
    return base, single, sharded, resumed, frozen, zero2, fused


def test_zero3_on_two_ranks_trains_like_one_process(runs):
    _, single, sharded, _, frozen, zero2, fused = runs
    assert len(single) == len(sharded) == len(frozen) == len(zero2) == len(fused) == 10
    assert sharded == pytest.approx(single, abs=1e-3)
    assert zero2 == pytest.approx(single, abs=1e-3), "ZeRO-2 (states partitioned, weights whole) too"
    assert fused == pytest.approx(single, abs=1e-3), "the fused lm-head path reads the partitioned head weight"
    assert frozen == pytest.approx(single, abs=1e-3), "a partitioned frozen reference scores like the cache"
    assert single[-1] < single[0] - 1, "the runs must actually train"


def test_zero3_export_is_the_full_model(runs):
    base, *_ = runs
    exported = AutoModelForCausalLM.from_pretrained(base / "sharded" / "model")
    expected = AutoModelForCausalLM.from_pretrained(base / "single" / "model")
    for (name, value), (_, reference) in zip(exported.state_dict().items(), expected.state_dict().items(), strict=True):
        assert value.shape == reference.shape, f"{name} was saved partitioned"
        torch.testing.assert_close(value, reference, atol=2e-3, rtol=0, msg=f"{name} differs")


def test_deepspeed_checkpoints_leave_the_frozen_reference_out(runs):
    base, *_ = runs
    files = sorted((base / "frozen" / "checkpoints").glob("*/checkpoint/*model_states.pt"))  # per rank and epoch
    assert len(files) >= 2
    for states in files:
        module = torch.load(states, map_location="cpu", weights_only=False)["module"]
        assert any(k.startswith("model.") for k in module)
        assert not any(k.startswith("reference.") for k in module), "the frozen copy is rebuilt, not saved"


def test_a_resumed_zero3_run_ends_where_the_uninterrupted_one_does(runs):
    _, _, sharded, resumed, *_ = runs
    steps_per_epoch = 7  # 50 forget rows in global batches of 8
    assert resumed == pytest.approx(sharded[steps_per_epoch:], abs=1e-6)


@pytest.fixture(scope="module")
def rmu_runs(tmp_path_factory):
    """RMU (activation losses, a truncated frozen reference, forwards stopped at the hooked layer) with evaluation."""
    base = tmp_path_factory.mktemp("zero3_rmu")
    zero3 = ["--trainer.devices", "2", "--trainer.strategy", "deepspeed_stage_3_cpu", "--data.batch_size", "4"]
    single = fit(base / "single", "--data.batch_size", "8", method=RMU)
    sharded = fit(base / "sharded", *zero3, method=RMU)
    exported = ["--model.init_args.model", str(base / "sharded" / "model")]
    fit(base / "tested", *zero3, *exported, method=RMU, subcommand="test")
    metrics = [json.loads((base / run / "metrics.json").read_text()) for run in ("single", "sharded", "tested")]
    return single, sharded, metrics


def test_zero3_rmu_on_two_ranks_trains_and_evaluates_like_one_process(rmu_runs):
    single, sharded, (one, two, tested) = rmu_runs
    assert len(single) == len(sharded) == 10
    assert sharded == pytest.approx(single, abs=1e-3)
    assert single[-1] < single[0], "the runs must actually train"
    assert two["before"] == one["before"], "sharded evaluation of the same model must give the same numbers"
    assert two["after"] == pytest.approx(one["after"], abs=1 / 25), "at most one of 25 answers may flip"
    assert tested["after"] == pytest.approx(two["after"], abs=1 / 25), "`unlearn test` of the export on 2 ranks"
