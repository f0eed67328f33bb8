"""mean_over_ranks on two gloo processes: the weighted mean of the global batch, the same on every rank."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unlearn.strategies import mean_over_ranks


def _rank(rank: int, init_file: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        value, weight = [(torch.tensor(2.0), torch.tensor(3)), (torch.tensor(10.0), torch.tensor(1))][rank]
        results[rank] = float(mean_over_ranks(value, weight))
    finally:
        dist.destroy_process_group()


def test_weighted_mean_over_two_ranks(tmp_path):
    """(2·3 + 10·1) / (3 + 1) = 4 on both ranks, not the unweighted 6 nor either rank's own value."""
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(str(tmp_path / "init"), results), nprocs=2)
    assert dict(results) == {0: 4.0, 1: 4.0}


def test_one_process_keeps_its_value():
    assert float(mean_over_ranks(torch.tensor(7.0), torch.tensor(5))) == 7.0
