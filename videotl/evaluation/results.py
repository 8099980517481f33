"""Result files: per-class values as CSV and as a bar plot, and metrics as JSON (all atomic)."""

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ..utils.fileio import atomic_path, atomic_write_text, json_safe

__all__ = ["write_per_class_csv", "plot_per_class", "write_metrics_json"]

PathLike = Union[str, Path]


def write_metrics_json(path: PathLike, metrics: Dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(json_safe(metrics), indent=2, sort_keys=True) + "\n")


def write_per_class_csv(path: PathLike, *, class_names: Sequence[str], columns: Dict[str, Sequence[float]]) -> None:
    """One row per class: index, name, then one column per entry of ``columns`` (NaN left empty)."""
    for name, values in columns.items():
        if len(values) != len(class_names):
            raise ValueError(f"column {name} has {len(values)} values for {len(class_names)} classes")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["class_index", "class_name", *columns])
    for index, class_name in enumerate(class_names):
        values = [
            "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6f}"
            for v in (col[index] for col in columns.values())
        ]
        writer.writerow([index, class_name, *values])
    atomic_write_text(path, buffer.getvalue())


def plot_per_class(
    path: PathLike,
    *,
    class_names: Sequence[str],
    values: Sequence[float],
    ylabel: str,
    title: str = "",
    sort: bool = True,
    reference: Optional[Tuple[float, str]] = None,
) -> None:
    """Bar plot of a per-class value (classes without a value are left out).

    Args:
        sort: bars from high to low; else in class order (e.g. to keep related classes side by side).
        reference: ``(value, label)`` drawn as a dashed horizontal line, e.g. the chance level.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(v, n) for v, n in zip(values, class_names) if v is not None and not math.isnan(v)]
    if sort:
        pairs.sort(key=lambda p: -p[0])
    width = max(6.0, 0.12 * len(pairs) + 2.0)
    figure, axes = plt.subplots(figsize=(width, 4.5))
    try:
        axes.bar(range(len(pairs)), [p[0] for p in pairs], color="tab:blue")
        if reference is not None:
            axes.axhline(reference[0], color="tab:red", linestyle="--", linewidth=1, label=reference[1])
            axes.legend(loc="lower right", fontsize=8)
        axes.set_ylabel(ylabel)
        axes.set_ylim(0.0, 1.0)
        axes.set_xlim(-0.6, max(len(pairs), 1) - 0.4)
        # Names are long ("Holding some clothes"); only label the axis when they stay legible.
        if len(pairs) <= 40:
            axes.set_xticks(range(len(pairs)))
            axes.set_xticklabels([p[1] for p in pairs], rotation=90, fontsize=6 if len(pairs) > 16 else 8)
        else:
            axes.set_xlabel(f"{len(pairs)} classes" + (f", sorted by {ylabel}" if sort else ""))
        axes.set_title(title or f"{ylabel} per class")
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(figure)
