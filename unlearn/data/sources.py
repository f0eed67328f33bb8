"""Where examples come from: the embedded benchmark, local files, or hub datasets, in one normalised schema.

Every source returns a list of rows of one kind:
- "qa":   {"question": str, "answer": str}
- "text": {"text": str}
- "mcq":  {"question": str, "choices": list[str], "answer": int}
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from unlearn.data.synthetic import SyntheticBenchmark


class Source(ABC):
    """A named view of a dataset; `load` returns normalised rows and fails loudly on bad input."""

    kind: str

    @abstractmethod
    def load(self) -> list[dict]:
        """Rows in the schema of this source's kind."""

    @property
    def name(self) -> str:
        """A short label for error messages and reports."""
        return type(self).__name__


class SyntheticSource(Source):
    """Common arguments of the embedded benchmark's views."""

    def __init__(self, split: str, seed: int = 0, num_entities: int = 200, num_holdout: int = 20) -> None:
        """
        Args:
            split: train, forget01/05/10, retain, holdout, forget_topic or retain_topic.
            seed: the benchmark's seed (the shipped tiny models know seed 0).
            num_entities: entities the target model was trained on.
            num_holdout: entities never trained on.
        """
        self.split = split
        self.benchmark = SyntheticBenchmark(seed=seed, num_entities=num_entities, num_holdout=num_holdout)
        self.benchmark.split(split)  # fail at configuration time on an unknown split

    @property
    def name(self) -> str:
        return f"{type(self).__name__}({self.split})"


class SyntheticQA(SyntheticSource):
    """Question/answer pairs about the fictional entities."""

    kind = "qa"

    def __init__(self, split: str, paraphrased: bool = False, **kwargs) -> None:
        """
        Args:
            split: see SyntheticSource.
            paraphrased: ask with the question form the models never trained on.
        """
        super().__init__(split, **kwargs)
        self.paraphrased = paraphrased

    def load(self) -> list[dict]:
        return [{"question": r["question"], "answer": r["answer"]} for r in self.benchmark.qa(self.split, self.paraphrased)]


class SyntheticPassages(SyntheticSource):
    """Biographies of the fictional entities: the forget and retain corpora."""

    kind = "text"

    def load(self) -> list[dict]:
        return self.benchmark.passages(self.split)


class SyntheticMCQ(SyntheticSource):
    """4-choice questions in WMDP's schema about the fictional entities."""

    kind = "mcq"

    def load(self) -> list[dict]:
        return self.benchmark.mcq(self.split)


class Mixture(Source):
    """Several sources of one kind, concatenated (e.g. QA pairs and passages as one training set)."""

    def __init__(self, sources: list[Source]) -> None:
        kinds = {s.kind for s in sources}
        if not sources or len(kinds) != 1 and kinds != {"qa", "text"}:
            raise ValueError(f"Mixture needs sources of one kind (or qa with text); got {sorted(kinds)}")
        self.sources = sources
        self.kind = sources[0].kind if len(kinds) == 1 else "mixed"

    def load(self) -> list[dict]:
        return [row for source in self.sources for row in source.load()]

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.sources)
