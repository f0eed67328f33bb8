"""Open answers: a model's generated answers, and SQuAD's normalisation to compare them (eval and methods use both)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.models import evaluating
from unlearn.strategies import in_lockstep

PUNCTUATION = frozenset(string.punctuation)
ARTICLES = re.compile(r"\b(a|an|the)\b")


def generate_answers(
    model,
    tokenizer,
    questions: list[str],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    stop: Sequence[str] = ("\n",),
    progress: bool = False,
    desc: str = "generate",
    prompt_format: PromptFormat = PLAIN,
) -> list[str]:
    """Answer each question put in `prompt_format`, left-padded so every row continues from its own last token.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer, with a pad token; its padding side is restored afterwards.
        questions: the questions, without the prompt format.
        max_new_tokens: generation budget per answer.
        batch_size: prompts per `generate` call.
        do_sample: greedy when False; otherwise pure temperature sampling (no top-k / top-p), so repeated
            samples follow the model's own distribution.
        temperature: softmax temperature when sampling.
        stop: strings that end an answer; generation also stops early once every row has produced one.
        progress: show a progress bar over batches.
        desc: the bar's name (the evaluator's tasks name theirs by split and task, e.g. "retain QA generate").
        prompt_format: how each question is put to the model (the one training used).

    Returns:
        One answer per question: the continuation cut at EOS and at the first stop string, stripped.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = _eos_ids(model, tokenizer)
    sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if do_sample else {}
    stopping = {"stop_strings": list(stop), "tokenizer": tokenizer} if stop else {}
    answers = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        with evaluating(model), torch.inference_mode():
            for start in tqdm(range(0, len(questions), batch_size), desc=desc, disable=not progress):
                prompts = [prompt_format.prompt(q, tokenizer) for q in questions[start : start + batch_size]]
                special = prompt_format.special_tokens
                batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=special)
                output = model.generate(
                    input_ids=batch["input_ids"].to(model.device),
                    attention_mask=batch["attention_mask"].to(model.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    pad_token_id=pad_id,
                    synced_gpus=False if in_lockstep(model) else None,
                    **sampling,
                    **stopping,
                )  # (B, T + new)
                for ids in output[:, batch["input_ids"].shape[1] :].tolist():
                    ids = ids[: next((k for k, t in enumerate(ids) if t in eos_ids), len(ids))]
                    answers.append(_cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stop))
    finally:
        tokenizer.padding_side = padding_side
    return answers


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends an answer: the tokenizer's EOS and whatever the model's generation config adds."""
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = config_eos if isinstance(config_eos, list) else [config_eos]
    return {i for i in [tokenizer.eos_token_id, *ids] if i is not None}


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string, stripped."""
    end = min((text.find(s) for s in stop if s and s in text), default=len(text))
    return text[:end].strip()
