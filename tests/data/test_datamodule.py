"""Forget batches are paired with retain batches drawn by a per-rank generator."""

from types import SimpleNamespace

import pytest

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA


def make(rank: int, **kwargs) -> UnlearnDataModule:
    data = UnlearnDataModule(
        "tiny-scratch", forget=SyntheticQA("forget05"), retain=SyntheticQA("retain"), **kwargs
    )
    data.trainer = SimpleNamespace(global_rank=rank)
    data.setup("fit")
    return data


def retain_draws(data: UnlearnDataModule, steps: int = 4) -> list[list[int]]:
    return [[row["index"] for row in data.sample_retain()] for _ in range(steps)]


def test_ranks_draw_different_retain_rows_reproducibly():
    assert retain_draws(make(0)) != retain_draws(make(1))
    assert retain_draws(make(1)) == retain_draws(make(1))


def test_train_batches_pair_forget_and_retain():
    data = make(0, batch_size=4, retain_batch_size=6)
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"forget", "retain"}
    assert batch["forget"]["input_ids"].shape[0] == 4 and batch["retain"]["input_ids"].shape[0] == 6
    assert "index" in batch["forget"]


def test_forget_order_is_seeded():
    first = [b["forget"]["index"].tolist() for b in make(0).train_dataloader()]
    again = [b["forget"]["index"].tolist() for b in make(0).train_dataloader()]
    other = [b["forget"]["index"].tolist() for b in make(0, seed=5).train_dataloader()]
    assert first == again != other
    assert sorted(sum(first, [])) == list(range(50))


def test_fine_tuning_serves_retain_alone():
    data = UnlearnDataModule("tiny-scratch", retain=SyntheticQA("forget01"), batch_size=3)
    data.setup("fit")
    assert set(next(iter(data.train_dataloader()))) == {"retain"}


def test_empty_forget_set_is_a_clear_error():
    class Empty(SyntheticQA):
        def load(self):
            return []

    data = UnlearnDataModule("tiny-scratch", forget=Empty("forget01"), retain=SyntheticQA("retain"))
    with pytest.raises(ValueError, match="forget set .* is empty"):
        data.setup("fit")
