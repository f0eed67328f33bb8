"""ELM: erase a concept by distilling the original model's distribution edited by expert/novice contrastive prompts."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from unlearn.checks import refuse
from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses import elm_erase_loss, elm_target_logits, mean_token_nll
from unlearn.methods.base import token_count, token_count_in
from unlearn.methods.divergence import RetainRegularised
from unlearn.methods.reference import frozen_copy
from unlearn.models import cache_of, with_cache

EXPERT_PROMPT = "Here is a text written by an expert of {concept}, with all the knowledge:\n"
NOVICE_PROMPT = (
    "The text is written by a novice, with no knowledge about {concept} and steering the conversation to random "
    "fun topics:\n"
)


class ELM(RetainRegularised):
    """ELM (Gandikota et al. 2024, arXiv:2410.02760): L = γ·L_erase + α·L_retain + λ_f·L_fluency, all three terms of
    the paper, on a policy that is meant to carry LoRA adapters (the original model is then the policy with them off).

    - L_erase (``elm_erase_loss``): on forget answer tokens, cross entropy of the policy to
      ``softmax(z + η·(z⁻ − z⁺))``, z, z⁻, z⁺ the original's logits on x, novice prompt + x and expert prompt + x.
    - L_retain (``RetainRegularised``): KL(π_orig ‖ π) on retain answer tokens (the paper's cross entropy to the
      original's distribution, minus its constant entropy), or ``retain_loss: nll``.
    - L_fluency (the paper's conditional fluency): each forget row's question (the text before its answer) is continued
      by ``fluency_tokens`` tokens sampled from the original model with the erasure applied, softmax(z + η_f·(z⁻ − z⁺))
      (adapters off, no gradient); L_fluency is the policy's NLL of those tokens, so it learns to answer about the
      concept fluently rather than emit gibberish.

    Where this differs from the authors' code (github.com/rohitgandikota/erasing-llm, trainscripts/erase.py): one
    expert and one novice prompt rather than one of ten drawn per step; a constant η rather than η ramped from 1 at the
    first position of the text; no temperature (1.2 there) or top-50 cut of the target; the erase term on answer tokens
    (every token of a passage row) rather than every token of the text; samples drawn on the fly from c± + question +
    sample, rather than generated beforehand from c± alone after a "let's change the topic" sentence.
    """

    full_logits = True

    def __init__(
        self,
        *,
        concept: str,
        eta: float = 1000.0,
        gamma: float = 1.0,
        fluency_weight: float = 1.0,
        fluency_tokens: int = 16,
        fluency_eta: float = 3.0,
        expert_prompt: str = EXPERT_PROMPT,
        novice_prompt: str = NOVICE_PROMPT,
        retain_loss: Literal["nll", "kl"] = "kl",
        **kwargs,
    ) -> None:
        """
        Args:
            concept: what to erase, in words (e.g. "biology and bioweapons"); replaces {concept} in both prompts.
            eta: erasure strength η of the erase target (the authors' code: 1000, ramped from 1).
            gamma: weight of the erase term (the paper's λ₁ = 1); `retain_weight` is the retain term's (λ₂ = 1).
            fluency_weight: weight λ₃ of the conditional-fluency term (1 in the paper); 0 drops it and its sampling.
            fluency_tokens: tokens sampled after each forget question for the fluency term (the authors: 100-300).
            fluency_eta: erasure strength of the sampling distribution (the authors' code generates with 3).
            expert_prompt: c⁺, the context that presents the text as an expert's; {concept} is replaced.
            novice_prompt: c⁻, the context that presents the text as a novice's; {concept} is replaced.
            retain_loss: kl = KL(π_orig ‖ π) on retain answer tokens (the paper's), or nll.
            **kwargs: see RetainRegularised (retain_weight) and UnlearnModule (adapter: LoRA).
        """
        super().__init__(retain_loss=retain_loss, **kwargs)
        problems = [
            f"model.init_args.{name}={value} must be >= 0"
            for name, value in (("eta", eta), ("gamma", gamma), ("fluency_weight", fluency_weight))
            if value < 0
        ]
        if fluency_tokens < 1:
            problems.append(f"model.init_args.fluency_tokens={fluency_tokens} must be >= 1 (fluency_weight 0 drops it)")
        if not concept.strip():
            problems.append("model.init_args.concept is empty; name the concept to erase")
        if expert_prompt == novice_prompt:
            problems.append("model.init_args.expert_prompt equals novice_prompt (no erasure); make them differ")
        refuse(problems)
        self.concept = concept
        self.eta = eta
        self.gamma = gamma
        self.fluency_weight = fluency_weight
        self.fluency_tokens = fluency_tokens
        self.fluency_eta = fluency_eta
        self.expert_prompt = expert_prompt.replace("{concept}", concept)
        self.novice_prompt = novice_prompt.replace("{concept}", concept)

    def needs_frozen_reference(self) -> bool:
        return True  # the original's logits on every forget batch, three times over

    def prepare(self) -> None:
        self.reference = frozen_copy(self.model)  # with LoRA: the policy with its adapters off
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        self.prefixes = {"novice": encode(self.novice_prompt), "expert": encode(self.expert_prompt)}

    def objective(self, batch: dict) -> dict[str, torch.Tensor]:
        forget = batch["forget"]
        with torch.no_grad():
            original, novice, expert = self.original_logits(forget["input_ids"], forget["attention_mask"])
        logits = self.lm_outputs(forget, "forget")
        erase = elm_erase_loss(
            logits, original, novice, expert, forget["labels"], eta=self.eta, num_tokens=token_count(forget)
        )
        terms = self.with_retain(self.gamma * erase, batch)
        if self.fluency_weight > 0:
            sample = self.fluency_sample(forget)
            fluency = mean_token_nll(
                self.lm_outputs(sample), sample["labels"], num_tokens=token_count_in(sample["labels"], forget)
            )
            terms = {**terms, "loss": terms["loss"] + self.fluency_weight * fluency, "fluency": fluency}
        return terms

    def original_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The original model's logits (B, T, V) on x, on c⁻ + x and on c⁺ + x, the last two aligned with x: one
        forward of the three batches right-padded to one width (padding after a row changes none of its logits)."""
        bos = self.tokenizer.bos_token_id
        parts = [(input_ids, attention_mask, 0)]
        parts += [with_prefix(input_ids, attention_mask, self.prefixes[role], bos) for role in ("novice", "expert")]
        width = max(ids.shape[1] for ids, _, _ in parts)
        ids = torch.cat([F.pad(i, (0, width - i.shape[1]), value=self.tokenizer.pad_token_id) for i, _, _ in parts])
        mask = torch.cat([F.pad(m, (0, width - m.shape[1]), value=0) for _, m, _ in parts])
        logits = self.reference(input_ids=ids, attention_mask=mask).logits
        rows, length = input_ids.shape
        return tuple(logits[k * rows : (k + 1) * rows, shift : shift + length] for k, (_, _, shift) in enumerate(parts))

    @torch.no_grad()
    def fluency_sample(self, forget: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each row's prompt (the tokens before its first answer token) continued by `fluency_tokens` tokens drawn
        from softmax(z + η_f·(z⁻ − z⁺)) of the original model; labels keep the drawn tokens up to the first EOS."""
        input_ids, labels = forget["input_ids"], forget["labels"]
        answer = labels != IGNORE_INDEX
        lengths = forget["attention_mask"].sum(dim=1)
        start = torch.where(answer.any(dim=1), answer.int().argmax(dim=1), lengths).clamp(min=1)  # (B,)
        drawn = self.continuations(input_ids, start, row_generators(forget, self.global_step))  # (B, K)
        rows = torch.arange(len(input_ids), device=input_ids.device)[:, None]
        width = int(start.max()) + self.fluency_tokens
        columns = torch.arange(width, device=input_ids.device)
        ids = torch.full((len(input_ids), width), self.tokenizer.pad_token_id, device=input_ids.device)
        kept = min(width, input_ids.shape[1])
        ids[:, :kept] = input_ids[:, :kept]
        ids = torch.where(columns < start[:, None], ids, self.tokenizer.pad_token_id)
        positions = start[:, None] + torch.arange(self.fluency_tokens, device=input_ids.device)  # (B, K)
        ids[rows, positions] = drawn
        eos = (drawn == self.tokenizer.eos_token_id).int()
        after_eos = (eos.cumsum(dim=1) - eos) > 0  # drawn after the row's first EOS: not learned
        sampled = torch.full_like(ids, IGNORE_INDEX)
        sampled[rows, positions] = torch.where(after_eos, IGNORE_INDEX, drawn)
        attention_mask = (columns < (start + self.fluency_tokens)[:, None]).long()
        return {"input_ids": ids, "attention_mask": attention_mask, "labels": sampled}

    def continuations(self, input_ids: torch.Tensor, start: torch.Tensor, draws: list[torch.Generator]) -> torch.Tensor:
        """(B, K) tokens drawn one at a time after each row's first `start` tokens, from the erased original's
        softmax(z + η_f·(z⁻ − z⁺)): the three contexts (x, c⁻ + x, c⁺ + x) run as one left-padded batch with a KV
        cache, so each drawn token costs one position's forward rather than the whole prompt's."""
        bos = self.tokenizer.bos_token_id
        keep = int(bos is not None and bool((input_ids[:, 0] == bos).all()))  # the prefix goes after a BOS
        prompts = [
            row[:keep].tolist() + prefix + row[keep:length].tolist()
            for prefix in ([], self.prefixes["novice"], self.prefixes["expert"])
            for row, length in zip(input_ids, start.tolist(), strict=True)
        ]
        width = max(map(len, prompts))
        ids = input_ids.new_tensor([[self.tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
        mask = input_ids.new_tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        position = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache, drawn = None, []
        for _ in range(self.fluency_tokens):
            cached = with_cache(self.model, cache)
            out = self.reference(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, **cached)
            cache = cache_of(out)
            target = elm_target_logits(*out.logits[:, -1].chunk(3), eta=self.fluency_eta)  # (B, V)
            drawn.append(gumbel_max(target, draws))
            ids = drawn[-1].repeat(3)[:, None]
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
            position = position[:, -1:] + 1
        return torch.stack(drawn, dim=1)


def row_generators(rows: dict[str, torch.Tensor], step: int) -> list[torch.Generator]:
    """One random stream per row, seeded by (the run's seed, the step, the row's index in its set): a row's samples
    are then the same whichever rank, batch or world size draws them (a rank's own stream would give each rank's
    rows the draws of the first rows of one process, and ranks seeded alike the same draws)."""
    base = torch.initial_seed()  # the run's seed (seed_everything), the same on every rank
    indices = rows["index"].tolist() if "index" in rows else range(len(rows["input_ids"]))
    seeds = [((base * 1_000_003 + step) * 1_000_003 + int(index)) % 2**63 for index in indices]
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def gumbel_max(logits: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row drawn from softmax(logits) (B, V), row b from generators[b]: argmax(logits + Gumbel noise)."""
    uniform = torch.stack([torch.rand(logits.shape[-1], generator=g, dtype=torch.float64) for g in generators])
    noise = -torch.log(-torch.log(uniform.clamp(min=1e-300)))
    return (logits.double() + noise.to(logits.device)).argmax(dim=-1)


def with_prefix(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix: list[int], bos_token_id: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """c + x for a right-padded batch: the prefix's ids after the BOS (before the first token where rows have no BOS),
    and the shift P = len(prefix) such that logits[:, P:] of c + x predict the same tokens as logits of x."""
    keep = int(bos_token_id is not None and bool((input_ids[:, 0] == bos_token_id).all()))
    block = torch.tensor(prefix, dtype=input_ids.dtype, device=input_ids.device).expand(len(input_ids), -1)
    ids = torch.cat([input_ids[:, :keep], block, input_ids[:, keep:]], dim=1)
    mask = torch.cat([attention_mask[:, :keep], torch.ones_like(block), attention_mask[:, keep:]], dim=1)
    return ids, mask, len(prefix)
