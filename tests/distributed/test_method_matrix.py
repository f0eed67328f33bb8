"""Every shipped method, two steps on two gloo ranks (DDP, ZeRO-2, ZeRO-3 on CPU), against one process.

The global batch is 4 rows either way (2 per rank), so each step's logged terms (`train/*`, averaged over the ranks as
`sync_dist` logs them) and each trained weight must be the one process's. Methods that cannot run under a strategy
must refuse it before any step, with an error naming the strategy.

What it found, fixed with it: LoRA under ZeRO-3 began with B ≠ 0 (PEFT initialised partitioned, empty tensors); ELM
under ZeRO-3 recursed in AdaptersOff.__getattr__; ELM's fluency samples depended on the world size (now one random
stream per row); TAR's simulated attack trained on each rank's own rows (its step-0 loss was -0.270 against one
process's -0.249; now every rank attacks with the gradient averaged over the ranks). Not fixed: RR's first step
follows rounding noise (a strict xfail, see RR_NOISE).

Cost: one spawned 2-rank job runs the whole matrix (a Trainer per method and strategy inside each rank) and one pass
in this process gives the references, so process start-up, imports and the gloo group are paid once.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import time
import traceback
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.cli import LightningArgumentParser

from tests.helpers import CONFIGS
from unlearn.checks import UsageError
from unlearn.config import load_config
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.methods import UnlearnModule
from unlearn.strategies import full_state_dict, register_cpu_presets

# Every configs/*.yaml that trains a method: each method class and adapter variant the project ships.
METHODS = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem not in {"eval_full", "probabilistic"})
# FineTune is named by eval_full.yaml / probabilistic.yaml (for `test`); it trains on retain rows, given here.
FINETUNE = {"class_path": "unlearn.methods.FineTune", "init_args": {"model": "tiny-target"}}
RETAIN = {"class_path": "unlearn.data.sources.SyntheticQA", "init_args": {"split": "retain"}}
NAMES = [*METHODS, "finetune"]
STRATEGIES = ["ddp", "deepspeed_stage_2_cpu", "deepspeed_stage_3_cpu"]
GLOBAL_BATCH = 4
STEPS = 2
# What each method must refuse, and a phrase its error must hold: NPO+SAM perturbs whole weights by the whole gradient
# and TAR copies them for its simulated attack (one device or DDP only); GRUN reads its weights from hooks, outside
# the modules ZeRO-3 gathers them for.
REFUSED = {
    ("npo_sam", "deepspeed_stage_2_cpu"): "NPOSAM perturbs every trainable weight",
    ("npo_sam", "deepspeed_stage_3_cpu"): "NPOSAM perturbs every trainable weight",
    ("grun_npo", "deepspeed_stage_3_cpu"): "cannot run under a ZeRO-3 strategy",
    ("grun_rmu", "deepspeed_stage_3_cpu"): "cannot run under a ZeRO-3 strategy",
    ("tar", "deepspeed_stage_2_cpu"): "TAR copies every trainable weight",
    ("tar", "deepspeed_stage_3_cpu"): "TAR copies every trainable weight",
}
# Tolerances. Everything is float32; two ranks sum the same rows in another order (token sums per rank, then an
# all-reduce of the means and of the gradients), which moves a result by a few ulps of its largest summand: ~1e-6
# relative. After one AdamW step that noise is amplified where a gradient is near zero (Adam divides by sqrt(v)), so
# the second step's terms get rel 1e-4, with abs 1e-6 for terms that are themselves ~0 (a retain KL of 1e-5).
# Weights: the update of the two steps (trained − initial) must match the one process's to 1e-2 of its norm. Adam
# normalises each gradient element, so an element whose gradient is ~0 moves by up to ~lr in a direction rounding
# picks: most methods agree to ~1e-5, DPO / AltPO / RMU+LAT (chosen and rejected answers share their prompt; PGD steps
# are normalised) to <1e-3, ELM to 3.4e-3 (all of it in one LoRA A, layer 2's k_proj, behind a B that is ~0). A real
# error (another rank's rows, a missing all-reduce) is O(1) of the norm: RR's rounding-driven first step is off by 0.73.
LOSS_REL, LOSS_ABS, UPDATE_REL = 1e-4, 1e-6, 1e-2


class Diverged(AssertionError):
    """Step 0 agreed with the one process; a later step or the trained weights did not."""


# RR starts where its loss has no gradient: policy = reference, so cos = 1 is ReLU(cos)'s maximum (gradient 0 up to
# rounding, norm ~1e-8 on the tiny target, below AdamW's eps) and the schedule's c_r is 0 at step 0. AdamW turns that
# rounding noise into a step of up to ~4% of lr per weight, so where RR goes first depends on the reduction order
# (world size, threads, kernels): step 0 agrees; step 1's retain term and the update do not (update off by ~0.7).
RR_NOISE = "RR's first step follows float rounding noise (zero gradient at the start), not the data"
# Each known bug with what it must raise: RR agrees at step 0 and then diverges.
KNOWN_BUGS: dict[tuple[str, str], tuple[str, type[AssertionError]]] = {
    **{("rr", strategy): (RR_NOISE, Diverged) for strategy in STRATEGIES},
}


def spec(name: str, world: int) -> dict:
    """The model and data sections of configs/<name>.yaml (its defaults merged), at global batch 4 over `world`."""
    if name == "finetune":
        model, data = FINETUNE, {"retain": RETAIN}
    else:
        config = load_config(CONFIGS / f"{name}.yaml")
        # forget01 for the configs' forget10 (every source that reads it: Refusals, Mixture): two steps read 8 rows,
        # and the passes over the whole forget set (NPO's and DPO's cached reference, AltPO's sampled alternates) cost
        # a tenth, most of all under ZeRO-3, where every forward gathers the weights.
        model, data = config["model"], json.loads(json.dumps(config["data"]).replace('"forget10"', '"forget01"'))
    data |= {"tokenizer": model["init_args"]["model"], "batch_size": GLOBAL_BATCH // world}
    return {"model": model, "data": data}


def build(name: str, world: int, root: Path) -> tuple[UnlearnModule, UnlearnDataModule]:
    """The method and data module configs/<name>.yaml gives, built by jsonargparse as the CLI builds them."""
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(UnlearnModule, "model", subclass_mode=True)
    parser.add_lightning_class_args(UnlearnDataModule, "data")
    config = spec(name, world)
    config["model"] = {**config["model"], "init_args": {**config["model"]["init_args"], "save_dir": str(root)}}
    built = parser.instantiate(parser.parse_object(config))
    return built.model, built.data


class Recorder(L.Callback):
    """The synced `train/*` terms of every step, and the trainable weights (gathered under ZeRO-3) before and after."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.weights: dict[str, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})

    def on_train_start(self, trainer, module) -> None:
        self.weights["start"] = trainable(module)

    def on_train_end(self, trainer, module) -> None:
        self.weights["end"] = trainable(module)


