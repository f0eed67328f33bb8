"""QA rows with a paraphrased answer and wrong-but-plausible ones: what TOFU's truth ratio and forget quality need.

Rows: {"question", "answer", "paraphrased_question", "paraphrased_answer", "perturbed_answers": list[str]}; the
truth ratio compares the perturbed answers with the paraphrased answer, both asked with `paraphrased_question`.
"""

from __future__ import annotations

from unlearn.data.sources import DatasetSource, SyntheticSource


class SyntheticPerturbedQA(SyntheticSource):
    """The embedded benchmark's QA pairs with 3 wrong answers from the same vocabulary (for TOFU's truth ratio).

    Its answers are single values with no paraphrase, so the truth ratio compares the true value with the wrong ones.
    By default they are asked with the trained question form: the shipped tiny models barely generalise to the
    paraphrased form, so their truth ratio there would measure noise.
    """

    kind = "qa"

    def __init__(self, split: str, paraphrased: bool = False, **kwargs) -> None:
        """
        Args:
            split: see SyntheticSource.
            paraphrased: ask the true and wrong answers of the truth ratio with the question form never trained on.
        """
        super().__init__(split, **kwargs)
        self.paraphrased = paraphrased

    def load(self) -> list[dict]:
        questions = [row["question"] for row in self.benchmark.qa(self.split, paraphrased=self.paraphrased)]
        return [
            {
                "question": row["question"],
                "answer": row["answer"],
                "paraphrased_question": question,
                "paraphrased_answer": row["answer"],
                "perturbed_answers": row["perturbed_answers"],
            }
            for row, question in zip(self.benchmark.perturbed(self.split), questions, strict=True)
        ]


class TOFUSource(DatasetSource):
    """TOFU's perturbed splits (locuslab/TOFU: forget01_perturbed, ..., retain_perturbed) or a file in their schema.

    TOFU asks the paraphrased and perturbed answers with the original question, so `paraphrased_question` is the
    question itself.
    """

    kind = "qa"

    def __init__(
        self,
        path: str = "locuslab/TOFU",
        name: str | None = "forget10_perturbed",
        split: str = "train",
        limit: int | None = None,
    ) -> None:
        """
        Args:
            path: the hub id, a local .json/.jsonl/.parquet/.csv file, or a save_to_disk folder.
            name: the hub config (forget01_perturbed, forget05_perturbed, forget10_perturbed, retain_perturbed).
            split: the split to read; a single file is always read whole.
            limit: keep the first this many rows; None keeps all.
        """
        super().__init__(path, name, split, limit)

    def load(self) -> list[dict]:
        columns = ("question", "answer", "paraphrased_answer", "perturbed_answer")
        rows = []
        for index, row in enumerate(self._first(self._load({c: c for c in columns}))):
            perturbed = row["perturbed_answer"]
            if not isinstance(perturbed, list) or not perturbed:
                raise ValueError(
                    f"{self.name}: row {index} has perturbed_answer={perturbed!r}, expected a non-empty list of "
                    "wrong answers; use a *_perturbed config of locuslab/TOFU"
                )
            question = self._check_str(index, "question", row["question"])
            rows.append({
                "question": question,
                "answer": self._check_str(index, "answer", row["answer"]),
                "paraphrased_question": question,
                "paraphrased_answer": self._check_str(index, "paraphrased_answer", row["paraphrased_answer"]),
                "perturbed_answers": [self._check_str(index, "perturbed_answer", a) for a in perturbed],
            })  # fmt: skip
        return rows
