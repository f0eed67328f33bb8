"""The suite's outputs: robustness.json, a Markdown table and a bar plot of recovered forget accuracy per attack."""

from __future__ import annotations

from pathlib import Path

from unlearn.io import atomic_write_bytes, atomic_write_json
from unlearn.robustness.plot import plot_recovered
from unlearn.robustness.suite import RECOVERED


def markdown(results: list[dict]) -> str:
    """One row per model and attack: recovered forget MCQ, then every forget/retain metric as before → after."""
    metrics = sorted({m for r in results for e in r["attacks"] for m in e.get("after", {}) if _shown(m)})
    lines = [
        "| " + " | ".join(["model", "attack", f"recovered {RECOVERED}", *metrics]) + " |",
        "|" + "---|" * (3 + len(metrics)),
    ]
    for result in results:
        for entry in result["attacks"]:
            cells = [result["model"], entry["name"]]
            if "error" in entry:
                cells += [f"error: {entry['error']}".replace("|", "/"), *[""] * len(metrics)]
            else:
                before, after = entry["before"], entry["after"]
                cells.append(f"{entry['recovered'][RECOVERED]:+.3f}" if RECOVERED in entry["recovered"] else "")
                cells += [f"{before[m]:.3f} → {after[m]:.3f}" if m in after else "" for m in metrics]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _shown(metric: str) -> bool:
    return metric.split("/", 1)[0] in ("forget", "retain")


def write(out: Path, results: list[dict], config: dict) -> list[Path]:
    """robustness.json ({"complete", "config", "models"}), robustness.md and robustness.png, each atomically."""
    table = markdown(results)
    print(table)
    curves = {
        r["model"]: {e["name"]: e["recovered"].get(RECOVERED, float("nan")) if "recovered" in e else float("nan")
                     for e in r["attacks"]}
        for r in results
    }  # fmt: skip
    return [
        atomic_write_json(out / "robustness.json", {"complete": True, "config": config, "models": results}),
        atomic_write_bytes(out / "robustness.md", table.encode()),
        plot_recovered(curves, out / "robustness.png", f"recovered {RECOVERED} (after − before)"),
    ]
