"""One NPO training step on a real-architecture model with random weights: eager vs fused loss, cached vs frozen.

    python -m benchmarks.step                      # llama3-8b-2l on a GPU (Llama-3-8B widths, 2 layers), small on CPU
    python -m benchmarks.step --preset small --batch 4 --seq 256

Each variant builds the NPO module (the same code path a run uses), then times forward+backward+optimizer step
and measures its peak memory (SGD, so optimizer state does not dilute the loss and reference differences);
ratios against eager logits + cached reference come from the same run.
JSON under benchmarks/results/step_<device>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.kernels import RESULTS, _peak_bytes, _time_ms
from benchmarks.results_file import result_name
from unlearn.data.collate import IGNORE_INDEX
from unlearn.io import atomic_write_json
from unlearn.losses import sequence_nll
from unlearn.methods import NPO
from unlearn.models import load_tokenizer

# 2-layer Llama shapes: name → (hidden, intermediate, heads, key-value heads, vocabulary, context, other fields).
PRESETS = {
    name: dict(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
        num_hidden_layers=2,
        **extra,
        max_position_embeddings=context,
    )
    for name, (hidden, intermediate, heads, kv_heads, vocab, context, extra) in {
        "llama3-8b-2l": (4096, 14336, 32, 8, 128256, 8192, dict(rope_theta=500000.0)),
        "small": (256, 688, 4, 2, 128256, 2048, {}),
        "tiny": (64, 128, 4, 2, 1024, 256, {}),  # a rehearsal of the device script
    }.items()
}
VARIANTS = {  # name → (fused_logprob, reference)
    "eager-cached": (False, "cached"),
    "eager-frozen": (False, "frozen"),
    "fused-cached": (True, "cached"),
    "fused-frozen": (True, "frozen"),
}


def _save_model(preset: str, dtype: torch.dtype, folder: Path) -> None:
    """A random-weight model of the preset's shape, saved so NPO loads it like any local checkpoint."""
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**PRESETS[preset], tie_word_embeddings=False)).to(dtype).save_pretrained(folder)
    load_tokenizer("tiny-scratch").save_pretrained(folder)  # ids are random: any tokenizer serves


def _batch(batch: int, seq: int, vocab: int, device: str) -> dict:
    """Forget and retain rows with the first half masked as prompt, as QA batches are."""
    g = torch.Generator().manual_seed(0)

    def rows() -> dict:
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        labels = ids.clone()
        labels[:, : seq // 2] = IGNORE_INDEX
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": labels,
            "index": torch.arange(batch),
        }

    return {role: {k: v.to(device) for k, v in rows().items()} for role in ("forget", "retain")}


def _variant(folder: Path, fused: bool, reference: str, dtype: str, device: str, batch: dict):
    """The NPO module on the device, its optimizer, and one training step as a closure."""
    module = NPO(model=str(folder), dtype=dtype, fused_logprob=fused, reference=reference, retain_weight=1.0)
    module.configure_model()
    module.to(device)
    if reference == "cached":
        with torch.no_grad():  # what on_fit_start caches, for this one batch
            forget = batch["forget"]
            module.reference_cache_forget = sequence_nll(
                module.model(input_ids=forget["input_ids"]).logits, forget["labels"]
            )[0]
    optimizer = torch.optim.SGD([p for p in module.model.parameters() if p.requires_grad], lr=1e-6)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module.objective(batch)["loss"].backward()
        optimizer.step()

    return module, step


def run(preset: str, batch_size: int, seq: int, variants: list[str]) -> dict:
    """Every variant on the same model and batch; ratios against eager-cached."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = "bfloat16" if cuda else "float32"
    name = torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()}"
    batch = _batch(batch_size, seq, PRESETS[preset]["vocab_size"], device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _save_model(preset, getattr(torch, dtype), Path(tmp))
        for variant in variants:
            fused, reference = VARIANTS[variant]
            module, step = _variant(Path(tmp), fused, reference, dtype, device, batch)
            step()  # warm-up
            params = [p for p in module.model.parameters() if p.requires_grad]
            row = dict(
                variant=variant, step_ms=_time_ms(step, params, cuda), peak_bytes=_peak_bytes(step, params, cuda)
            )
            rows.append(row)
            print(f"{variant:14s} step {row['step_ms']:9.1f} ms peak {row['peak_bytes'] / 2**30:7.2f} GiB", flush=True)
            del module, step
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    base = next((r for r in rows if r["variant"] == "eager-cached"), None)
    for row in rows if base else []:
        row["speedup_vs_eager_cached"] = base["step_ms"] / row["step_ms"]
        row["memory_ratio_vs_eager_cached"] = row["peak_bytes"] / base["peak_bytes"]
    return dict(
        device=name,
        date=datetime.date.today().isoformat(),
        torch=torch.__version__,
        dtype=dtype,
        preset=preset,
        config=PRESETS[preset],
        batch=batch_size,
        seq=seq,
        optimizer="SGD",
        results=rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="default llama3-8b-2l on GPU, small on CPU"
    )
    parser.add_argument("--batch", type=int, default=None, help="rows per role; default 8 on GPU, 4 on CPU")
    parser.add_argument("--seq", type=int, default=None, help="tokens per row; default 1024 on GPU, 256 on CPU")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    report = run(
        args.preset or ("llama3-8b-2l" if cuda else "small"),
        args.batch or (8 if cuda else 4),
        args.seq or (1024 if cuda else 256),
        variants,
    )
    path = args.out / f"{result_name('step', report['device'], report['date'])}.json"
    atomic_write_json(path, report)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
