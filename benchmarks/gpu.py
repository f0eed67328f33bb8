"""The prepared device run: on a fresh GPU machine with no network, install the carried wheels, run the kernel tests
compiled, the NPO step and the kernel benchmarks, and write every result as JSON into OUT_DIR, within 8 minutes.

    bash benchmarks/fetch_wheels.sh                    # here, once: the missing packages as wheels in .whl/
    python3 -m benchmarks.gpu OUT_DIR                  # there, .whl carried along
    python -m benchmarks.gpu OUT_DIR --dry-run         # here: every part at tiny shapes under the Triton interpreter

Each part is a subprocess under its own timeout (cut to what is left of the total), so one failure or hang loses
that part alone; OUT_DIR gets summary.json (per part: command, exit code, seconds, pass counts, output tail),
gpu.log (every part's whole output), and the benchmarks' own kernels_*.json and step_*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELS = REPO / ".whl"
TOTAL_S = 470  # the 8 minutes, less the start of this script
# Imports whose success is recorded: what the parts need, and what the wheels bring.
PROBES = (
    "unlearn.kernels",
    "unlearn.methods",
    "jsonargparse",
    "datasets",
    "deepspeed",
    "liger_kernel",
    "cut_cross_entropy",
)
ENV_PROBE = """
import importlib, json, sys, torch, triton
found = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        found[name] = "ok"
    except Exception as error:
        found[name] = repr(error)[:200]
cuda = torch.cuda.is_available()
print("ENV " + json.dumps(dict(
    torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
    device=torch.cuda.get_device_name() if cuda else None, imports=found,
)))
"""


@dataclass
class Part:
    """One step of the run: a command and the seconds it may take."""

    name: str
    argv: list[str]
    budget_s: int
    env: dict[str, str]


def parts(out: Path, site: Path, dry_run: bool) -> list[Part]:
    """install, env, kernel tests, NPO step, kernel benchmarks; a dry run has tiny shapes and the interpreter."""
    py = sys.executable
    pip = [
        py,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--target",
        str(site),
    ]
    wheels = sorted(str(w) for w in WHEELS.glob("*.whl"))
    install = [*pip, "--upgrade", *wheels] if wheels and not dry_run else [py, "-c", "print('no wheels to install')"]
    interpret = {"TRITON_INTERPRET": "1" if dry_run else "0"}
    step = ["--preset", "tiny", "--batch", "2", "--seq", "32"] if dry_run else ["--preset", "llama3-8b-2l"]
    kernels = ["--shapes", "tiny", "--providers", "eager,fused,liger,cce"] if dry_run else ["--shapes", "llama3"]
    return [
        Part("wheels", install, 90, {}),
        Part("project", [*pip, "--no-build-isolation", str(REPO)], 90, {}),
        Part("env", [py, "-c", ENV_PROBE, *PROBES], 60, {}),
        Part(
            "kernel_tests",
            [
                py,
                "-m",
                "pytest",
                "-q",
                "-rfE",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:python_path",
                str(REPO / "tests" / "kernels"),
            ],
            110,
            interpret,
        ),
        Part("step", [py, "-m", "benchmarks.step", *step, "--out", str(out)], 130, interpret),
        Part("kernels", [py, "-m", "benchmarks.kernels", *kernels, "--out", str(out)], 600, interpret),
    ]


def run_part(part: Part, seconds: float, env: dict[str, str], cwd: Path, log) -> dict:
    """Run one part for at most `seconds`; its whole output goes to the log, the end of it to the summary."""
    start = time.monotonic()
    log.write(f"\n===== {part.name}: {' '.join(part.argv)}\n")
    log.flush()
    child = subprocess.Popen(
        part.argv,
        cwd=cwd,
        env={**env, **part.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = child.communicate(timeout=seconds)
        code, timed_out = child.returncode, False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # its whole group: compile workers too
        output, _ = child.communicate()
        code, timed_out = None, True
    log.write(output)
    log.flush()
    row = dict(
        name=part.name,
        argv=part.argv,
        returncode=code,
        timed_out=timed_out,
        limit_s=round(seconds),
        seconds=round(time.monotonic() - start, 1),
        tail=output[-3000:],
    )
    counts = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", output.splitlines()[-1] if output else "")
    if part.name == "kernel_tests" and counts:
        row["tests"] = {kind: int(n) for n, kind in counts}
    found = re.search(r"^ENV (.*)$", output, re.M)
    if found:
        row["env"] = json.loads(found.group(1))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for summary.json, gpu.log and the benchmarks' JSON")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes under the Triton interpreter, on CPU")
    parser.add_argument("--total", type=float, default=TOTAL_S, help="seconds for every part together")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.total
    rows = []
    with tempfile.TemporaryDirectory() as scratch, open(out / "gpu.log", "w") as log:
        site = Path(scratch) / "site"
        # Run from a scratch folder with the installed project first: the checkout's unlearn/ lacks unlearn.kernels.
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1" if args.dry_run else "8"),
        }
        for part in parts(out, site, args.dry_run):
            left = deadline - time.monotonic()
            if left < 5:
                rows.append(dict(name=part.name, skipped="no time left"))
                continue
            rows.append(run_part(part, min(part.budget_s, left), env, Path(scratch), log))
            row = rows[-1]
            print(
                f"{part.name:13s} rc={row['returncode']} {row['seconds']:6.1f} s"
                f"{' TIMED OUT' if row['timed_out'] else ''} {row.get('tests', '')}",
                flush=True,
            )
            (out / "summary.json").write_text(json.dumps(dict(dry_run=args.dry_run, parts=rows), indent=1))
    (out / "summary.json").write_text(json.dumps(dict(dry_run=args.dry_run, parts=rows), indent=1))
    print(f"wrote {sorted(p.name for p in out.iterdir())}")


if __name__ == "__main__":
    main()
