"""Unlearn with several methods, attack every model with every attack of a suite, and tabulate what comes back.

    python -m benchmarks.robustness                    # embedded default: RMU, NPO, SimNPO, GradDiff, IDK, GRUN-NPO
    python -m benchmarks.robustness --tier real        # SmolLM2-135M on real facts: RMU and NPO

Each method is fit with its shipped config (`python -m unlearn fit`, as benchmarks.methods does) and its model
attacked with `python -m unlearn.robustness` (configs/attacks/suite.yaml, or suite_real.yaml), each in its own
process, `--jobs` methods at a time with the cores split between them. Writes
benchmarks/results/robustness_[real_]<device>_<date>.{json,md}: per method the original model's numbers, the
unlearned model's and, per attack, the attacked model's, for forget MCQ, forget QA and retain MCQ.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.methods import RESULTS, ROOT, device_name, run_method
from benchmarks.results_file import result_name
from unlearn.io import atomic_write_bytes, atomic_write_json

# Per tier: the methods attacked, the suite, and the metrics tabulated (the real model answers in sentences: ROUGE-L).
TIERS = {
    "embedded": (
        ["rmu", "npo", "simnpo", "graddiff", "idk", "grun_npo"],
        "configs/attacks/suite.yaml",
        ("forget/mcq_acc", "forget/qa_acc", "retain/mcq_acc"),
    ),
    "real": (
        ["rmu", "npo"],
        "configs/attacks/suite_real.yaml",
        ("forget/mcq_acc", "forget/qa_rougeL", "retain/mcq_acc"),
    ),
}


def attack_model(run_dir: Path, suite: str, env: dict) -> dict:
    """Every attack of the suite against one fit's model, in a fresh process; robustness.json, or the error."""
    out = run_dir / "robustness"
    command = [sys.executable, "-m", "unlearn.robustness", str(run_dir), "--config", suite, "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = round(time.perf_counter() - start, 1)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "wall_s": wall}
    return {**json.loads((out / "robustness.json").read_text())["models"][0], "wall_s": wall}


def method_row(name: str, workdir: Path, tier: str, threads: int) -> dict:
    """Fit one method, then attack its model: {"fit": ..., "suite": ...}."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    fit = run_method(name, workdir, tier, env=env)
    print(f"{name}: fit in {fit['wall_s']:.0f} s" + (" (failed)" if "error" in fit else ""), flush=True)
    if "error" in fit:
        return {"fit": fit}
    suite = attack_model(workdir / name, TIERS[tier][1], env)
    print(f"{name}: attacked in {suite['wall_s']:.0f} s" + (" (failed)" if "error" in suite else ""), flush=True)
    return {"fit": fit, "suite": suite}


def cell(before: float, after: float) -> str:
    return f"{before:.2f} → {after:.2f}"


def tables(rows: dict[str, dict], metrics: tuple[str, ...]) -> str:
    """Per metric, one Markdown table: a row for the original model, the unlearned one and each attack (unattacked →
    attacked; held-out attacks score fewer rows, so their unattacked number can differ), a column per method."""
    names = list(rows)
    attacks = list(dict.fromkeys(e["name"] for r in rows.values() for e in r.get("suite", {}).get("attacks", [])))
    out = []
    for metric in metrics:
        lines = [f"**{metric}**", "", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        fits = [rows[n]["fit"] for n in names]
        lines.append("| original | " + " | ".join(f"{f['before'][metric]:.2f}" if "before" in f else "failed"
                                                  for f in fits) + " |")  # fmt: skip
        lines.append("| unlearned | " + " | ".join(f"{f['after'][metric]:.2f}" if "after" in f else "failed"
                                                   for f in fits) + " |")  # fmt: skip
        for attack in attacks:
            cells = []
            for name in names:
                entries = {e["name"]: e for e in rows[name].get("suite", {}).get("attacks", [])}
                entry = entries.get(attack, {})
                cells.append(cell(entry["before"][metric], entry["after"][metric]) if "after" in entry else "failed")
            lines.append(f"| {attack} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=sorted(TIERS), default="embedded", help="which model, methods and suite")
    parser.add_argument("--methods", default=None, help="comma-separated method configs; default the tier's")
    parser.add_argument("--jobs", type=int, default=None, help="methods at a time (default 2 embedded, 1 real)")
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here (default runs/robustness/<tier>)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown result")
    args = parser.parse_args()
    names = args.methods.split(",") if args.methods else TIERS[args.tier][0]
    jobs = args.jobs or (2 if args.tier == "embedded" else 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    workdir = args.runs or ROOT / "runs" / "robustness" / args.tier
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        futures = {name: pool.submit(method_row, name, workdir, args.tier, threads) for name in names}
        rows = {name: future.result() for name, future in futures.items()}
    wall = round(time.perf_counter() - start, 1)
    device, date = device_name(), datetime.date.today().isoformat()
    kind = "robustness_real" if args.tier == "real" else "robustness"
    stem = args.out / result_name(kind, device.split(",")[0], date)
    command = "python -m benchmarks.robustness" + (f" --tier {args.tier}" if args.tier != "embedded" else "")
    text = tables(rows, TIERS[args.tier][2])
    summary = f"{command}: {len(names)} methods in {wall:.0f} s on {device}, {jobs} at a time\n\n"
    atomic_write_json(stem.with_suffix(".json"), {"device": device, "date": date, "command": command,
                                                  "wall_s": wall, "jobs": jobs, "methods": rows})  # fmt: skip
    atomic_write_bytes(stem.with_suffix(".md"), (summary + text).encode())
    print(summary + text)
    print(f"saved {stem}.json and .md")


if __name__ == "__main__":
    main()
