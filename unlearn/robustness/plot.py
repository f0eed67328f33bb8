"""The robustness plots (logit lens accuracy by layer, recovered accuracy per attack), written atomically as PNGs."""

from __future__ import annotations

import io
import math
from pathlib import Path

from unlearn.io import atomic_write_bytes


def plot_per_layer(curves: dict[str, list[float]], out: Path, title: str) -> Path:
    """One line per metric over the decoder layers; an earlier plot is moved aside."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out)


def plot_recovered(bars: dict[str, dict[str, float]], out: Path, title: str) -> Path:
    """Grouped bars: per attack, one bar per model (NaN, a failed attack, draws none); an earlier plot moved aside."""
    plt = _pyplot()
    attacks = list(dict.fromkeys(a for per_model in bars.values() for a in per_model))
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(attacks) + 1), 4))
    for k, (model, per_attack) in enumerate(bars.items()):
        heights = [per_attack.get(a, math.nan) for a in attacks]
        ax.bar([i + (k - (len(bars) - 1) / 2) * width for i in range(len(attacks))], heights, width, label=model)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(attacks)), attacks, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("after − before")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(out, buffer.getvalue())
