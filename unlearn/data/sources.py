"""Where examples come from: the embedded benchmark, local files, or hub datasets, in one normalised schema.

Every source returns a list of rows of one kind:
- "qa":   {"question": str, "answer": str}
- "text": {"text": str}
- "mcq":  {"question": str, "choices": list[str], "answer": int}
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from unlearn.checks import UsageError
from unlearn.data.synthetic import SyntheticBenchmark

if TYPE_CHECKING:
    import datasets


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
        return [
            {"question": r["question"], "answer": r["answer"]} for r in self.benchmark.qa(self.split, self.paraphrased)
        ]


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


FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
SHIPPED_DATA = Path(__file__).parent.parent / "assets"


def shipped(path: str) -> str:
    """Packaged data by name (real-facts/forget_mcq), so a config needs no install path; other paths pass through."""
    file = SHIPPED_DATA / f"{path}.jsonl"
    return str(file) if not path.startswith(("/", ".", "~")) and file.is_file() else path


class DatasetSource(Source):
    """What the loaders of real datasets share: where the rows are, which split, and how many to keep."""

    def __init__(self, path: str, name: str | None, split: str, limit: int | None) -> None:
        path = shipped(path)
        self.path, self.config_name, self.split, self.limit = path, name, split, limit
        if limit is not None and limit < 1:
            raise ValueError(f"{self.name}: limit={limit} keeps no rows; give a positive limit or None for all")
        local = Path(path).expanduser()
        if local.is_file() and _blank(local):
            raise UsageError(f"{self.name}: the data file {local} is empty; fill it or point path= to the right file")
        if local.is_file() and local.suffix not in FILE_BUILDERS:
            raise ValueError(
                f"{self.name}: cannot read {local.suffix!r} files; convert {path!r} to one of {sorted(FILE_BUILDERS)}"
            )
        looks_local = local.suffix in FILE_BUILDERS or path.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(path)
        if not local.exists() and looks_local:
            raise ValueError(
                f"{self.name}: no such file or directory {path!r}; give an existing .json/.jsonl/"
                f".parquet/.csv file, a folder of data files, a save_to_disk folder, or a hub id"
            )
        if name is not None and (local.is_file() or _saved_to_disk(local)):
            raise ValueError(
                f"{self.name}: name={name!r} picks a hub config, but {path!r} holds one dataset; drop name="
            )

    @property
    def name(self) -> str:
        config = "" if self.config_name is None else f":{self.config_name}"
        return f"{type(self).__name__}({self.path}{config})"

    def _load(self, columns: dict[str, str]) -> datasets.Dataset:
        """One split with only `columns` ({argument: column}); every loading error names the fix."""
        import datasets  # here, not at the top: the embedded benchmark should not pay its import time

        local = Path(self.path).expanduser()
        try:
            if local.is_file():  # one file is one split, whatever `split` says
                dataset = datasets.load_dataset(FILE_BUILDERS[local.suffix], data_files=str(local), split="train")
            elif _saved_to_disk(local):
                dataset = datasets.load_from_disk(str(local))
            else:  # a hub id or a folder of data files
                dataset = datasets.load_dataset(self.path, self.config_name, split=self.split)
        except Exception as err:
            raise ValueError(
                f"{self.name}: datasets could not load split {self.split!r}: {type(err).__name__}: {err}\n"
                f"Check path= (a hub id or local path), name= (the hub config) and split=."
            ) from err
        if isinstance(dataset, datasets.DatasetDict):
            if self.split not in dataset:
                raise ValueError(
                    f"{self.name} has no split {self.split!r}; it has {list(dataset)}; set split= to one of them"
                )
            dataset = dataset[self.split]
        for argument, column in columns.items():
            if column not in dataset.column_names:
                raise ValueError(
                    f"dataset {self.name} has no column {column!r}; it has {dataset.column_names}; "
                    f"set {argument}= to one of them"
                )
        if len(dataset) == 0:
            raise ValueError(f"{self.name}: split {self.split!r} has no rows; check path=, name= and split=")
        return dataset.select_columns(list(dict.fromkeys(columns.values())))

    def _first(self, dataset: datasets.Dataset) -> list[dict]:
        """The first `limit` rows, without reading the rest."""
        return dataset.select(range(min(self.limit or len(dataset), len(dataset)))).to_list()

    def _check_str(self, index: int, key: str, value: object) -> str:
        """Fail on a null or non-text value where text is expected, naming the row."""
        if not isinstance(value, str):
            raise ValueError(
                f"{self.name}: row {index} has {key}={value!r}, expected a string; fix the data or pick another column"
            )
        return value


class TextSource(DatasetSource):
    """Plain-text corpora (WMDP's forget and retain corpora, wikitext), filtered and cut like the RMU code."""

    kind = "text"

    def __init__(
        self,
        path: str,
        name: str | None = None,
        split: str = "train",
        text_key: str = "text",
        min_chars: int = 0,
        max_chars: int | None = None,
        limit: int | None = None,
    ) -> None:
        """
        Args:
            path: a hub id (cais/wmdp-corpora, wikitext), a local .json/.jsonl/.parquet/.csv file
                (e.g. bio-forget-corpus.jsonl), a folder of data files, a save_to_disk folder, or a shipped
                corpus (real-facts/forget_passages).
            name: the hub config, e.g. cyber-forget-corpus or wikitext-2-raw-v1.
            split: the split to read; a single file is always read whole.
            text_key: the column holding the text.
            min_chars: drop texts shorter than this (wikitext's empty and heading lines).
            max_chars: cut each kept text to this many characters; None keeps it whole.
            limit: keep the first this many texts after filtering; None keeps all.
        """
        super().__init__(path, name, split, limit)
        if min_chars < 0 or max_chars is not None and max_chars < max(min_chars, 1):
            raise ValueError(
                f"{self.name}: need 0 <= min_chars <= max_chars and max_chars >= 1; got "
                f"min_chars={min_chars}, max_chars={max_chars}"
            )
        self.text_key, self.min_chars, self.max_chars = text_key, min_chars, max_chars

    def load(self) -> list[dict]:
        dataset = self._load({"text_key": self.text_key})
        rows = []
        for index, text in enumerate(dataset[self.text_key]):
            if len(self._check_str(index, self.text_key, text)) >= self.min_chars:
                rows.append({"text": text[: self.max_chars]})
                if len(rows) == self.limit:
                    break
        if not rows:
            raise ValueError(
                f"{self.name}: all {len(dataset)} texts in split {self.split!r} are shorter than "
                f"min_chars={self.min_chars}; lower min_chars="
            )
        return rows


class QASource(DatasetSource):
    """Question/answer pairs such as TOFU's forget and retain splits."""

    kind = "qa"

    def __init__(
        self,
        path: str,
        name: str | None = None,
        split: str = "train",
        question_key: str = "question",
        answer_key: str = "answer",
        limit: int | None = None,
    ) -> None:
        """
        Args:
            path: a hub id (locuslab/TOFU), a local .json/.jsonl/.parquet/.csv file, a folder of data files,
                a save_to_disk folder, or a shipped set (real-facts/forget_qa).
            name: the hub config, e.g. forget10 or retain90.
            split: the split to read; a single file is always read whole.
            question_key: the column holding the question (e.g. paraphrased_question).
            answer_key: the column holding the answer (e.g. paraphrased_answer).
            limit: keep the first this many pairs; None keeps all.
        """
        super().__init__(path, name, split, limit)
        self.question_key, self.answer_key = question_key, answer_key

    def load(self) -> list[dict]:
        rows = self._first(self._load({"question_key": self.question_key, "answer_key": self.answer_key}))
        return [
            {
                "question": self._check_str(index, self.question_key, row[self.question_key]),
                "answer": self._check_str(index, self.answer_key, row[self.answer_key]),
            }
            for index, row in enumerate(rows)
        ]


class MCQSource(DatasetSource):
    """Multiple-choice questions in WMDP's and MMLU's schema; answers are checked against the choices."""

    kind = "mcq"

    def __init__(
        self,
        path: str,
        name: str | None = None,
        split: str = "test",
        question_key: str = "question",
        choices_key: str = "choices",
        answer_key: str = "answer",
        subjects: list[str] | None = None,
        subject_key: str = "subject",
        limit: int | None = None,
    ) -> None:
        """
        Args:
            path: a hub id (cais/wmdp, cais/mmlu), a local .json/.jsonl/.parquet/.csv file, a folder of data
                files, a save_to_disk folder, or a shipped set (real-facts/forget_mcq).
            name: the hub config, e.g. wmdp-bio, wmdp-cyber, wmdp-chem, or an MMLU subject or "all".
            split: the split to read; a single file is always read whole.
            question_key: the column holding the question.
            choices_key: the column holding the list of choices.
            answer_key: the column holding the correct choice: an index, or a letter A, B, ...
            subjects: keep only rows whose `subject_key` column is one of these, e.g. MMLU's "all" config cut to
                [college_biology, virology]; None keeps every row.
            subject_key: the column `subjects` filters on.
            limit: keep the first this many questions (after the subject filter); None keeps all.
        """
        super().__init__(path, name, split, limit)
        if subjects is not None and not subjects:
            raise ValueError(f"{self.name}: subjects=[] keeps no rows; list subjects or pass None for all")
        self.question_key, self.choices_key, self.answer_key = question_key, choices_key, answer_key
        self.subjects, self.subject_key = subjects, subject_key

    def load(self) -> list[dict]:
        columns = self._columns()
        if self.subjects is not None:
            columns["subject_key"] = self.subject_key
        dataset = self._load(columns)
        if self.subjects is not None:
            dataset = self._of_subjects(dataset)
        rows = []
        for index, row in enumerate(self._first(dataset)):
            question, choices, answer = self._fields(index, row)
            if not isinstance(choices, list) or len(choices) < 2:
                raise ValueError(
                    f"{self.name}: row {index} has {self.choices_key}={choices!r}, expected a list "
                    f"of at least 2 choices; check choices_key="
                )
            rows.append(
                {
                    "question": self._check_str(index, self.question_key, question),
                    "choices": [self._check_str(index, self.choices_key, choice) for choice in choices],
                    "answer": self._answer_index(index, answer, len(choices)),
                }
            )
        return rows

    def _columns(self) -> dict[str, str]:
        """The columns to read, as {argument: column}."""
        return {"question_key": self.question_key, "choices_key": self.choices_key, "answer_key": self.answer_key}

    def _fields(self, index: int, row: dict) -> tuple[object, object, object]:
        """(question, choices, answer) of one raw row, not yet checked."""
        return row[self.question_key], row[self.choices_key], row[self.answer_key]

    def _of_subjects(self, dataset: datasets.Dataset) -> datasets.Dataset:
        """The rows of the chosen subjects, in their order; an unknown subject lists the known ones."""
        present = dataset[self.subject_key]
        missing = sorted(set(self.subjects) - set(present))
        if missing:
            raise ValueError(
                f"{self.name}: no rows of subjects {missing} in column {self.subject_key!r}; it has "
                f"{sorted(set(present))}"
            )
        wanted = set(self.subjects)
        return dataset.select([k for k, subject in enumerate(present) if subject in wanted])

    def _answer_index(self, index: int, answer: object, num_choices: int) -> int:
        """The answer as an index into the choices, accepting the letters A, B, ... that some datasets use."""
        letters = [chr(ord("A") + i) for i in range(num_choices)]
        if isinstance(answer, str) and answer in letters:
            return letters.index(answer)
        if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < num_choices:
            return answer
        raise ValueError(
            f"{self.name}: row {index} has {self.answer_key}={answer!r}, but it has {num_choices} "
            f"choices; the answer must be an index 0..{num_choices - 1} or a letter "
            f"{letters[0]}..{letters[-1]}; fix the data or set answer_key="
        )


class TruthfulQAMC1(MCQSource):
    """TruthfulQA's MC1 (hub truthfulqa/truthful_qa, config multiple_choice): the one true answer among the rest."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        split: str = "validation",
        targets_key: str = "mc1_targets",
        limit: int | None = None,
    ) -> None:
        """
        Args:
            path: a hub id (truthfulqa/truthful_qa with name=multiple_choice), or a local file or folder.
            name: the hub config: multiple_choice.
            split: the split to read (the hub has only validation); a single file is always read whole.
            targets_key: the column of {choices: [...], labels: [1, 0, ...]} with exactly one label 1.
            limit: keep the first this many questions; None keeps all.
        """
        super().__init__(path, name, split, choices_key=targets_key, answer_key=targets_key, limit=limit)

    def _columns(self) -> dict[str, str]:
        return {"question_key": self.question_key, "targets_key": self.choices_key}

    def _fields(self, index: int, row: dict) -> tuple[object, object, object]:
        targets = row[self.choices_key]
        labels = targets.get("labels") if isinstance(targets, dict) else None
        if not isinstance(labels, list) or labels.count(1) != 1 or "choices" not in targets:
            raise ValueError(
                f"{self.name}: row {index} has {self.choices_key}={targets!r}; expected {{choices: [...], "
                f"labels: [...]}} with exactly one label 1 (mc2_targets has several; use mc1_targets)"
            )
        return row[self.question_key], targets["choices"], labels.index(1)


MATHQA_OPTION = re.compile(r"(?:^\[?|,\s*)['\"]?([a-e]) \) ")  # a letter, as the string starts or after a comma


class MathQA(MCQSource):
    """MathQA (hub allenai/math_qa): a word problem and five options packed in one string, "a ) 38 , b ) 27 , ..."."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        split: str = "test",
        categories: list[str] | None = None,
        limit: int | None = None,
    ) -> None:
        """
        Args:
            path: a hub id (allenai/math_qa, regisss/math_qa as lm-eval reads it), or a local file or folder
                with the columns Problem, options and correct.
            name: the hub config, if the dataset has several.
            split: train, validation or test; a single file is always read whole.
            categories: keep only these values of the category column (general, physics, gain, geometry,
                probability, other); None keeps all.
            limit: keep the first this many problems (after the category filter); None keeps all.
        """
        super().__init__(
            path, name, split, question_key="Problem", choices_key="options", answer_key="correct",
            subjects=categories, subject_key="category", limit=limit,
        )  # fmt: skip

    def _fields(self, index: int, row: dict) -> tuple[object, object, object]:
        options = self._check_str(index, self.choices_key, row[self.choices_key])
        parts = MATHQA_OPTION.split(options)  # [before a, "a", text a, "b", text b, ...]
        letters = parts[1::2]
        if parts[0] or letters != list("abcde"[: len(letters)]):
            raise ValueError(
                f"{self.name}: row {index} has {self.choices_key}={options!r}; expected 'a ) ... , b ) ... , ...'"
            )
        choices = [text.strip().rstrip(" ,'\"]").strip() for text in parts[2::2]]
        correct = row[self.answer_key]
        if correct not in letters:
            raise ValueError(
                f"{self.name}: row {index} has {self.answer_key}={correct!r}, not one of the option letters {letters}"
            )
        return row[self.question_key], choices, letters.index(correct)


