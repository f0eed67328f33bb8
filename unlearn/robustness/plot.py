"""A per-layer line plot (logit lens accuracy by layer), written atomically as a PNG."""

from __future__ import annotations

import io
from pathlib import Path

from unlearn.io import atomic_write_bytes


def plot_per_layer(curves: dict[str, list[float]], out: Path, title: str) -> Path:
    """One line per metric over the decoder layers; an earlier plot is moved aside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(out, buffer.getvalue())
