"""`python -m unlearn.report RUN_DIR... [--out ue_ut.png]`: each run's table and one effectiveness-vs-utility plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unlearn.eval.plot import draw, load_runs
from unlearn.eval.summary import format_table


def main(argv: list[str] | None = None) -> Path:
    """Print every run's before/after table and draw the runs' before → after arrows as a PNG."""
    parser = argparse.ArgumentParser(prog="python -m unlearn.report", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", help="run folders holding metrics.json")
    parser.add_argument("--x", default="1-forget/mcq_acc", help='effectiveness axis; "1-" plots one minus the metric')
    parser.add_argument("--y", default="retain/mcq_acc", help="utility axis, e.g. retain/model_utility")
    parser.add_argument("--out", default="ue_ut.png", help="where to write the PNG")
    args = parser.parse_args(argv)
    try:
        points = load_runs(args.run_dirs, args.x, args.y)
    except (FileNotFoundError, KeyError, ValueError) as error:
        parser.error(str(error))
    for run_dir in args.run_dirs:
        summary = json.loads((Path(run_dir) / "metrics.json").read_text())
        print(f"{run_dir} ({summary.get('method', '?')})")
        print(format_table(summary.get("before"), summary["after"]))
    path = draw(points, args.x, args.y, args.out)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
