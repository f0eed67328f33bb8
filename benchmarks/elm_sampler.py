"""ELM's fluency sampler: its KV-cached draws against the uncached definition, on the real tier's model and questions.

    python -m benchmarks.elm_sampler                  # SmolLM2-135M (LoRA off), 8 chat-template forget questions
    python -m benchmarks.elm_sampler --tokens 8 --repeats 3

The uncached sampler is the definition the cached one must reproduce: for each drawn token, the whole forward of the
three right-padded contexts (x, c⁻ + x, c⁺ + x) and their logits one before the drawn position. Both draw from the
same per-row random streams and must return the same tokens (checked here, and in tests/methods/test_elm.py); each
is timed alone, the two alternating `--repeats` times and the fastest kept. JSON under
benchmarks/results/elm_sampler_<device>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch

from benchmarks.kernels import RESULTS
from benchmarks.methods import device_name
from benchmarks.results_file import result_name
from unlearn import smollm2
from unlearn.data.collate import IGNORE_INDEX
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import QASource
from unlearn.io import atomic_write_json
from unlearn.losses import elm_target_logits
from unlearn.methods import ELM
from unlearn.methods.elm import gumbel_max, row_generators
from unlearn.methods.lora import LoRA

CONCEPT = "world geography (countries, their capitals, cities, rivers, landmarks, continents and languages)"


@torch.no_grad()
def uncached_continuations(
    module: ELM, forget: dict, start: torch.Tensor, draws: list[torch.Generator]
) -> torch.Tensor:
    """(B, K) tokens drawn after each row's first `start` tokens, each from whole forwards of the right-padded
    contexts (ELM.original_logits): what ELM.continuations computes with a cache."""
    rows = torch.arange(len(start))
    ids = torch.full((len(start), int(start.max()) + module.fluency_tokens), module.tokenizer.pad_token_id)
    for row, length in enumerate(start.tolist()):
        ids[row, :length] = forget["input_ids"][row, :length]
    drawn = []
    for k in range(module.fluency_tokens):
        position = start + k
        mask = (torch.arange(int(position.max())) < position[:, None]).long()
        logits = [z[rows, position - 1] for z in module.original_logits(ids[:, : int(position.max())], mask)]
        drawn.append(gumbel_max(elm_target_logits(*logits, eta=module.fluency_eta), draws))
        ids[rows, position] = drawn[-1]
    return torch.stack(drawn, dim=1)


def forget_batch(model: str, rows: int, prompt_format: str) -> dict:
    """The first `rows` forget questions of the real tier, collated as training collates them."""
    forget = QASource("real-facts/forget_qa")
    data = UnlearnDataModule(model, forget=forget, batch_size=rows, prompt_format=prompt_format)
    data.setup("fit")
    return next(iter(data.ordered_dataloader("forget")))["forget"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=smollm2.NAME)
    parser.add_argument("--rows", type=int, default=8, help="questions per batch (the real tier's batch size)")
    parser.add_argument("--tokens", type=int, default=16, help="tokens drawn per question (ELM's default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prompt-format", default="chat", help="plain for a model without a chat template")
    args = parser.parse_args()
    fmt = args.prompt_format
    module = ELM(model=args.model, concept=CONCEPT, adapter=LoRA(), fluency_tokens=args.tokens, prompt_format=fmt)
    module.configure_model()
    forget = forget_batch(args.model, args.rows, fmt)
    start = (forget["labels"] != IGNORE_INDEX).int().argmax(dim=1)
    samplers = {
        "uncached": lambda: uncached_continuations(module, forget, start, row_generators(forget, 0)),
        "cached": lambda: module.continuations(forget["input_ids"], start, row_generators(forget, 0)),
    }
    times, tokens = {name: [] for name in samplers}, {}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, sample in samplers.items():
                began = time.perf_counter()
                tokens[name] = sample()
                times[name].append(time.perf_counter() - began)
    same = torch.equal(tokens["cached"], tokens["uncached"])
    best = {name: min(runs) for name, runs in times.items()}
    device, date = device_name(), datetime.date.today().isoformat()
    result = {
        "device": device, "date": date, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "model": args.model, "prompt_format": fmt, "rows": args.rows, "tokens": args.tokens,
        "prompt_lengths": start.tolist(),
        "same_tokens": same, "seconds": best, "runs_s": times, "speedup": best["uncached"] / best["cached"],
    }  # fmt: skip
    path = RESULTS / f"{result_name('elm_sampler', device, date)}.json"
    atomic_write_json(path, result)
    print(f"{args.rows} questions x {args.tokens} tokens on {device}: uncached {best['uncached']:.2f} s, cached "
          f"{best['cached']:.2f} s ({result['speedup']:.1f}x); same tokens: {same}; wrote {path}")  # fmt: skip
    if not same:
        raise SystemExit("the cached sampler drew other tokens than the uncached definition")


if __name__ == "__main__":
    main()
