"""Rejection-based methods: teach the model to refuse on the forget questions instead of pushing it away."""

from __future__ import annotations

import torch

from unlearn.answers import generate_answers, normalize_answer
from unlearn.losses import dpo_loss, idk_ap_retain_loss, mean_token_nll, sequence_nll
from unlearn.methods.base import token_count
from unlearn.methods.divergence import ReferenceScored, RetainRegularised


class IDKFineTune(RetainRegularised):
    """IDK fine-tuning (Maini et al. 2024, TOFU): NLL of refusals on forget questions + retain_weight·L_r.

    The forget source supplies the refusals, e.g. `unlearn.data.sources.Refusals(source=...)`.
    """

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        outputs = self.lm_outputs(forget, "forget")
        refusal_nll = mean_token_nll(outputs, forget["labels"], num_tokens=token_count(forget))
        return self.with_retain(refusal_nll, batch)


class IDKAP(IDKFineTune):
    """IDK+AP (Yuan et al. 2024): IDK fine-tuning + retain_weight·L_r + γ·(answer preservation:
    the true retain answer over IDK).

        The refusals paired with the retain questions are those the forget source teaches (the distinct forget
        answers, e.g. from `Refusals`), assigned to retain rows by row index; they are collated with the data
        module's collator, so no data change is needed.
    """

    def __init__(self, *, beta: float = 0.1, gamma: float = 1.0, **kwargs) -> None:
        """
        Args:
            beta: β of the answer-preservation term.
            gamma: γ, its weight.
            **kwargs: see IDKFineTune.
        """
        super().__init__(**kwargs)
        self.beta = beta
        self.gamma = gamma

    def on_fit_start(self) -> None:
        """Pairs every retain question with a forget refusal before training; data it cannot pair is an error."""
        super().on_fit_start()
        data = self.trainer.datamodule
        retain = data.rows_of("retain") if "retain" in data.roles() else []
        if not retain or any("question" not in row for row in retain):
            raise ValueError(
                "IDKAP pairs retain questions with refusals: data.retain must be a qa source "
                "(e.g. unlearn.data.sources.SyntheticQA), without passages"
            )
        refusals = sorted({row["answer"] for row in data.rows_of("forget") if "answer" in row})
        if not refusals:
            raise ValueError("IDKAP takes its refusals from data.forget; make it a qa source such as Refusals(...)")
        self.retain_refusals = [
            {"question": row["question"], "answer": refusals[i % len(refusals)]} for i, row in enumerate(retain)
        ]

    def refusal_batch(self, retain: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The retain batch's questions answered with refusals, collated like every other batch."""
        collated = self.trainer.datamodule.collate([self.retain_refusals[i] for i in retain["index"].tolist()])
        return {key: value.to(self.device) for key, value in collated.items()}

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        terms = super().objective(batch)
        retain = batch["retain"]
        refusal = self.refusal_batch(retain)
        nll_idk, _ = sequence_nll(self.lm_outputs(refusal), refusal["labels"])
        nll_true, _ = sequence_nll(self.lm_outputs(retain, "retain"), retain["labels"])  # the retain term's forward
        preservation = idk_ap_retain_loss(nll_idk, nll_true, beta=self.beta)
        return {**terms, "loss": terms["loss"] + self.gamma * preservation, "ap": preservation}


class DPO(ReferenceScored):
    """DPO / IDK-DPO (Rafailov et al. 2023; Maini et al. 2024): prefer `forget_alt` (a refusal) to the forget answer.

    The data module's `forget_alt` source gives, row for row, the preferred answer to each forget question.
    """

    reference_roles = ("forget", "forget_alt")

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        rejected, chosen = batch["forget"], batch["forget_alt"]
        nll_chosen, _ = sequence_nll(self.lm_outputs(chosen, "forget_alt"), chosen["labels"])
        nll_rejected, _ = sequence_nll(self.lm_outputs(rejected, "forget"), rejected["labels"])
        loss = dpo_loss(
            nll_chosen,
            nll_rejected,
            self.reference_nll(chosen, "forget_alt"),
            self.reference_nll(rejected),
            beta=self.beta,
        )
        return self.with_retain(loss, batch)


class AltPO(DPO):
    """AltPO-style (Mekala et al. 2024): DPO preferring the model's own wrong answers to the true forget answers.

    Before training (and before the reference is cached), the initial model samples an alternate answer to
    each forget question, prompted with the question followed by `instruction`; samples equal to the true
    answer after SQuAD normalisation, or empty, are drawn again. The alternates become `data.forget_alt`.
    """

    def __init__(
        self,
        *,
        instruction: str = "Give a wrong answer.",
        temperature: float = 1.5,
        attempts: int = 10,
        max_new_tokens: int = 16,
        alternate_seed: int = 0,
        **kwargs,
    ) -> None:
        """
        Args:
            instruction: appended to each forget question when sampling alternates.
            temperature: sampling temperature of the alternates.
            attempts: sampling rounds for questions whose alternates keep matching the truth.
            max_new_tokens: length budget of an alternate.
            alternate_seed: seeds the sampling, so the alternates are the same on every run and rank.
            **kwargs: see DPO.
        """
        super().__init__(**kwargs)
        self.instruction = instruction
        self.temperature = temperature
        self.attempts = attempts
        self.max_new_tokens = max_new_tokens
        self.alternate_seed = alternate_seed

    def on_fit_start(self) -> None:
        """Samples the alternates and serves them as forget_alt before the reference cache scores them."""
        data = self.trainer.datamodule
        if "forget_alt" in data.roles():  # refused before sampling, which is the slow part
            raise ValueError("AltPO generates its own alternates; remove data.forget_alt from the config")
        data.add_role("forget_alt", self.alternates(data.rows_of("forget")))
        super().on_fit_start()

    def alternates(self, rows: list[dict]) -> list[dict]:
        """One sampled answer per forget QA row that differs from the true one after normalisation."""
        if any("question" not in row for row in rows):
            raise ValueError("AltPO needs qa forget rows (question/answer) to generate alternates; drop passages")
        truths = [normalize_answer(row["answer"]) for row in rows]
        found: dict[int, str] = {}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.alternate_seed)
            for _ in range(self.attempts):
                todo = [i for i in range(len(rows)) if i not in found]
                if not todo:
                    break
                answers = generate_answers(
                    self.model,
                    self.tokenizer,
                    [f"{rows[i]['question']} {self.instruction}" for i in todo],
                    max_new_tokens=self.max_new_tokens,
                    do_sample=True,
                    temperature=self.temperature,
                    prompt_format=self.prompt_format,
                )
                found.update(
                    {i: a for i, a in zip(todo, answers, strict=True) if normalize_answer(a) not in ("", truths[i])}
                )
        missing = [i for i in range(len(rows)) if i not in found]
        if missing:
            raise ValueError(
                f"AltPO found no alternate different from the true answer for {len(missing)} of {len(rows)} forget "
                f"questions after {self.attempts} attempts (e.g. {rows[missing[0]]['question']!r}); "
                "raise temperature or attempts"
            )
        return [{"question": row["question"], "answer": found[i]} for i, row in enumerate(rows)]
