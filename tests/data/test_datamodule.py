"""Forget batches are paired with retain rows; ranks see different rows of a world-size-independent global batch."""

from types import SimpleNamespace

import pytest

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA


def make(rank: int, world_size: int = 1, **kwargs) -> UnlearnDataModule:
    data = UnlearnDataModule("tiny-scratch", forget=SyntheticQA("forget05"), retain=SyntheticQA("retain"), **kwargs)
    data.trainer = SimpleNamespace(global_rank=rank, world_size=world_size, current_epoch=0)
    data.setup("fit")
    return data


def batches(data: UnlearnDataModule, epoch: int = 0) -> list[dict]:
    data.trainer.current_epoch = epoch  # the plan reads the trainer's epoch when an epoch starts
    return list(data.train_dataloader())


def rows(batch: dict, role: str) -> list[int]:
    return batch[role]["index"].tolist()


def test_ranks_draw_different_rows_reproducibly():
    rank0, rank1 = batches(make(0, 2, batch_size=4)), batches(make(1, 2, batch_size=4))
    assert len(rank0) == len(rank1) == 7, "50 rows in global batches of 8: 7 steps, the last padded"
    for b0, b1 in zip(rank0, rank1, strict=True):
        assert len(rows(b0, "forget")) == len(rows(b1, "forget")) == 4 and rows(b0, "retain") != rows(b1, "retain")
    assert set(sum((rows(b, "forget") for b in rank0[:6]), [])).isdisjoint(
        sum((rows(b, "forget") for b in rank1[:6]), [])
    )
    assert [rows(b, "retain") for b in batches(make(1, 2, batch_size=4))] == [rows(b, "retain") for b in rank1]


def test_global_batches_do_not_depend_on_world_size():
    """One process with batch 8 trains on exactly the rows that two processes with batch 4 share out,
    and every rank's token normalisers are the global answer-token and position counts over the world size."""
    single = batches(make(0, 1, batch_size=8), epoch=3)
    split = [batches(make(rank, 2, batch_size=4), epoch=3) for rank in (0, 1)]
    for step, batch in enumerate(single):
        for role in ("forget", "retain"):
            assert rows(batch, role) == rows(split[0][step], role) + rows(split[1][step], role)
            global_tokens = (batch[role]["labels"][:, 1:] != -100).sum()
            global_positions = batch[role]["attention_mask"].sum()
            assert batch[role]["tokens_per_rank"] == global_tokens
            assert batch[role]["positions_per_rank"] == global_positions
            for key, total in (("tokens_per_rank", global_tokens), ("positions_per_rank", global_positions)):
                per_rank = [split[rank][step][role][key] for rank in (0, 1)]
                assert per_rank[0] == per_rank[1] == total / 2
    assert batches(make(0, 1, batch_size=8), epoch=4)[0]["forget"]["index"].tolist() != rows(single[0], "forget")


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
    assert set(sum(first, [])) == set(range(50)) and len(sum(first, [])) == 56, "50 rows, 6 wrapped"


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


def test_methods_read_copies_and_add_roles_through_the_interface():
    """rows_of hands out copies a caller cannot change the served rows through; add_role indexes new rows, pairs
    forget_alt with forget and never replaces a role."""
    data = make(0, batch_size=4)
    assert data.roles() == {"forget", "retain"}
    rows = data.rows_of("forget")
    rows[0]["answer"] = "changed"
    rows.append({"question": "extra", "answer": "extra"})
    assert data.rows_of("forget") == [{**row, "index": i} for i, row in enumerate(SyntheticQA("forget05").load())]
    alternates = [{"question": row["question"], "answer": "no"} for row in data.rows_of("forget")]
    with pytest.raises(ValueError, match="forget_alt has 49 rows but forget has 50"):
        data.add_role("forget_alt", alternates[1:])
    assert "forget_alt" not in data.roles()
    data.add_role("forget_alt", alternates)
    assert [row["index"] for row in data.rows_of("forget_alt")] == list(range(50))
    assert set(next(iter(data.train_dataloader()))) == {"forget", "retain", "forget_alt"}
    assert data.collate(data.rows_of("forget_alt")[:2])["index"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="already serves forget_alt"):
        data.add_role("forget_alt", alternates)
