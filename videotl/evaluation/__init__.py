"""Video-level evaluation: merging views, Charades mAP, accuracies, submission and result files."""

from .aggregate import ViewAggregator, ViewCountError
from .metrics import AccuracyResult, MapResult, accuracy_metrics, charades_map, official_average_precision, sklearn_map
from .results import plot_per_class, write_metrics_json, write_per_class_csv
from .submission import evaluate_submission, read_charades_csv, read_submission, submission_matrix, write_submission

__all__ = [
    "ViewAggregator",
    "ViewCountError",
    "AccuracyResult",
    "MapResult",
    "accuracy_metrics",
    "charades_map",
    "official_average_precision",
    "sklearn_map",
    "plot_per_class",
    "write_metrics_json",
    "write_per_class_csv",
    "evaluate_submission",
    "read_charades_csv",
    "read_submission",
    "submission_matrix",
    "write_submission",
]
