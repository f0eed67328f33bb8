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


MARKERS = "osD^vPX*"  # one shape per run, so runs drawn on the same spot stay told apart
UNIT_RANGE = (0.0, 1.0)  # accuracies, ROUGE, AUC, probabilities: their axis shows all of it
MIN_SPAN = 0.5  # an axis of unbounded values (PrivLeak, in %) spans at least this, or half the largest magnitude
LABEL_GAP = 10  # points between the labels of runs whose "after" points coincide
MARKER_SIZE = 90


def draw(points: list[RunPoint], x: str, y: str, out: str | Path) -> Path:
    """Draw arrows from before to after per run and write the PNG atomically (an earlier plot is moved aside)."""
    fig = figure(points, x, y)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return atomic_write_bytes(Path(out), buffer.getvalue())


def figure(points: list[RunPoint], x: str, y: str):
    """The plot as a matplotlib Figure: each run's before (hollow) → after (filled) in its own colour and marker,
    its name beside its after point (runs drawn on the same spot: markers nested, names stacked), and axes that do
    not magnify small changes: the whole [0, 1] for metrics within it, at least MIN_SPAN otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = plt.get_cmap("tab10")
    xlim = axis_limits([v for p in points for v in _coordinates(p, 0)])
    ylim = axis_limits([v for p in points for v in _coordinates(p, 1)])
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    clusters: list[list] = []  # [first after point, runs drawn there so far]: points close enough to overlap
    for k, point in enumerate(points):
        color, marker = colors(k % 10), MARKERS[k % len(MARKERS)]
        cluster = next((c for c in clusters if _near(point.after, c[0], xlim, ylim)), None)
        if cluster is None:
            cluster = [point.after, 0]
            clusters.append(cluster)
        rank, cluster[1] = cluster[1], cluster[1] + 1
        size = MARKER_SIZE * 0.5**rank  # a later run on the same spot is drawn smaller, inside the earlier ones
        if point.before is not None:
            ax.annotate("", xy=point.after, xytext=point.before, arrowprops={"arrowstyle": "->", "color": color})
            ax.scatter(*point.before, marker=marker, facecolors="none", edgecolors=[color], s=size, alpha=0.8)
        ax.scatter(*point.after, c=[color], marker=marker, label=point.label, s=size, alpha=0.8, edgecolors="black")
        ax.annotate(
            point.label, xy=cluster[0], xytext=(10, -4 - LABEL_GAP * rank), textcoords="offset points",
            fontsize=7, color=color,
        )  # fmt: skip  # the labels of a cluster in one column beside it
    ax.set_xlabel(_axis_title(x, "unlearning effectiveness"))
    ax.set_ylabel(_axis_title(y, "utility"))
    ax.set_title("Unlearning effectiveness vs utility (hollow: before, filled: after)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def axis_limits(values: list[float]) -> tuple[float, float]:
    """[0, 1] (with a margin) when every value lies in it, as accuracies do; otherwise the values' range widened to
    at least MIN_SPAN or half the largest magnitude, so that a small change looks small."""
    low, high = min(values), max(values)
    if UNIT_RANGE[0] <= low and high <= UNIT_RANGE[1]:
        low, high = UNIT_RANGE
    else:
        span = max(high - low, MIN_SPAN, 0.5 * max(abs(low), abs(high)))
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
    margin = 0.05 * (high - low)
    return low - margin, high + margin


def _coordinates(point: RunPoint, axis: int) -> list[float]:
    return [point.after[axis]] + ([] if point.before is None else [point.before[axis]])


def _near(a: tuple[float, float], b: tuple[float, float], xlim, ylim, share: float = 0.04) -> bool:
    """Whether two points are within `share` of both axes' spans: their labels would overlap."""
    return abs(a[0] - b[0]) <= share * (xlim[1] - xlim[0]) and abs(a[1] - b[1]) <= share * (ylim[1] - ylim[0])


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
