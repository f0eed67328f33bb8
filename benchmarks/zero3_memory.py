"""Peak memory per rank of an NPO run under ZeRO-3 with one process and with two, at the same global batch.

    python -m benchmarks.zero3_memory                          # small preset on CPU (2 gloo processes)
    python -m benchmarks.zero3_memory --preset llama3-8b-2l    # on GPUs, with as many as --devices asks for

Each run is `python -m unlearn fit` in its own process tree (the command a user runs) with the PeakMemory callback;
the model is a real-architecture shape with random weights (benchmarks.step's presets). Results go to
benchmarks/results/zero3_memory_<device>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.kernels import RESULTS
from benchmarks.methods import fit_command
from benchmarks.results_file import result_name
from benchmarks.step import PRESETS, _save_model
from unlearn.io import atomic_write_json

CONFIG = """
seed_everything: 0
trainer:
  accelerator: {accelerator}
  devices: {devices}
  strategy: {strategy}
  precision: {precision}
  max_steps: {steps}
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks: [{{class_path: unlearn.memory.PeakMemory}}]
model:
  class_path: unlearn.methods.NPO
  init_args:
    model: {model}
    dtype: {dtype}
    reference: {reference}
    optimizer: {{class_path: torch.optim.AdamW, init_args: {{lr: 1.0e-5}}}}
data:
  forget: {{class_path: unlearn.data.sources.SyntheticQA, init_args: {{split: forget10}}}}
  retain: {{class_path: unlearn.data.sources.SyntheticQA, init_args: {{split: retain}}}}
  batch_size: {batch}
"""


def run(root: Path, devices: int, global_batch: int, **settings) -> dict:
    """One fit with `devices` ranks at the given global batch; its memory.json and wall time."""
    root.mkdir(parents=True)
    (root / "input.yaml").write_text(CONFIG.format(devices=devices, batch=global_batch // devices, **settings))
    start = time.perf_counter()
    done = subprocess.run(fit_command(root / "input.yaml", root), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {devices}-rank run failed:\n{done.stderr[-3000:]}")
    memory = json.loads((root / "memory.json").read_text())
    return {"devices": devices, "wall_s": round(time.perf_counter() - start, 1), **memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--devices", type=int, default=2, help="ranks of the sharded run (compared with 1)")
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--reference",
        choices=["cached", "frozen"],
        default="frozen",
        help="frozen puts a second, partitioned model on every rank",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if cuda and torch.cuda.device_count() < args.devices:
        parser.error(f"--devices {args.devices} needs that many GPUs; this machine has {torch.cuda.device_count()}")
    dtype = "bfloat16" if cuda else "float32"
    settings = dict(
        accelerator="gpu" if cuda else "cpu",
        strategy="deepspeed_stage_3" if cuda else "deepspeed_stage_3_cpu",
        precision="bf16-true" if cuda else "32-true",
        steps=args.steps,
        dtype=dtype,
        reference=args.reference,
    )
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        _save_model(args.preset, getattr(torch, dtype), model)
        for devices in (1, args.devices):
            result = run(Path(tmp) / f"ranks{devices}", devices, args.global_batch, model=model, **settings)
            runs.append(result)
            print(
                f"{devices} rank(s): peak per rank {[round(b / 2**20) for b in result['rank_bytes']]} MiB "
                f"({result['kind']}), {result['wall_s']} s",
                flush=True,
            )
    one, many = runs[0]["rank_bytes"][0], max(runs[1]["rank_bytes"])
    report = dict(
        device=runs[0]["device"] if cuda else f"CPU {platform.machine()}",
        date=datetime.date.today().isoformat(),
        torch=torch.__version__,
        preset=args.preset,
        config=PRESETS[args.preset],
        dtype=dtype,
        global_batch=args.global_batch,
        steps=args.steps,
        reference=args.reference,
        runs=runs,
        peak_ratio_sharded_vs_one=many / one,
    )
    print(f"largest rank of {args.devices} / one process: {many / one:.2f}")
    path = atomic_write_json(args.out / f"{result_name('zero3_memory', report['device'], report['date'])}.json", report)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
