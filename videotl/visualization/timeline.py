"""A prediction timeline: class scores over time for the top classes, with ground-truth intervals."""

from pathlib import Path
from typing import Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..utils.fileio import atomic_path  # noqa: E402


def plot_timeline(
    path,
    *,
    segment_ranges: Sequence[Tuple[float, float]],
    segment_scores: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int],
    title: str = "",
    ground_truth: Optional[Sequence[Tuple[int, float, float]]] = None,
) -> Path:
    """Step plot of each chosen class's score per segment; ground-truth intervals as bars below.

    Args:
        segment_ranges: (start_sec, end_sec) of each segment.
        segment_scores: (num_segments, num_classes) scores.
        classes: class indices to draw (e.g. the video's top-k).
        ground_truth: optional (class, start_sec, end_sec) actions; those of drawn classes are shown.
    """
    segment_scores = np.asarray(segment_scores, dtype=np.float64)
    starts = [start for start, _ in segment_ranges]
    end = segment_ranges[-1][1]
    colours = plt.get_cmap("tab10")
    rows = 2 if ground_truth is not None else 1
    figure, axes = plt.subplots(
        rows,
        1,
        figsize=(10, 3.2 + 1.6 * (rows - 1)),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1][:rows]},
    )
    scores_axis = axes[0, 0]
    for order, cls in enumerate(classes):
        values = list(segment_scores[:, cls]) + [segment_scores[-1, cls]]
        scores_axis.step(starts + [end], values, where="post", color=colours(order % 10), label=class_names[cls])
    scores_axis.set(ylabel="score", title=title, xlim=(0, end))
    scores_axis.grid(alpha=0.3)
    scores_axis.legend(fontsize=7, loc="upper right")
    if ground_truth is not None:
        gt_axis = axes[1, 0]
        for order, cls in enumerate(classes):
            for gt_class, start, stop in ground_truth:
                if gt_class == cls:
                    gt_axis.barh(order, stop - start, left=start, color=colours(order % 10), height=0.6)
        gt_axis.set(
            yticks=range(len(classes)),
            yticklabels=[class_names[c][:28] for c in classes],
            xlabel="time (s)",
            title="ground truth",
        )
        gt_axis.tick_params(axis="y", labelsize=7)
        gt_axis.invert_yaxis()
    else:
        scores_axis.set_xlabel("time (s)")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path
