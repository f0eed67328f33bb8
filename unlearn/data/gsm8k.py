"""GSM8K (Cobbe et al. 2021, arXiv:2110.14168): grade-school maths problems whose answers end in "#### <number>"."""

from __future__ import annotations

import re

from unlearn.data.sources import DatasetSource

FINAL_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


class GSM8KSource(DatasetSource):
    """QA rows {"question", "answer"} from openai/gsm8k or a file in its schema; answers keep the worked solution."""

    kind = "qa"

    def __init__(
        self, path: str = "openai/gsm8k", name: str | None = "main", split: str = "test", limit: int | None = None
    ):
        """
        Args:
            path: the hub id, a local .json/.jsonl/.parquet/.csv file in GSM8K's schema, or a save_to_disk folder.
            name: the hub config ("main" or "socratic"); None for a local file.
            split: train or test; a single file is always read whole.
            limit: keep the first this many problems; None keeps all.
        """
        super().__init__(path, name, split, limit)

    def load(self) -> list[dict]:
        rows = []
        for index, row in enumerate(self._first(self._load({"question_key": "question", "answer_key": "answer"}))):
            answer = self._check_str(index, "answer", row["answer"])
            if not FINAL_ANSWER.search(answer.strip()):
                raise ValueError(
                    f"{self.name}: row {index} has answer {answer[-60:]!r}, which does not end in '#### <number>' as "
                    "GSM8K's answers do; check that the file is in GSM8K's schema"
                )
            rows.append({"question": self._check_str(index, "question", row["question"]), "answer": answer})
        return rows
