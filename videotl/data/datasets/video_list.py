"""Generic list of videos for the user's own data (the Kinetics-style route of PySlowFast).

``<root>/<split>.csv``, one video per line, ``DATA.PATH_LABEL_SEPARATOR`` (default a space)
between path and labels::

    videos/abc.mp4 3
    videos/def.mp4 1,4          (several labels need DATA.MULTI_LABEL True)

Paths are relative to ``DATA.PATH_PREFIX`` (default: the root); absolute paths are kept. A path, as
written, is the video's id in the score file, so it holds no white space (any other character,
non-ASCII ones included, is fine). Labels are class indices; ``<root>/classes.txt`` (one name per
line) names them when present.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

from ._files import annotation_lines, read_class_list, require_dir, require_file, require_score_file_id
from .base import DatasetError, VideoRecord

__all__ = ["class_indices", "list_class_names", "listed_record", "load_csv"]

_SPACED_COMMA = re.compile(r"\s*,\s*")


def load_csv(
    root: Path,
    split: str,
    *,
    num_classes: int,
    path_prefix: str = "",
    separator: str = " ",
) -> Tuple[List[VideoRecord], List[str]]:
    root = Path(root)
    require_dir(root, f"the video list {split}.csv (lines 'path label' or 'path label1,label2')")
    annotation = require_file(root / f"{split}.csv", "the video list, one 'path label[,label...]' line per video")
    class_names = list_class_names(root, num_classes)
    base = Path(path_prefix) if path_prefix else root
    records: List[VideoRecord] = []
    for number, line in annotation_lines(annotation, "the video list"):
        # Split at the last separator so that a path may contain it (a path is the video's id in the
        # score file, which white space would break: see require_score_file_id), after closing the
        # spaces a hand-edited file leaves around the labels' commas.
        parts = _SPACED_COMMA.sub(",", line).rsplit(separator, 1)
        if len(parts) != 2 or not parts[0].strip():
            raise DatasetError(
                f"{annotation}:{number}: malformed line {line!r}: expected 'path{separator}label[,label...]'"
            )
        where = f"{annotation}:{number}"
        labels = class_indices(parts[1].strip().split(","), num_classes, where, expected="'label' or 'label1,label2'")
        records.append(listed_record(parts[0].strip(), base, labels, where))
    if not records:
        raise DatasetError(f"{annotation}: no videos listed")
    return records, class_names


def list_class_names(root: Path, num_classes: int) -> List[str]:
    """The names in ``<root>/classes.txt`` (one per line, ``num_classes`` of them) when it exists,
    else the class indices as names."""
    class_file = root / "classes.txt"
    if not class_file.exists():
        return [str(i) for i in range(num_classes)]
    class_names = read_class_list(class_file, "class names, one per line")
    if len(class_names) != num_classes:
        raise DatasetError(f"{class_file}: lists {len(class_names)} classes but MODEL.NUM_CLASSES is {num_classes}")
    return class_names


def class_indices(texts: List[str], num_classes: int, where: str, *, expected: str) -> Tuple[int, ...]:
    """The sorted distinct class indices written in ``texts``, each in ``[0, num_classes)``."""
    try:
        labels = tuple(sorted({int(text) for text in texts}))
    except ValueError:
        raise DatasetError(f"{where}: labels {' '.join(texts)!r} are not integers: expected {expected}") from None
    bad = [x for x in labels if not 0 <= x < num_classes]
    if bad:
        raise DatasetError(f"{where}: label(s) {bad} outside [0, {num_classes}) (MODEL.NUM_CLASSES = {num_classes})")
    return labels


def listed_record(path_text: str, base: Path, labels: Tuple[int, ...], where: str) -> VideoRecord:
    """The record of a listed path (its id as written; relative to ``base`` unless absolute)."""
    require_score_file_id(path_text, where)
    path = Path(path_text)
    return VideoRecord(path_text, path if path.is_absolute() else base / path, labels)
