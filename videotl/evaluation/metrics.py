"""Video-level metrics: Charades mAP (official and PySlowFast/sklearn variants) and accuracies.

Every function takes per-video scores as a float array ``[num_videos, num_classes]`` in which a
video without a prediction holds ``-inf`` (the official Charades script's starting value), and
returns plain Python numbers so results serialise to JSON unchanged.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from ..registry import Registry

__all__ = [
    "METRICS",
    "metric_suite",
    "MapResult",
    "AccuracyResult",
    "official_average_precision",
    "charades_map",
    "sklearn_map",
    "accuracy_metrics",
]


@dataclass
class MapResult:
    """Per-class AP and their mean, plus how many classes entered the mean."""

    mean_ap: float
    per_class_ap: List[float]
    num_classes_evaluated: int
    # Indices of the classes that had no positive video (official: AP is NaN; sklearn: dropped).
    classes_without_positives: List[int] = field(default_factory=list)

    @property
    def map_over_evaluated(self) -> float:
        """Mean AP over the classes that have a positive (equals ``mean_ap`` when every class has one)."""
        values = [ap for ap in self.per_class_ap if not np.isnan(ap)]
        return float(np.mean(values)) if values else float("nan")


@dataclass
class AccuracyResult:
    top1: float
    top5: float
    mean_class_accuracy: float
    per_class_accuracy: List[float]
    num_classes_evaluated: int
    top_k: int


def _as_2d(array, name: str, dtype) -> np.ndarray:
    out = np.asarray(array, dtype=dtype)
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_videos, num_classes], got shape {out.shape}")
    return out


def official_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class exactly as ``THUMOSeventclspr`` in ``Charades_v1_classify.m`` computes it.

    MATLAB's ``sort(-conf)`` is stable, so tied scores keep the ground-truth file's order, and it
    puts NaN last; ``np.argsort(..., kind="stable")`` does both. AP is the sum of the precision at
    each positive divided by the number of positives: 0/0 = NaN for a class with no positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    order = np.argsort(-scores, kind="stable")
    positive = labels[order] == 1
    num_positives = int(positive.sum())
    if num_positives == 0:
        return float("nan")
    true_positives = np.cumsum(positive)
    precision = true_positives / np.arange(1, len(scores) + 1)
    return float(precision[positive].sum() / num_positives)


def charades_map(scores, labels) -> MapResult:
    """Charades mAP with the official ``Charades_v1_classify.m`` semantics.

    ``scores`` rows follow the ground-truth file's order; a video missing from the predictions
    holds ``-inf`` in every class, so it ranks last, after every scored video. A video without
    any action keeps its row (it counts as a negative for every class) but its prediction is
    never read: the official loader leaves its id empty, so no submission line matches it and
    its scores stay ``-inf``. The mAP is the plain mean over all classes, so it is NaN when some
    class has no positive video, as the official script prints it.
    """
    scores = _as_2d(scores, "scores", np.float64).copy()
    labels = _as_2d(labels, "labels", np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    scores[labels.sum(axis=1) == 0] = -np.inf
    aps = [official_average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1])]
    without = [c for c, ap in enumerate(aps) if np.isnan(ap)]
    mean = float(np.mean(aps)) if aps else float("nan")
    return MapResult(
        mean_ap=mean, per_class_ap=aps, num_classes_evaluated=len(aps) - len(without), classes_without_positives=without
    )


def sklearn_map(scores, labels) -> MapResult:
    """PySlowFast's ``get_map``: sklearn's ``average_precision_score`` over the classes with a positive.

    sklearn rejects infinite scores, so missing videos get the lowest finite float64 instead of
    ``-inf``: they still rank last, tied with each other.
    """
    from sklearn.metrics import average_precision_score

    scores = _as_2d(scores, "scores", np.float64).copy()
    labels = _as_2d(labels, "labels", np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    scores[~np.isfinite(scores)] = np.finfo(np.float64).min
    has_positive = labels.sum(axis=0) > 0
    per_class = [float("nan")] * scores.shape[1]
    without = [int(c) for c in np.flatnonzero(~has_positive)]
    if not has_positive.any():
        return MapResult(
            mean_ap=float("nan"), per_class_ap=per_class, num_classes_evaluated=0, classes_without_positives=without
        )
    kept = np.flatnonzero(has_positive)
    aps = average_precision_score(labels[:, kept], scores[:, kept], average=None)
    for c, ap in zip(kept, np.atleast_1d(aps)):
        per_class[c] = float(ap)
    return MapResult(
        mean_ap=float(np.mean(aps)),
        per_class_ap=per_class,
        num_classes_evaluated=len(kept),
        classes_without_positives=without,
    )


def _ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of each video's true class in a stable descending sort of its scores.

    Stable means a tie goes to the class with the lower index, so a constant score row is not
    counted as a hit for every class. A true class scored ``-inf`` or NaN (a video that was not
    scored) gets rank ``num_classes``: a miss at every k.
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.argmax(order == labels[:, None], axis=1)
    true_scores = scores[np.arange(len(labels)), labels]
    ranks[~np.isfinite(true_scores) | np.isnan(true_scores)] = scores.shape[1]
    return ranks


def accuracy_metrics(scores, labels: Sequence[int], *, top_k: int = 5) -> AccuracyResult:
    """Top-1, top-k and mean per-class (top-1) accuracy for single-label data.

    The mean per-class accuracy averages the recall of each class over the classes that have at
    least one video; ``num_classes_evaluated`` says how many those are.
    """
    scores = _as_2d(scores, "scores", np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    num_videos, num_classes = scores.shape
    if len(labels) != num_videos:
        raise ValueError(f"{len(labels)} labels for {num_videos} score rows")
    if num_videos == 0:
        raise ValueError("no videos to evaluate")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ValueError(f"labels outside [0, {num_classes}): {sorted(set(bad.tolist()))[:10]}")
    k = min(top_k, num_classes)
    ranks = _ranks(scores, labels)
    per_class: List[float] = []
    for c in range(num_classes):
        members = labels == c
        per_class.append(float((ranks[members] == 0).mean()) if members.any() else float("nan"))
    evaluated = [a for a in per_class if not np.isnan(a)]
    return AccuracyResult(
        top1=float((ranks < 1).mean()),
        top5=float((ranks < k).mean()),
        mean_class_accuracy=float(np.mean(evaluated)),
        per_class_accuracy=per_class,
        num_classes_evaluated=len(evaluated),
        top_k=k,
    )


# ---------------------------------------------------------------------------------------------
# Video-level metric suites, by name (``TEST.METRIC``; ``auto`` picks ``charades_map`` for
# multi-label data, ``accuracy`` otherwise). Each takes the per-video scores and labels and returns
# ``(metrics, per_class)``: a flat dict of numbers for the logs and the per-class columns.

MetricSuite = Callable[[np.ndarray, np.ndarray], Tuple[Dict[str, Any], Dict[str, List[float]]]]
METRICS: Registry[MetricSuite] = Registry("metric")


@METRICS.register("charades_map")
def _charades_map_suite(scores: np.ndarray, labels: np.ndarray):
    official = charades_map(scores, labels)
    variant = sklearn_map(scores, labels)
    metrics = dict(
        map=official.mean_ap,
        # Official per-class AP averaged over the classes with a positive: a number even when the
        # official mean is NaN (small test sets, subsets of classes).
        map_classes_with_positives=official.map_over_evaluated,
        map_sklearn=variant.mean_ap,
        num_classes_evaluated=variant.num_classes_evaluated,
        num_classes=len(official.per_class_ap),
        # The official mean is NaN when a class has no positive; say so instead of leaving a bare NaN.
        classes_without_positives=len(official.classes_without_positives),
    )
    return metrics, {"ap": official.per_class_ap, "ap_sklearn": variant.per_class_ap}


@METRICS.register("accuracy")
def _accuracy_suite(scores: np.ndarray, labels: np.ndarray):
    accuracy = accuracy_metrics(scores, labels)
    metrics = dict(
        top1=accuracy.top1,
        top5=accuracy.top5,
        top_k=accuracy.top_k,
        mean_class_accuracy=accuracy.mean_class_accuracy,
        num_classes_evaluated=accuracy.num_classes_evaluated,
        num_classes=len(accuracy.per_class_accuracy),
    )
    return metrics, {"accuracy": accuracy.per_class_accuracy}


def metric_suite(name: str, *, multi_label: bool) -> MetricSuite:
    """The suite ``name`` names; ``auto`` is ``charades_map`` for multi-label data, else ``accuracy``."""
    if name == "auto":
        name = "charades_map" if multi_label else "accuracy"
    return METRICS.get(name)