def trainable(module: UnlearnModule) -> dict[str, torch.Tensor]:
    """Copies of the whole trainable weights (every rank must call it: ZeRO-3 gathers them)."""
    names = {name for name, param in module.model.named_parameters() if param.requires_grad}
    return {name: t.detach().clone() for name, t in full_state_dict(module.model).items() if name in names}


def run(name: str, world: int, strategy: str, root: Path) -> dict:
    """Two steps of configs/<name>.yaml alone or on one of two ranks: its steps' terms and weights, or its refusal."""
    L.seed_everything(0, verbose=False)  # adapters draw their initial weights, ELM its fluency samples
    module, data = build(name, world, root / "model")
    recorder = Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy=strategy if world > 1 else "auto",
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[recorder],
    )
    try:
        trainer.fit(module, datamodule=data)
    except UsageError as error:
        return {"refused": str(error), "steps": recorder.steps}
    return {"steps": recorder.steps, **recorder.weights}


def update(result: dict) -> torch.Tensor:
    """The trained − initial trainable weights, flattened in name order."""
    return torch.cat([(result["end"][k] - result["start"][k]).flatten() for k in sorted(result["end"])])


def start(result: dict) -> torch.Tensor:
    return torch.cat([result["start"][k].flatten() for k in sorted(result["start"])])


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    """Every method in this process at global batch 4; each result saved for the ranks to compare against."""
    root = tmp_path_factory.mktemp("single")
    began = time.perf_counter()
    paths = {}
    for name in NAMES:
        result = run(name, 1, "auto", root / name)
        paths[name] = root / f"{name}.pt"
        torch.save({"steps": result["steps"], "start": start(result), "update": update(result)}, paths[name])
        del result
        gc.collect()
    print(f"one process: {time.perf_counter() - began:.0f} s")
    return paths


