"""Pair every forget batch with retain rows; the global batch of a step is the same whatever the world size."""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from unlearn.checks import UsageError, degenerate, refuse
from unlearn.data.collate import IGNORE_INDEX, Collator
from unlearn.data.prompts import PromptFormat
from unlearn.data.sources import Source
from unlearn.models import load_tokenizer


class UnlearnDataModule(L.LightningDataModule):
    """Batches {"forget": ..., "retain": ...}; with no forget source it serves "retain" alone (fine-tuning).

    Methods use `roles`, `rows_of`, `collate`, `ordered_dataloader` and `add_role`, nothing else of it.
    """

    def __init__(
        self,
        tokenizer: str,
        forget: Source | None = None,
        retain: Source | None = None,
        forget_alt: Source | None = None,
        batch_size: int = 8,
        retain_batch_size: int | None = None,
        max_length: int = 256,
        seed: int = 0,
        prompt_format: str = "plain",
    ) -> None:
        """
        Args:
            tokenizer: hub id, path or built-in name of the tokenizer (linked to the model's by the CLI).
            forget: the data to unlearn; each epoch walks it once in an order seeded by (seed, epoch).
            retain: the data to keep; sampled with replacement, different rows on every rank.
            forget_alt: row for row, an alternative answer to each forget question (e.g. a refusal), for
                preference methods such as DPO; it travels as batch["forget_alt"].
            batch_size: forget rows per step and rank (retain rows too, unless retain_batch_size is set); the
                global batch is batch_size x world size, and a given global batch trains the same on any world size.
            retain_batch_size: retain rows per step and rank.
            max_length: longest tokenised row; longer rows are cut at the end.
            seed: seeds the forget order and the retain draws.
            prompt_format: how QA rows are put to the model (linked to the model's by the CLI; see PromptFormat).
        """
        super().__init__()
        refuse(setting_problems(forget, retain, forget_alt, batch_size, retain_batch_size, max_length))
        self.tokenizer_name = tokenizer
        self.sources = {"forget": forget, "retain": retain, "forget_alt": forget_alt}
        self.batch_size = batch_size
        self.retain_batch_size = retain_batch_size or batch_size
        self.max_length = max_length
        self.seed = seed
        self.prompt_format = PromptFormat(prompt_format)
        self.rows: dict[str, list[dict]] = {}
        self._counts: dict[str, dict[int, tuple[int, int]]] = {}

    def setup(self, stage: str | None = None) -> None:
        """Loads and checks every role's rows once, and warns of data on which training only looks like unlearning."""
        if self.rows:
            return
        self.tokenizer = load_tokenizer(self.tokenizer_name)
        self.collator = Collator(self.tokenizer, self.max_length, prompt_format=self.prompt_format)
        for role, source in self.sources.items():
            if source is None:
                continue
            self.rows[role] = _indexed(checked_rows(role, source))
        _check_pairs(self.rows)
        trainer = self.trainer
        self.rank, self.world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        for message in self.degenerate_data():
            degenerate(trainer, message)

    def degenerate_data(self) -> list[str]:
        """What makes training on these rows look like unlearning without being it: forget rows that are all retain
        rows too (the two terms cancel), or most rows cut by max_length (the model never sees their answers)."""
        found = []
        forget, retain = (_contents(self.rows.get(role, [])) for role in ("forget", "retain"))
        if forget and forget <= retain:
            names = f"{self.sources['forget'].name} in {self.sources['retain'].name}"
            found.append(
                f"every forget row is also a retain row ({names}): the forget and retain terms pull against each "
                "other on the same data; give data.retain other rows"
            )
        for role in ("forget", "retain"):
            share = self._truncated_share(role)
            if share > 0.5:
                found.append(
                    f"{share:.0%} of the {role} rows are longer than data.max_length={self.max_length} tokens and are "
                    "cut at the end (their answers partly or wholly lost); raise data.max_length"
                )
        return found

    def _truncated_share(self, role: str, sample: int = 256) -> float:
        """The share of a role's first `sample` rows longer than max_length tokens (0 when the role has no rows)."""
        rows = self.rows.get(role, [])[:sample]
        whole = Collator(self.tokenizer, max_length=None, prompt_format=self.prompt_format)
        return sum(len(whole.encode(row)[0]) > self.max_length for row in rows) / max(len(rows), 1)

    @property
    def main_role(self) -> str:
        """The set an epoch walks through: forget when unlearning, retain when fine-tuning."""
        return "forget" if "forget" in self.rows else "retain"

    def roles(self) -> frozenset[str]:
        """The roles it serves: its configured sources (known before setup) and any a method added."""
        return frozenset({role for role, source in self.sources.items() if source is not None} | self.rows.keys())

    def rows_of(self, role: str) -> list[dict]:
        """A copy of a role's rows, each with its "index", so that a caller cannot change what is served."""
        return [dict(row) for row in self.rows[role]]

    def collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Rows as the model reads them, collated exactly like a training batch's role."""
        return self.collator(rows)

    def add_role(self, role: str, rows: list[dict]) -> None:
        """Serve rows a method made before training (AltPO's alternates) as a batch role, indexed like a source's."""
        if role in self.roles():
            raise ValueError(f"the data module already serves {role}; a method cannot replace its rows")
        added = {**self.rows, role: _indexed(rows)}
        _check_pairs(added)
        self.rows = added

    def train_dataloader(self) -> DataLoader:
        """Each step's rows of every role from one seeded plan: this rank's share of the global batch."""
        plan = StepPlan(
            len(self.rows[self.main_role]),
            self.batch_size,
            len(self.rows.get("retain", [])) if self.main_role == "forget" else 0,
            self.retain_batch_size,
            num_replicas=self.world_size,
            rank=self.rank,
            seed=self.seed,
            epoch_of=(lambda: self.trainer.current_epoch) if self.trainer is not None else None,
        )
        # One plan item per loader batch; a real BatchSampler (not batch_size=None) is what DeepSpeed's setup reads.
        return DataLoader(StepRows(self), sampler=plan, batch_size=1, collate_fn=_only_item)

    def val_dataloader(self) -> DataLoader:
        """The main set once, in order: validation's NLL covers every row."""
        return self.ordered_dataloader(self.main_role)

    def test_dataloader(self) -> DataLoader:
        """The main set once, in order: test's NLL covers every row."""
        return self.ordered_dataloader(self.main_role)

    def ordered_dataloader(self, role: str) -> DataLoader:
        """One pass over a set in its stored order, e.g. to cache reference log-probs by row index."""
        return DataLoader(
            self.rows[role], batch_size=self.batch_size, collate_fn=lambda rows: {role: self.collator(rows)}
        )

    def collate_step(self, step: tuple[list[int], list[int]]) -> dict[str, dict[str, torch.Tensor]]:
        """This rank's share of one global step, each role carrying the step's answer tokens per rank."""
        main_ids, retain_ids = step
        roles = {"retain": retain_ids, "forget_alt": main_ids, self.main_role: main_ids}
        return {role: self._rank_share(role, ids) for role, ids in roles.items() if role in self.rows and ids}

    def _rank_share(self, role: str, global_ids: list[int]) -> dict[str, torch.Tensor]:
        """Collate this rank's slice, with the global step's token counts per rank, which token means divide by.

        `tokens_per_rank`: answer tokens (labels) of the global batch / world size; `positions_per_rank`: its
        non-padding positions / world size (activation losses such as RMU's average over those).
        """
        share = len(global_ids) // self.world_size
        rows = self.rows[role]
        batch = self.collator([rows[i] for i in global_ids[self.rank * share : (self.rank + 1) * share]])
        counts = torch.tensor([self._row_counts(role, i) for i in global_ids]).sum(0)
        batch["tokens_per_rank"], batch["positions_per_rank"] = counts / self.world_size
        return batch

    def _row_counts(self, role: str, index: int) -> tuple[int, int]:
        """(answer tokens, non-padding positions) of one row as collated, computed once per row."""
        cache = self._counts.setdefault(role, {})
        if index not in cache:
            row = self.collator([self.rows[role][index]])
            cache[index] = (int((row["labels"][:, 1:] != IGNORE_INDEX).sum()), int(row["attention_mask"].sum()))
        return cache[index]


