"""The unlearning-effectiveness vs utility plot: every run's before → after move on one figure."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from unlearn.io import atomic_write_bytes

COMPLEMENT = "1-"  # an axis "1-forget/mcq_acc" plots one minus that metric, so right means more forgotten


@dataclass(frozen=True)
class RunPoint:
    """One run's position before and after unlearning (before is None for a `test`-only run)."""

    label: str
    before: tuple[float, float] | None
    after: tuple[float, float]


def load_runs(run_dirs: list[str | Path], x: str, y: str) -> list[RunPoint]:
    """Read each run's metrics.json and place it on the (x, y) axes; label runs by method (and folder if repeated)."""
    summaries = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{run_dir} has no metrics.json; give run folders (trainer.default_root_dir) of finished "
                "`python -m unlearn fit` or `test` runs"
            )
        summaries.append((Path(run_dir), json.loads(path.read_text())))
    methods = [summary.get("method", "?") for _, summary in summaries]
    points = []
    for (run_dir, summary), method in zip(summaries, methods, strict=True):
        label = method if methods.count(method) == 1 else f"{method} ({run_dir.name})"
        before = summary.get("before")
        points.append(
            RunPoint(
                label,
                None if before is None else _position(before, x, y, run_dir),
                _position(summary["after"], x, y, run_dir),
            )
        )
    return points


def draw(points: list[RunPoint], x: str, y: str, out: str | Path) -> Path:
    """Draw arrows from before to after per run and write the PNG atomically (an earlier plot is moved aside)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = plt.get_cmap("tab10")
    for k, point in enumerate(points):
        color = colors(k % 10)
        if point.before is not None:
            ax.annotate("", xy=point.after, xytext=point.before, arrowprops={"arrowstyle": "->", "color": color})
            ax.scatter(*point.before, color=color, marker="o", facecolors="none")
        ax.scatter(*point.after, color=color, marker="o", label=point.label)
    ax.set_xlabel(_axis_title(x, "unlearning effectiveness"))
    ax.set_ylabel(_axis_title(y, "utility"))
    ax.set_title("Unlearning effectiveness vs utility (hollow: before, filled: after)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(Path(out), buffer.getvalue())


def _position(values: dict[str, float], x: str, y: str, run_dir: Path) -> tuple[float, float]:
    return _value(values, x, run_dir), _value(values, y, run_dir)


def _value(values: dict[str, float], axis: str, run_dir: Path) -> float:
    """A metric by name, or one minus it for a "1-" axis; a missing metric names what the run has."""
    name = axis.removeprefix(COMPLEMENT)
    if name not in values:
        raise KeyError(
            f"{run_dir}/metrics.json has no {name!r}; it has {sorted(values)}. Pick --x/--y from those "
            "(the full suite, configs/eval_full.yaml, adds forget/forget_quality and retain/model_utility)"
        )
    return 1.0 - values[name] if axis.startswith(COMPLEMENT) else values[name]


def _axis_title(axis: str, meaning: str) -> str:
    name = axis.removeprefix(COMPLEMENT)
    return f"{meaning}: {'1 − ' if axis.startswith(COMPLEMENT) else ''}{name}"
