"""Training curves from ``OUTPUT_DIR/stats.jsonl``: loss, learning rate and evaluation metrics."""

import json
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..utils.fileio import atomic_path  # noqa: E402

# Evaluation metrics worth a curve, in the order they are drawn.
EVAL_METRICS = ("map", "map_sklearn", "top1", "top5", "mean_class_accuracy")


def read_stats(path) -> List[Dict]:
    """Parse a stats.jsonl file; a line that does not parse names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}: expected the stats.jsonl that tools/train_net.py writes")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({error})") from error
    return records


def plot_training_curves(output_dir, *, out_path=None) -> Path:
    """Draw loss and learning rate against iterations and, when the run evaluated, the metrics.

    Returns the PNG's path (default ``OUTPUT_DIR/training_curves.png``).
    """
    output_dir = Path(output_dir)
    records = read_stats(output_dir / "stats.jsonl")
    train = [r for r in records if r.get("type") == "train" and r.get("loss") is not None]
    if not train:
        raise ValueError(f"{output_dir / 'stats.jsonl'} holds no training iterations to plot")
    # Evaluations during training, and the final test (drawn at the last iteration it follows).
    last_iter = train[-1]["iter"]
    evals = [
        r if r.get("type") == "eval" else {**r, "iter": last_iter}
        for r in records
        if r.get("type") == "eval" or (r.get("type") == "test" and "iter" not in r)
    ]
    metrics = [m for m in EVAL_METRICS if any(r.get(m) is not None for r in evals)]
    panels = 2 + (1 if metrics else 0)
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    iters = [r["iter"] for r in train]
    axes[0].plot(iters, [r["loss"] for r in train], lw=1)
    axes[0].set(title="training loss", xlabel="iteration", ylabel="loss")
    axes[1].plot(iters, [r["lr"] for r in train], lw=1, color="tab:orange")
    axes[1].set(title="learning rate", xlabel="iteration", ylabel="lr")
    if metrics:
        for metric in metrics:
            points = [(r["iter"], r[metric]) for r in evals if r.get(metric) is not None]
            axes[2].plot(*zip(*points), marker="o", label=metric)
        axes[2].set(title="evaluation", xlabel="iteration")
        axes[2].legend()
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    out_path = Path(out_path) if out_path else output_dir / "training_curves.png"
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return out_path
