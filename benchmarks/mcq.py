"""MCQ accuracy by log-likelihood: lm-evaluation-harness against our MCQTask, same model, rows and template.

    python -m benchmarks.mcq                 # 300 synthetic retain questions, on a GPU if there is one
    python -m benchmarks.mcq --limit 100 --batch-size 16
    python -m benchmarks.mcq --real          # SmolLM2-135M on the real-facts MCQ: cloze (plain, chat) and letter

Two local models by default, letter template: `fast-path`, a random tiny Llama with a Llama-2-style word tokenizer
(each letter one token, so we score a question in one forward), and the built-in `tiny-target` (" A" is two
tokens: a question and all its choices run as one packed sequence). `--real` scores a real 49k-vocabulary model, the
cloze questions also in its chat template (lm-eval is given the templated text itself, choices straight after it:
it then also scores the template's trailing newline, the same for every choice, so picks compare). Each side is
timed from its model folder to its accuracy (loading included, lm-eval imported beforehand), the two sides
alternating `--repeats` times and the fastest kept (a shared CPU's load drifts); the per-question predictions
must agree. JSON under benchmarks/results/mcq_<device>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.harness import harness_predictions, word_tokenizer, write_harness_task
from benchmarks.kernels import RESULTS
from benchmarks.results_file import result_name
from unlearn import smollm2
from unlearn.data.prompts import PLAIN, PromptFormat
from unlearn.data.sources import MCQSource, SyntheticMCQ
from unlearn.eval.scoring import letter_prompt
from unlearn.eval.tasks import MCQTask
from unlearn.io import atomic_write_json
from unlearn.models import BUILTIN, load_model, load_tokenizer, resolve
from unlearn.tiny import build_tiny_model

DESCRIPTION = "The following are multiple choice questions (with answers) about biology.\n\n"  # lm-eval's wmdp_bio


def fast_path_model(folder: Path, rows: list[dict]) -> Path:
    """A random build_tiny_model-sized Llama whose word tokenizer makes " A".." D" single tokens, saved to `folder`."""
    tokenizer = word_tokenizer([letter_prompt(r["question"], r["choices"], description=DESCRIPTION) for r in rows])
    build_tiny_model(len(tokenizer), initializer_range=0.5).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ours(
    model_dir: Path, data: Path, batch_size: int, device: str, template: str, description: str, fmt: PromptFormat
) -> tuple[float, list[int]]:
    """Our MCQTask's accuracy and predictions, from loading the model to the metric."""
    task = MCQTask("wmdp", MCQSource(str(data)), template=template, description=description)
    model, tokenizer = load_model(str(model_dir)).to(device), load_tokenizer(str(model_dir))
    metric = task.make_metric().to(device)
    items = task.run(model, tokenizer, task.load(), metric, batch_size, progress=False, prompt_format=fmt)
    return float(metric.compute()), [item["predicted"] for item in items]


def timed(fn, *args, **kwargs) -> tuple[float, tuple[float, list[int]]]:
    """Wall-clock seconds of fn(*args, **kwargs) (synchronised on a GPU) and its result."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def cases(real: bool, limit: int, work: Path) -> list[tuple[str, Path, list[dict], str, PromptFormat]]:
    """(name, model folder, rows, template, prompt format) to compare: the tiny models, or SmolLM2 on real facts."""
    if real:
        rows = [row for split in ("forget", "retain") for row in MCQSource(f"real-facts/{split}_mcq").load()][:limit]
        model_dir = Path(resolve(smollm2.NAME))
        return [
            (smollm2.NAME, model_dir, rows, "cloze", PLAIN),
            (smollm2.NAME, model_dir, rows, "cloze", PromptFormat("chat")),
            (smollm2.NAME, model_dir, rows, "letter", PLAIN),
        ]
    rows = SyntheticMCQ("retain").load()[:limit]
    fast = fast_path_model(work / "fast-path", rows)
    return [("fast-path", fast, rows, "letter", PLAIN), ("tiny-target", BUILTIN["tiny-target"], rows, "letter", PLAIN)]


def run(real: bool, limit: int, batch_size: int, device: str, repeats: int, work: Path) -> dict:
    import lm_eval  # imported before timing: its import is not evaluation time

    results = []
    for k, (name, model_dir, rows, template, fmt) in enumerate(cases(real, limit, work)):
        task_dir, task = work / f"task{k}", f"mcq_{k}"
        description = DESCRIPTION if template == "letter" else ""
        data = write_harness_task(work / f"ours{k}", task, rows, description, template).with_suffix(".jsonl")
        if fmt.chat:  # lm-eval reads the very text our chat prompt format makes
            tokenizer = load_tokenizer(str(model_dir))
            rows = [{**row, "question": fmt.prompt(row["question"], tokenizer)} for row in rows]
        write_harness_task(task_dir, task, rows, description=description, template=template, verbatim=fmt.chat)
        harness_times, ours_times = [], []
        for _ in range(repeats):
            harness_s, (harness_acc, harness_pred) = timed(
                harness_predictions, model_dir, task_dir, task, batch_size=batch_size, device=device
            )
            ours_s, (ours_acc, ours_pred) = timed(ours, model_dir, data, batch_size, device, template, description, fmt)
            harness_times.append(harness_s)
            ours_times.append(ours_s)
        harness_s, ours_s = min(harness_times), min(ours_times)
        row = dict(
            model=name, template=template, prompt_format=fmt.style, questions=len(rows), lm_eval_acc=harness_acc,
            ours_acc=ours_acc,
            same_predictions=sum(a == b for a, b in zip(harness_pred, ours_pred, strict=True)),
            distinct_predictions=len(set(ours_pred)), lm_eval_s=harness_s, ours_s=ours_s, speedup=harness_s / ours_s,
            lm_eval_runs_s=harness_times, ours_runs_s=ours_times,
        )  # fmt: skip
        print(
            f"{name:12s} {template:6s} {fmt.style:5s} acc lm-eval {harness_acc:.4f} ours {ours_acc:.4f}  same "
            f"predictions {row['same_predictions']}/{len(rows)}  lm-eval {harness_s:7.2f} s  ours {ours_s:7.2f} s  "
            f"ours is {row['speedup']:.1f}x faster",
            flush=True,
        )
        results.append(row)
    cuda = device.startswith("cuda")
    return dict(
        device=torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()}",
        threads=torch.get_num_threads(), date=datetime.date.today().isoformat(), torch=torch.__version__,
        lm_eval=lm_eval.__version__, batch_size=batch_size, repeats=repeats, results=results,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=300, help="questions to score")
    parser.add_argument("--real", action="store_true", help="SmolLM2-135M on the real-facts MCQ instead")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per forward, both sides")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timings per side; the fastest is kept")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        report = run(args.real, args.limit, args.batch_size, args.device, args.repeats, Path(work))
    kind = "mcq_real" if args.real else "mcq"
    path = atomic_write_json(args.out / f"{result_name(kind, report['device'], report['date'])}.json", report)
    print(f"device {report['device']}; wrote {path}")


if __name__ == "__main__":
    main()
