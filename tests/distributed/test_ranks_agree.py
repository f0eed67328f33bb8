"""Two gloo ranks take the decisions one process would: one λ, one token mean, one NaN verdict, one SAM step."""

import os
import socket

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticPassages, SyntheticQA
from unlearn.losses import trajectory_weights
from unlearn.methods import CEU, NPOSAM, PDU, RMU
from unlearn.methods.base import UnlearnModule
from unlearn.methods.lora import LoRA
from unlearn.methods.tar import tamper_gradient
from unlearn.strategies import (
    average_over_ranks_,
    averaged_over_ranks,
    full_state_dict,
    mean_over_ranks,
    skip_shared_memory_op,
)
from unlearn.tiny import build_tiny_model


def on_two_ranks(fn, tmp_path, *args) -> dict:
    """What `fn(rank, *args)` returns on each of two gloo ranks."""
    results = mp.Manager().dict()
    mp.spawn(_in_group, args=(fn, str(tmp_path / "init"), results, args), nprocs=2)
    return dict(results)


def _in_group(rank: int, fn, init_file: str, results, args) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results[rank] = fn(rank, *args)
    finally:
        dist.destroy_process_group()


def data(world: int, source=SyntheticQA) -> UnlearnDataModule:
    """forget05 against retain in global batches of 4, split over `world` ranks (passages: rows of unequal length)."""
    return UnlearnDataModule("tiny-target", forget=source("forget05"), retain=source("retain"), batch_size=4 // world)


def train(module: UnlearnModule, root: str, world: int) -> dict[str, torch.Tensor]:
    """Two steps of `module` in this process, alone or as one of `world` DDP ranks; its trainable weights after."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(module, datamodule=data(world))
    return {name: p.detach().clone() for name, p in module.model.named_parameters() if p.requires_grad}


def on_two_ddp_ranks(make, tmp_path) -> dict:
    """`train(make())` on two DDP ranks that Lightning joins as if a launcher (torchrun) had started them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_rank, args=(make, port, str(tmp_path), results), nprocs=2)
    return dict(results)


def _ddp_rank(rank: int, make, port: int, root: str, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", NODE_RANK="0", LOCAL_RANK=str(rank)
    )
    results[rank] = train(make(), root, 2)


class NaNOnRankZero(UnlearnModule):
    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": torch.tensor(float("nan") if dist.get_rank() == 0 else 1.0)}


def _guarded_step(rank: int) -> str | None:
    try:
        NaNOnRankZero().training_step({}, 0)
    except FloatingPointError as err:
        return str(err)
    return None


def test_a_nan_on_one_rank_stops_every_rank(tmp_path):
    """A rank whose loss is finite must raise too, or it waits for the others until the collective timeout."""
    messages = on_two_ranks(_guarded_step, tmp_path)
    assert messages[0] is not None and messages[0] == messages[1], messages
    assert "rank 0" in messages[0]


def _first_objectives(rank: int, world: int) -> dict[str, float]:
    """PDU's and CE-U's terms on the first global batch, averaged over ranks as sync_dist logs them; PDU's new λ."""
    loader = data(world, SyntheticPassages)
    loader.setup("fit")
    loader.rank, loader.world_size = rank, world
    batch = next(iter(loader.train_dataloader()))
    pdu, ceu = PDU(model="tiny-target", epsilon=0.0, dual_init=0.0), CEU(model="tiny-target")
    found = {}
    for name, module in (("pdu", pdu), ("ceu", ceu)):
        module.configure_model()
        terms = module.objective(batch)
        found |= {f"{name}/{k}": float(mean_over_ranks(v.detach(), torch.tensor(1))) for k, v in terms.items()}
    return found | {"pdu/next_dual": float(pdu.dual)}


def test_pdu_and_ceu_on_two_ranks_match_one_process(tmp_path):
    """The global batch's token means whatever the ranks, and every rank's λ the one process's."""
    single = _first_objectives(0, 1)
    sharded = on_two_ranks(_first_objectives, tmp_path, 2)
    assert sharded[0] == sharded[1], "every rank must hold the same λ"
    assert sharded[0] == pytest.approx(single, rel=1e-5)


def npo_sam() -> NPOSAM:
    return NPOSAM(model="tiny-target", rho=0.5, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))


def test_npo_sam_on_two_ddp_ranks_steps_like_one_process(tmp_path):
    """ε from the all-reduced gradient: each rank's own gradient would perturb each rank differently."""
    single = train(npo_sam(), str(tmp_path / "single"), 1)
    ranks = on_two_ddp_ranks(npo_sam, tmp_path / "ddp")
    for name, weight in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], weight, rtol=0, atol=1e-6, msg=f"{name} differs from one process")


def rmu_lora() -> RMU:
    return RMU(model="tiny-target", layer=1, steering_coeff=100.0, adapter=LoRA(r=2))