def _rank(rank: int, port: int, root: str, references: dict[str, Path], results) -> None:
    """Rank `rank` of the matrix, joined as if torchrun had started it: every strategy, every method in turn."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", NODE_RANK="0", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    register_cpu_presets()  # STRATEGIES names them
    for strategy in STRATEGIES:  # ZeRO-3 last: a model loaded under it leaves transformers' ZeRO-3 flag behind it
        for name in NAMES:
            results[(strategy, name, rank)] = compare(attempt(name, strategy, Path(root)), references[name])
            gc.collect()


def attempt(name: str, strategy: str, root: Path) -> dict:
    """`run` on two ranks, its error reported rather than raised: the other methods still run."""
    try:
        return run(name, 2, strategy, root / strategy / name)
    except Exception as error:  # noqa: BLE001  reported per parametrisation
        trace = "".join(traceback.format_exception(error)[-6:])
        return {"error": f"{type(error).__name__}: {error}"[:1000] + "\n" + trace[-3000:], "steps": []}


def compare(outcome: dict, reference_path: Path) -> dict:
    """What a rank reports: its steps, refusal or error, whether both ranks hold the same trained weights, and how
    far the initial weights and the update are from the one process's."""
    trained = torch.tensor(float("start" in outcome))
    dist.all_reduce(trained, dist.ReduceOp.MIN)  # a collective below only if both ranks trained
    if not trained:
        return {key: value for key, value in outcome.items() if key in ("steps", "refused", "error")}
    reference = torch.load(reference_path)
    initial, moved = start(outcome), update(outcome)
    high, low = moved.clone(), moved.clone()
    dist.all_reduce(high, dist.ReduceOp.MAX)
    dist.all_reduce(low, dist.ReduceOp.MIN)
    return {
        "steps": outcome["steps"],
        "ranks_agree": bool(torch.equal(high, low)),
        "same_start": bool(torch.equal(initial, reference["start"])),
        "update_error": float((moved - reference["update"]).norm() / reference["update"].norm().clamp(min=1e-30)),
        "update_norm": float(moved.norm()),
    }


@pytest.fixture(scope="module")
def matrix(references, tmp_path_factory) -> dict:
    """The one 2-rank job over every strategy and method; killed after 15 minutes rather than hang CI."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path_factory.mktemp("ranks")
    results = mp.Manager().dict()
    began = time.perf_counter()
    context = mp.start_processes(_rank, args=(port, str(root), references, results), nprocs=2, join=False)
    deadline = began + 900
    while not context.join(timeout=5):
        if time.perf_counter() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-rank matrix ran past 15 minutes (a collective waiting forever?)")
    print(f"two ranks, {len(STRATEGIES)} strategies: {time.perf_counter() - began:.0f} s")
    return dict(results)


def cases() -> list:
    """(strategy, method) for the whole matrix; a known multi-rank bug is a strict xfail, named by its reason."""
    found = []
    for strategy in STRATEGIES:
        for name in NAMES:
            bug = KNOWN_BUGS.get((name, strategy))
            marks = [pytest.mark.xfail(strict=True, raises=bug[1], reason=bug[0])] if bug else []
            found.append(pytest.param(strategy, name, id=f"{strategy}-{name}", marks=marks))
    return found


@pytest.mark.parametrize(("strategy", "name"), cases())
def test_two_ranks_train_like_one_process(matrix, references, strategy, name):
    ranks = [matrix[(strategy, name, rank)] for rank in (0, 1)]
    for rank, outcome in enumerate(ranks):
        assert "error" not in outcome, f"rank {rank}: {outcome['error']}"
    if (name, strategy) in REFUSED:
        for outcome in ranks:
            assert "refused" in outcome, f"{name} must refuse {strategy}, but trained"
            assert REFUSED[(name, strategy)] in outcome["refused"] and outcome["steps"] == [], outcome
        return
    assert "refused" not in ranks[0], ranks[0]["refused"]
    reference = torch.load(references[name])
    single, sharded = reference["steps"], ranks[0]["steps"]
    assert ranks[1]["steps"] == sharded, "the synced terms must be the same on both ranks"
    assert len(single) == len(sharded) == STEPS
    assert sharded[0].keys() == single[0].keys()
    assert sharded[0] == pytest.approx(single[0], rel=LOSS_REL, abs=LOSS_ABS), "step 0 (the same weights)"
    assert ranks[0]["same_start"], "the ranks started from other weights than the one process"
    assert ranks[0]["ranks_agree"], "the ranks' trained weights differ"
    assert ranks[0]["update_norm"] > 0, "nothing trained"
    for step in range(1, STEPS):
        if sharded[step] != pytest.approx(single[step], rel=LOSS_REL, abs=LOSS_ABS):
            raise Diverged(f"step {step}: two ranks {sharded[step]}, one process {single[step]}")
    if not ranks[0]["update_error"] < UPDATE_REL:
        raise Diverged(f"the update of the weights is off by {ranks[0]['update_error']:.2e} of its norm")
