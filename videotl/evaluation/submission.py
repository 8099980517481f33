"""The official Charades classification submission format and ground-truth CSV.

A submission has one line per video: ``<id> s0 s1 ... s156`` (spaces or tabs). The official
``Charades_v1_classify.m`` ranks a video absent from the submission last, so a video the model
could not score is left out of the file rather than written with made-up scores.
"""

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from ..data.datasets._files import read_csv_table
from ..utils.fileio import atomic_path

__all__ = ["write_submission", "read_submission", "read_charades_csv", "submission_matrix", "evaluate_submission"]

PathLike = Union[str, Path]
CHARADES_NUM_CLASSES = 157


def write_submission(path: PathLike, *, video_ids: Sequence[str], scores: np.ndarray) -> int:
    """Write the rows of ``scores`` whose values are all finite; return how many were written.

    Scores are written with ``repr`` so that reading the file back gives the very same float64
    values, and hence the same ranking, ties included.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(video_ids):
        raise ValueError(f"{len(video_ids)} video ids for scores of shape {scores.shape}")
    written = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for video_id, row in zip(video_ids, scores):
                if not np.isfinite(row).all():
                    continue
                if any(c.isspace() for c in video_id) or not video_id:
                    raise ValueError(f"video id {video_id!r} cannot be written to a submission line")
                handle.write(video_id + " " + " ".join(repr(float(v)) for v in row) + "\n")
                written += 1
    return written


def read_submission(path: PathLike, *, num_classes: int = CHARADES_NUM_CLASSES) -> Dict[str, np.ndarray]:
    """Read ``id s0 ... s{C-1}`` lines as the official script does.

    Like the official script, a line may carry ``C`` or ``C + 1`` values (the extra one is
    ignored) and a value that is not a number reads as NaN (ranked last). Unlike it, a repeated
    id is an error rather than a silent overwrite, and so is a line with another count.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"submission file not found: {path}")
    predictions: Dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            video_id, values = fields[0], fields[1:]
            if len(values) not in (num_classes, num_classes + 1):
                raise ValueError(f"{path}:{number}: {len(values)} scores for video {video_id}, expected {num_classes}")
            if video_id in predictions:
                raise ValueError(f"{path}:{number}: video {video_id} appears a second time")
            predictions[video_id] = np.array([_to_float(v) for v in values[:num_classes]], dtype=np.float64)
    return predictions


def _to_float(text: str) -> float:
    # MATLAB's str2double gives NaN for anything it cannot parse.
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_charades_csv(path: PathLike, *, num_classes: int = CHARADES_NUM_CLASSES) -> Tuple[List[str], np.ndarray]:
    """Video ids (file order) and multi-hot labels ``[num_videos, num_classes]`` of a Charades CSV.

    The ``actions`` field reads ``c092 11.90 21.20;c147 0.00 12.60``; an empty field gives an
    all-zero row, which :func:`~videotl.evaluation.metrics.charades_map` treats the official way.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth CSV not found: {path}")
    ids: List[str] = []
    rows: List[np.ndarray] = []
    # Read as the dataset reads it: a spreadsheet-saved copy gives the same ground truth.
    table = read_csv_table(path, "the Charades ground truth", columns=("id", "actions"), expected="a Charades CSV")
    for _, row in table:
        label = np.zeros(num_classes, dtype=np.float64)
        for action in filter(None, row["actions"].split(";")):
            name = action.split()[0]
            try:
                index = int(name[1:])
            except ValueError:
                raise ValueError(f"{path}: video {row['id']}: cannot read action class {name!r}") from None
            if not 0 <= index < num_classes:
                raise ValueError(f"{path}: video {row['id']}: class {name} outside the {num_classes} classes")
            label[index] = 1.0
        ids.append(row["id"])
        rows.append(label)
    labels = np.stack(rows) if rows else np.zeros((0, num_classes))
    return ids, labels


def submission_matrix(predictions: Dict[str, np.ndarray], video_ids: Sequence[str], num_classes: int) -> np.ndarray:
    """Scores in ground-truth order; a video without a line keeps ``-inf`` (ranked last)."""
    scores = np.full((len(video_ids), num_classes), -np.inf, dtype=np.float64)
    for i, video_id in enumerate(video_ids):
        if video_id in predictions:
            scores[i] = predictions[video_id]
    return scores


def evaluate_submission(
    submission: PathLike, ground_truth: PathLike, *, num_classes: int = CHARADES_NUM_CLASSES, variant: str = "official"
):
    """Evaluate a submission file against a Charades CSV; returns (MapResult, number of videos missing)."""
    from .metrics import charades_map, sklearn_map

    if variant not in ("official", "sklearn"):
        raise ValueError(f"variant {variant!r}: must be 'official' or 'sklearn'")
    video_ids, labels = read_charades_csv(ground_truth, num_classes=num_classes)
    predictions = read_submission(submission, num_classes=num_classes)
    scores = submission_matrix(predictions, video_ids, num_classes)
    missing = sum(1 for v in video_ids if v not in predictions)
    metric = charades_map if variant == "official" else sklearn_map
    return metric(scores, labels), missing
