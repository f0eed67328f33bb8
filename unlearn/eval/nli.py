"""An NLI model as a judge: does one text entail another? Used to credit paraphrased answers that exact match misses."""

from __future__ import annotations

import torch


class NLIJudge(torch.nn.Module):
    """A sequence-classification NLI model whose "entailment" class is found by name in its config's id2label."""

    def __init__(self, name_or_path: str, batch_size: int = 32) -> None:
        """
        Args:
            name_or_path: hub id or local directory of an AutoModelForSequenceClassification NLI model.
            batch_size: (premise, hypothesis) pairs per forward pass.
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForSequenceClassification.from_pretrained(name_or_path).eval()
        except (OSError, ValueError) as err:
            raise ValueError(
                f"cannot load the NLI model {name_or_path!r}: {err}. Give a hub id reachable from this machine or a "
                "local directory holding a sequence-classification model and its tokenizer"
            ) from err
        self.entailment_index = entailment_index(self.model.config.id2label, name_or_path)
        self.batch_size = batch_size

    @torch.inference_mode()
    def forward(self, premises: list[str], hypotheses: list[str]) -> torch.Tensor:
        """(B,) bool: whether the model's most likely class for each (premise, hypothesis) pair is entailment."""
        verdicts = []
        for start in range(0, len(premises), self.batch_size):
            batch = self.tokenizer(
                premises[start : start + self.batch_size],
                hypotheses[start : start + self.batch_size],
                padding=True,
                truncation=True,
                return_tensors="pt",
            ).to(self.model.device)
            verdicts.append(self.model(**batch).logits.argmax(dim=-1) == self.entailment_index)  # (b,)
        if not verdicts:
            return torch.zeros(0, dtype=torch.bool)
        return torch.cat(verdicts)


def entailment_index(id2label: dict, name: str) -> int:
    """The class id whose label is "entailment" (any case); models label their classes in different orders."""
    matches = [int(i) for i, label in id2label.items() if str(label).lower() == "entailment"]
    if len(matches) != 1:
        raise ValueError(
            f"NLI model {name!r} has id2label={dict(id2label)}, with no single 'entailment' label; use an NLI "
            "model whose config names its classes (e.g. sileod/deberta-v3-base-tasksource-nli) or set "
            "config.id2label in its config.json"
        )
    return matches[0]