def test_rmu_with_lora_trains_on_two_ddp_ranks(tmp_path):
    """Adapters after the steered layer get no gradient (RMU stops the forward there): DDP must not wait for them."""
    ranks = on_two_ddp_ranks(rmu_lora, tmp_path)
    for name, weight in ranks[0].items():
        assert torch.equal(weight, ranks[1][name]), f"{name} differs between the ranks"


def _export(rank: int) -> dict:
    """The tiny model partitioned by ZeRO-3 over both ranks, saved through full_state_dict; what rank `rank` saw."""
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    os.environ.update(DS_ACCELERATOR="cpu", LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE="2")
    skip_shared_memory_op()
    model = build_tiny_model(64)
    expected = {name: t.clone() for name, t in model.state_dict().items()}
    deepspeed.zero.Init(module=model, config_dict_or_path={"train_batch_size": 2, "zero_optimization": {"stage": 3}})
    full_at_once, gather = [], deepspeed.zero.GatheredParameters

    class Counting(gather):
        def __enter__(self):
            super().__enter__()
            full_at_once.append(sum(p.ds_status == ZeroParamStatus.AVAILABLE for p in model.parameters()))

    deepspeed.zero.GatheredParameters = Counting
    try:
        state = full_state_dict(model, keep=rank == 0)
    finally:
        deepspeed.zero.GatheredParameters = gather
    same = sorted(state) == sorted(expected) and all(torch.equal(state[k], expected[k]) for k in state)
    return {"keys": len(state), "same": same, "most_full_at_once": max(full_at_once), "gathers": len(full_at_once)}


def test_zero3_export_gathers_one_tensor_at_a_time_onto_the_writing_rank(tmp_path):
    seen = on_two_ranks(_export, tmp_path)
    assert seen[0]["same"] and seen[0]["keys"] > 0 and seen[1]["keys"] == 0
    assert seen[0]["gathers"] == seen[1]["gathers"] == len(list(build_tiny_model(64).parameters()))
    assert seen[0]["most_full_at_once"] == seen[1]["most_full_at_once"] == 1


def tamper_problem(rows: slice, per_rank_rows: int) -> tuple:
    """θ (3,) and TAR's two least-squares losses on `rows` of 4, divided by the global rows per rank, as a training
    batch's token means are (float64)."""
    generator = torch.Generator().manual_seed(0)
    A, a = torch.randn(4, 3, generator=generator, dtype=torch.float64), torch.randn(4, generator=generator).double()
    H, h = torch.randn(4, 3, generator=generator, dtype=torch.float64), torch.randn(4, generator=generator).double()
    theta = torch.randn(3, generator=generator, dtype=torch.float64).requires_grad_(True)
    attack = lambda w: ((A[rows] @ w[0] - a[rows]) ** 2).sum() / per_rank_rows  # noqa: E731
    tamper = lambda w: ((H[rows] @ w[0] - h[rows]) ** 2).sum() / per_rank_rows  # noqa: E731
    return theta, attack, tamper


def _tamper_gradient_on_rank(rank: int, optimizer: str, first_order: bool, average) -> tuple[torch.Tensor, float]:
    theta, attack, tamper = tamper_problem(slice(2 * rank, 2 * rank + 2), per_rank_rows=2)
    grads, value, _ = tamper_gradient(
        [theta], attack, tamper, steps=3, lr=0.05, weights=trajectory_weights(3).double(), optimizer=optimizer,
        first_order=first_order, average=average,
    )  # fmt: skip
    average_over_ranks_(grads)  # as TAR's objective does with the outer gradient
    return grads[0], value.item()


@pytest.mark.parametrize(("optimizer", "first_order"), [("adamw", True), ("sgd", True), ("sgd", False)])
def test_tar_attack_on_two_ranks_is_the_one_process_attack(tmp_path, optimizer, first_order):
    """Each rank holds half the rows; with the attack gradients averaged over the ranks (differentiably, for the exact
    meta-gradient) the outer gradient and the tamper value are one process's on all rows; without, they are not."""
    theta, attack, tamper = tamper_problem(slice(0, 4), per_rank_rows=4)
    single, value, _ = tamper_gradient(
        [theta], attack, tamper, steps=3, lr=0.05, weights=trajectory_weights(3).double(), optimizer=optimizer,
        first_order=first_order,
    )  # fmt: skip
    ranks = on_two_ranks(_tamper_gradient_on_rank, tmp_path, optimizer, first_order, averaged_over_ranks)
    assert torch.equal(ranks[0][0], ranks[1][0]), "every rank ends with the same outer gradient"
    torch.testing.assert_close(ranks[0][0], single[0], rtol=1e-12, atol=1e-12)
    assert (ranks[0][1] + ranks[1][1]) / 2 == pytest.approx(value.item(), rel=1e-6)  # summed in float32
    (tmp_path / "local").mkdir()
    local = on_two_ranks(_tamper_gradient_on_rank, tmp_path / "local", optimizer, first_order, list)
    assert not torch.allclose(local[0][0], single[0]), "each rank attacking with its own rows is another attack"
