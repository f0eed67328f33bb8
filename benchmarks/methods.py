"""Run methods on the embedded default or the real model and gather before/after metrics and wall time in a table.

    python -m benchmarks.methods                       # every method config under configs/
    python -m benchmarks.methods --methods rmu,npo,wga  # updates these rows of the day's result file
    python -m benchmarks.methods --tier real           # every configs/real/ config: SmolLM2-135M on real facts

Each method is `python -m unlearn fit --config configs/[real/]<method>.yaml` in its own process (the command a user
runs), timed from start to exit, both evaluations included; results go to
benchmarks/results/methods_[real_]<device>_<date>.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results_file import result_name
from unlearn.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
# Configs that are not unlearning methods on the embedded default.
NOT_METHODS = {"eval_full", "probabilistic"}
# Per tier: where its method configs live and the columns of its table. The real model answers in sentences, so its
# QA column is ROUGE-L recall (the share of the answer's words said), not exact match.
TIERS = {
    "embedded": (ROOT / "configs", ("forget/qa_acc", "forget/mcq_acc", "retain/qa_acc", "retain/mcq_acc")),
    "real": (ROOT / "configs" / "real", ("forget/qa_rougeL", "forget/mcq_acc", "retain/qa_rougeL", "retain/mcq_acc")),
}


def method_configs(tier: str) -> list[str]:
    """Every config of a tier that unlearns its model."""
    return sorted(p.stem for p in TIERS[tier][0].glob("*.yaml") if p.stem not in NOT_METHODS)


def device_name() -> str:
    """The GPU's name, or the CPU's core count and architecture."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU, {os.cpu_count()} cores ({platform.machine()})"


def fit_command(config: Path, run_dir: Path) -> list[str]:
    """The command a user runs to fit `config`, so benchmarks time what users run; logs and model under `run_dir`."""
    return [
        sys.executable,
        "-m",
        "unlearn",
        "fit",
        "--config",
        str(config),
        "--trainer.default_root_dir",
        str(run_dir),
        "--model.init_args.save_dir",
        str(run_dir / "model"),
    ]


def run_method(name: str, workdir: Path, tier: str, env: dict | None = None) -> dict:
    """Fit one method in a fresh process (with `env`, or this one's); its metrics.json and the wall time, or the
    error it ended with."""
    run_dir = workdir / name
    start = time.perf_counter()
    done = subprocess.run(
        fit_command(TIERS[tier][0] / f"{name}.yaml", run_dir), capture_output=True, text=True, cwd=ROOT, env=env
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "wall_s": round(wall, 1)}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"before": metrics["before"], "after": metrics["after"], "wall_s": round(wall, 1)}


ROUNDING = 1e-6  # accuracies arrive as float32 ratios of counts: 81/90 is 0.8999999762, which is 0.9


def meets_target(run: dict) -> bool:
    """The README's target: forget MCQ at most 0.35 (chance is 0.25) with retain MCQ at least 0.9x its value before."""
    before, after = run["before"], run["after"]
    forgets = after["forget/mcq_acc"] <= 0.35 + ROUNDING
    return forgets and after["retain/mcq_acc"] >= 0.9 * before["retain/mcq_acc"] - ROUNDING


def table(runs: dict[str, dict], tier: str) -> str:
    """Markdown: before -> after per column, whether the target is met, and wall time."""
    columns = TIERS[tier][1]
    lines = [
        "| method | " + " | ".join(c.replace("/", " ") for c in columns) + " | target | wall |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for name, run in runs.items():
        if "error" in run:
            lines.append(f"| {name} | " + " | ".join("failed" for _ in columns) + f" | no | {run['wall_s']:.0f} s |")
            continue
        cells = [f"{run['before'][c]:.2f} -> {run['after'][c]:.2f}" for c in columns]
        met = "yes" if meets_target(run) else "no"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {met} | {run['wall_s']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated config names; default all method configs")
    parser.add_argument("--tier", choices=sorted(TIERS), default="embedded", help="which model and configs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args()
    available = method_configs(args.tier)
    names = args.methods.split(",") if args.methods else available
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {available}")
    device = device_name()
    date = datetime.date.today().isoformat()
    kind = "methods_real" if args.tier == "real" else "methods"
    path = args.out / f"{result_name(kind, device.split(',')[0], date)}.json"
    # a subset re-run updates its rows of the day's table and keeps the others, and the note written about them
    earlier = json.loads(path.read_text()) if path.exists() else {}
    runs = earlier.get("runs", {})
    folder = TIERS[args.tier][0].relative_to(ROOT)
    command = f"python -m unlearn fit --config {folder}/<method>.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:  # saved after each method: an interrupted sweep keeps what it measured
            runs[name] = run_method(name, Path(tmp), args.tier)
            print(table({name: runs[name]}, args.tier).splitlines()[-1], flush=True)
            atomic_write_json(path, {**earlier, "device": device, "date": date, "command": command, "runs": runs})
    print(table(runs, args.tier))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