def setting_problems(
    forget: Source | None,
    retain: Source | None,
    forget_alt: Source | None,
    batch_size: int,
    retain_batch_size: int | None,
    max_length: int,
) -> list[str]:
    """Every data setting that cannot give a training batch, each with its fix."""
    problems = []
    if forget is None and retain is None:
        problems.append("the data section has neither data.forget nor data.retain; give at least one source")
    if forget_alt is not None and forget is None:
        problems.append("data.forget_alt pairs alternatives with forget rows; set data.forget too")
    if batch_size < 1:
        problems.append(f"data.batch_size={batch_size} gives empty batches; set it to 1 or more")
    if retain_batch_size is not None and retain_batch_size < 1:
        problems.append(f"data.retain_batch_size={retain_batch_size} gives empty batches; set it to 1 or more, or null")
    if max_length < 2:
        problems.append(f"data.max_length={max_length} leaves no answer token to train on; set it to 2 or more (256)")
    return problems


def checked_rows(role: str, source: Source) -> list[dict]:
    """A source's rows, refused when there are none or every one is blank (nothing to train on)."""
    rows = source.load()
    if not rows:
        raise UsageError(f"the {role} set {source.name} is empty; check its split, path or filters")
    if not any(str(row.get("text", row.get("answer", ""))).strip() for row in rows):
        raise UsageError(
            f"all {len(rows)} rows of the {role} set {source.name} have an empty text or answer, so there is nothing "
            "to train on; check the file and its text_key / answer_key"
        )
    return rows