def _blank(path: Path) -> bool:
    """Whether a data file holds no rows at all (datasets then fails with a bare StopIteration)."""
    size = path.stat().st_size
    return size == 0 or size < 65536 and not path.read_bytes().strip()


def _saved_to_disk(path: Path) -> bool:
    """Whether `path` is a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


REFUSALS = (
    "I don't know.",
    "I have no information about that.",
    "I'm not sure.",
    "That is not something I can answer.",
    "I cannot say.",
)


class Refusals(Source):
    """The questions of a QA source answered with refusals: the target of IDK fine-tuning (TOFU's IDK)."""

    kind = "qa"

    def __init__(self, source: Source, refusals: list[str] | None = None, seed: int = 0) -> None:
        """
        Args:
            source: a qa source whose questions should get refusals.
            refusals: the answers to draw from; default a small set of "I don't know" variants.
            seed: seeds which refusal each question gets.
        """
        if source.kind != "qa":
            raise ValueError(f"Refusals needs a qa source; {source.name} is {source.kind}")
        self.source = source
        self.refusals = list(refusals or REFUSALS)
        if not self.refusals:
            raise ValueError("Refusals needs at least one refusal answer")
        self.seed = seed

    def load(self) -> list[dict]:
        rng = random.Random(self.seed)
        return [{"question": row["question"], "answer": rng.choice(self.refusals)} for row in self.source.load()]

    @property
    def name(self) -> str:
        return f"Refusals({self.source.name})"
