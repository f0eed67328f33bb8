"""DeepSpeed ZeRO through Lightning, and the CPU variant that lets tests run sharded training without a GPU.

On GPUs use Lightning's presets by name in YAML (`trainer.strategy: deepspeed_stage_3`, `deepspeed_stage_2`,
`deepspeed_stage_3_offload`, ...) with `trainer.precision: bf16-true` or `bf16-mixed`. On CPU,
`deepspeed_stage_2_cpu` / `deepspeed_stage_3_cpu` run the same ZeRO stages over gloo with DeepSpeed's CPU accelerator;
the CLI registers them (`register_cpu_presets`), as Python code must before building a Trainer with those names.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy, StrategyRegistry


def skip_shared_memory_op() -> None:
    """Keep DeepSpeed from JIT-building its CPU shared-memory all-reduce, which serves inference engines only.

    Building it compiles C++ on every fresh machine (minutes on two cores), and a run killed while torch holds the
    build lock leaves every later run waiting on that lock forever.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """DeepSpeed ZeRO on CPU processes (gloo, DeepSpeed's CPU accelerator): sharded runs testable without a GPU."""

    strategy_name = "deepspeed_cpu"

    def __init__(self, stage: int = 3, **kwargs) -> None:
        """
        Args:
            stage: ZeRO stage (1, 2 or 3).
            **kwargs: see lightning.pytorch.strategies.DeepSpeedStrategy.
        """
        if os.environ.setdefault("DS_ACCELERATOR", "cpu") != "cpu":
            raise RuntimeError(f"CPUDeepSpeedStrategy needs DS_ACCELERATOR=cpu, found {os.environ['DS_ACCELERATOR']}")
        kwargs.setdefault("process_group_backend", "gloo")
        super().__init__(stage=stage, **kwargs)

    def setup_environment(self) -> None:
        """Skip DeepSpeedStrategy's CUDA-only check; everything else is DDP's."""
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        """DeepSpeedStrategy's, minus the check that device indices equal local ranks (CPU devices have none)."""
        reset_seed()
        self.set_world_ranks()
        skip_shared_memory_op()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        """deepspeed.initialize with the local rank as device rank: CPU devices carry no index for Lightning's."""
        import deepspeed

        engine, deepspeed_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),
            config=self.config,
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, deepspeed_optimizer

    def _initialize_deepspeed_inference(self, model: torch.nn.Module) -> None:
        """Lightning's (for `test`), reading the local rank where it reads the device index CPU devices lack."""
        devices = self.parallel_devices
        self.parallel_devices = [torch.device("cpu", rank) for rank in range(len(devices))]
        try:
            super()._initialize_deepspeed_inference(model)
        finally:
            self.parallel_devices = devices


def register_cpu_presets() -> None:
    """Name `deepspeed_stage_2_cpu` / `deepspeed_stage_3_cpu` in Lightning's StrategyRegistry (again is a no-op), so
    `trainer.strategy` can ask for them; entry points call it, importing this module registers nothing."""
    for stage in (2, 3):
        StrategyRegistry.register(
            f"deepspeed_stage_{stage}_cpu",
            CPUDeepSpeedStrategy,
            description=f"DeepSpeed ZeRO stage {stage} on CPU processes over gloo (tests)",
            override=True,
            stage=stage,
        )


def is_zero3(strategy: L.pytorch.strategies.Strategy | None) -> bool:
    """Whether the strategy partitions the parameters themselves (DeepSpeed ZeRO-3)."""
    return isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3


def is_plain_ddp(strategy: L.pytorch.strategies.Strategy | None) -> bool:
    """Whether the strategy is torch's DDP (DeepSpeed's Lightning strategy derives from it but is not)."""
    return isinstance(strategy, DDPStrategy) and not isinstance(strategy, DeepSpeedStrategy)


def has_whole_weights(strategy: L.pytorch.strategies.Strategy | None) -> bool:
    """Whether every rank holds whole weights and gradients in torch's own tensors: one device, or DDP."""
    return isinstance(strategy, SingleDeviceStrategy) or is_plain_ddp(strategy)


def allow_unused_parameters(strategy: L.pytorch.strategies.Strategy | None) -> None:
    """Let DDP step when some trainable weights got no gradient this step; call before it wraps the model."""
    if is_plain_ddp(strategy):
        strategy._ddp_kwargs["find_unused_parameters"] = True  # what `ddp_find_unused_parameters_true` sets