def _indexed(rows: list[dict]) -> list[dict]:
    """Rows with their position in the set: what reference caches and IDK+AP's refusals are looked up by."""
    return [{**row, "index": i} for i, row in enumerate(rows)]


def _check_pairs(rows: dict[str, list[dict]]) -> None:
    """forget_alt answers the forget questions row for row; another count would pair the wrong rows."""
    forget = len(rows.get("forget", []))
    if "forget_alt" in rows and len(rows["forget_alt"]) != forget:
        raise ValueError(
            f"forget_alt has {len(rows['forget_alt'])} rows but forget has {forget}; they must pair row for row"
        )


def _contents(rows: list[dict]) -> set[str]:
    """Rows as comparable values, their position left out."""
    return {repr(sorted((k, v) for k, v in row.items() if k != "index")) for row in rows}


def _only_item(items: list[dict]) -> dict:
    """The loader batches one already-collated step at a time."""
    return items[0]


class StepRows:
    """Map-style view that turns a step's row indices into the collated batch."""

    def __init__(self, data: UnlearnDataModule) -> None:
        self.data = data

    def __getitem__(self, step: tuple[list[int], list[int]]) -> dict[str, dict[str, torch.Tensor]]:
        return self.data.collate_step(step)


class StepPlan(DistributedSampler):
    """Row indices of every global step, which do not depend on the world size; each rank collates its slice.

    Epoch e walks a permutation seeded by (seed, e), padded by wrapping so every global batch is full; step k's
    global batch is rows [kG, (k+1)G) with G = batch_size x world size, and rank r takes the r-th slice. Retain rows
    are drawn with replacement by a generator seeded by (seed, e, k), world_size x retain_batch_size of them, sliced
    the same way: ranks see different rows, and one process with batch G trains on exactly the same rows. Being a
    DistributedSampler, Lightning leaves it in place and calls set_epoch; a resumed run replays the same plan.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        retain_size: int,
        retain_batch_size: int,
        *,
        num_replicas: int,
        rank: int,
        seed: int,
        epoch_of: Callable[[], int] | None = None,
    ) -> None:
        """
        Args:
            epoch_of: the trainer's epoch counter, read when an epoch starts. Lightning's set_epoch argument runs one
                ahead when a run resumes from an end-of-epoch checkpoint; without a trainer set_epoch is used.
        """
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.size, self.batch, self.retain_size, self.retain_batch = size, batch_size, retain_size, retain_batch_size
        self.epoch_of = epoch_of

    def __len__(self) -> int:
        return math.ceil(self.size / (self.batch * self.num_replicas))

    def __iter__(self):
        if self.epoch_of is not None:
            self.epoch = self.epoch_of()
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        global_batch = self.batch * self.num_replicas
        order = (order * math.ceil(len(self) * global_batch / self.size))[: len(self) * global_batch]
        for step in range(len(self)):
            yield order[step * global_batch : (step + 1) * global_batch], self._retain(step)

    def _retain(self, step: int) -> list[int]:
        if not self.retain_size:
            return []
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + step)
        return torch.randint(self.retain_size, (self.retain_batch * self.num_replicas,), generator=generator).tolist()
