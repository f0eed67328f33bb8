"""Cross-check MCQ scores with lm-evaluation-harness: the same rows as a local lm-eval task, run on a local model."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from unlearn.eval.scoring import LETTERS
from unlearn.tiny import SPECIAL_TOKENS

# lm-eval's WMDP zero-shot template, verbatim from lm_eval/tasks/wmdp/_default_template_yaml.
WMDP_DOC_TO_TEXT = (
    "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
)
# The cloze template as lm-eval's ARC/SciQ-style tasks write it: the choice text after "Answer:".
CLOZE_DOC_TO_TEXT = "Question: {{question}}\nAnswer:"


def write_harness_task(
    folder: str | Path,
    task: str,
    rows: list[dict],
    description: str = "",
    template: str = "letter",
    *,
    verbatim: bool = False,
) -> Path:
    """Rows as `<task>.jsonl` plus `<task>.yaml`, WMDP's lm-eval task config (or a cloze one) pointed at that file.

    Args:
        folder: where both files go; pass it to `harness_predictions`.
        task: the lm-eval task name (also the file names).
        rows: 4-choice rows {question, choices, answer}, e.g. from MCQSource or SyntheticMCQ.
        description: text before each question, as lm-eval's wmdp_bio puts its subject line.
        template: letter (WMDP's: scored on A..D) or cloze (scored on each choice's text).
        verbatim: cloze with each row's question as the whole context and its choices straight after it (no
            delimiter): rows whose questions are already in a chat template.

    Returns:
        The YAML file.
    """
    if verbatim and template != "cloze":
        raise ValueError("verbatim rows are scored cloze: their choices follow the question directly")
    bad = [k for k, row in enumerate(rows) if len(row["choices"]) != 4]
    if bad:
        raise ValueError(f"WMDP's lm-eval template letters exactly 4 choices; rows {bad[:10]} have another number")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{task}.jsonl"
    data.write_text("".join(json.dumps({k: row[k] for k in ("question", "choices", "answer")}) + "\n" for row in rows))
    config = {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "num_fewshot": 0,
        "description": description,
        "doc_to_text": "{{question}}" if verbatim else WMDP_DOC_TO_TEXT if template == "letter" else CLOZE_DOC_TO_TEXT,
        "doc_to_choice": ["A", "B", "C", "D"] if template == "letter" else "{{choices}}",
        "doc_to_target": "answer",
        "target_delimiter": "" if verbatim else " ",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    path = folder / f"{task}.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


def harness_predictions(
    model_dir: str | Path, folder: str | Path, task: str, *, batch_size: int = 32, device: str = "cpu"
) -> tuple[float, list[int]]:
    """lm-eval's accuracy and its predicted choice per row (in row order) on a task from `write_harness_task`.

    Args:
        model_dir: a save_pretrained folder holding the model and its tokenizer.
        folder: the folder `write_harness_task` wrote.
        task: the task name given to `write_harness_task`.
        batch_size: sequences per forward.
        device: cpu, cuda, ...

    Returns:
        (acc, predictions): lm-eval's acc and, per row, the argmax of its choice log-likelihoods.
    """
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise ImportError("the harness cross-check needs lm-eval: pip install 'unlearn[test]'") from err

    model = HFLM(pretrained=str(model_dir), batch_size=batch_size, device=device)
    results = lm_eval.simple_evaluate(
        model=model,
        tasks=[task],
        task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
    )
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    predictions = [max(range(len(s["filtered_resps"])), key=lambda c: s["filtered_resps"][c][0]) for s in samples]
    return float(results["results"][task]["acc,none"]), predictions


def word_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer laid out like Llama-2's and Mistral's tokenizer.json: "▁" prepended, spaces to "▁".

    Every "▁"-led word of `texts` (and "▁", "▁A".."▁Z") is one token, so a letter after "Answer:" is one token and
    scoring takes the one-forward fast path; " A" tokenised alone is "▁", "▁A", the case where a continuation must be
    split off the tokenised context + continuation, as lm-eval does. Unseen words map to <unk>; BOS is prepended.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    pre_tokenizer = pre_tokenizers.Split(Regex("▁"), behavior="merged_with_next")
    words = {"▁", *(f"▁{letter}" for letter in LETTERS)}
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS.values(), *sorted(words)])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