def zero3_model_loading(strategy: L.pytorch.strategies.Strategy | None) -> Any | None:
    """Under ZeRO-3, tell transformers so from_pretrained partitions weights as it loads (keep the result alive)."""
    if not is_zero3(strategy):
        return None
    from transformers.integrations import HfDeepSpeedConfig

    return HfDeepSpeedConfig(strategy.config)


def full_state_dict(model: torch.nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """The model's state dict for saving; ZeRO-3 partitions are gathered one tensor at a time into CPU copies (kept
    only where `keep`, i.e. on the rank that writes; every rank must call it), so no device holds the whole model."""
    if not is_partitioned(model):
        return model.state_dict() if keep else {}
    import deepspeed

    state = model.state_dict(keep_vars=True)
    full: dict[int, torch.Tensor | None] = {}  # by tensor identity, so tied weights stay one tensor
    for tensor in state.values():
        if hasattr(tensor, "ds_id") and id(tensor) not in full:
            with deepspeed.zero.GatheredParameters([tensor], modifier_rank=None):
                full[id(tensor)] = tensor.detach().cpu().clone() if keep else None
    return {name: full.get(id(t), t.detach()) for name, t in state.items()} if keep else {}


def is_partitioned(model: torch.nn.Module) -> bool:
    """Whether ZeRO-3 has partitioned the model's parameters (each then carries a DeepSpeed id)."""
    return any(hasattr(param, "ds_id") for param in model.parameters())


_IN_LOCKSTEP: set[int] = set()


@contextlib.contextmanager
def lockstep(model: torch.nn.Module) -> Iterator[None]:
    """Pair every forward of `model` with one on each other rank under ZeRO-3, where parameter gathers are collective.

    Ranks evaluate different rows, so one may run more forwards (more batches, longer generations, another scoring
    path) than another. Before each forward the ranks exchange whether they still have work; a rank that is done
    runs one-token forwards until every rank is. A no-op unless the parameters are partitioned over several ranks.
    """
    if not (is_partitioned(model) and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        yield
        return
    device = next(model.parameters()).device

    def anyone_busy(busy: bool) -> bool:
        flag = torch.tensor([int(busy)], device=device)
        torch.distributed.all_reduce(flag)
        return bool(flag.item())

    handle = model.register_forward_pre_hook(lambda module, args: anyone_busy(True) and None)
    _IN_LOCKSTEP.add(id(model))
    try:
        yield
    finally:
        handle.remove()
        _IN_LOCKSTEP.discard(id(model))
    with torch.no_grad():
        while anyone_busy(False):
            model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device))


def in_lockstep(model: torch.nn.Module) -> bool:
    """Whether `lockstep` pairs this model's forwards: generation must then not sync ranks itself as well."""
    return id(model) in _IN_LOCKSTEP


def mean_over_ranks(value: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weight-averaged value over every rank (e.g. a per-batch statistic of the global batch); itself alone."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    both = torch.stack([value * weight, weight.to(value.dtype)])
    torch.distributed.all_reduce(both)
    return both[0] / both[1].clamp(min=1)


def ranks_where(flag: bool, device: torch.device) -> list[int]:
    """The ranks on which `flag` holds, the same list on every rank, so that all take a decision (raise) together."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [0] if flag else []
    flags = torch.zeros(torch.distributed.get_world_size(), device=device)
    flags[torch.distributed.get_rank()] = float(flag)
    torch.distributed.all_reduce(flags)
    return flags.nonzero().flatten().tolist()


def averaged_over_ranks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over the ranks through a differentiable all-reduce (TAR's inner attack steps, which the exact
    meta-gradient differentiates); the tensors themselves on one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensors
    from torch.distributed.nn.functional import all_reduce  # autograd-aware; imported only where ranks exist

    world = torch.distributed.get_world_size()
    with warnings.catch_warnings():  # its FutureWarning names a private successor; this public one works
        warnings.simplefilter("ignore", FutureWarning)
        return [all_reduce(tensor) / world for tensor in tensors]


def average_over_ranks_(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the ranks, in place, as DDP averages gradients (no-op on one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for tensor in tensors:
        torch.distributed.all_reduce(tensor)
    torch._foreach_div_(tensors, torch.distributed.get_world_size())
