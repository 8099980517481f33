"""MMAction2's video annotation lists (its ``VideoDataset`` ``ann_file``), as MMAction2 reads them.

Any file is the list: the split (``TRAIN.SPLIT`` / ``TEST.SPLIT``) names it, relative to the root
(``DATA.PATH_TO_DATA_DIR``) or absolute, e.g. ``kinetics400_train_list_videos.txt``. One video per
line, fields separated by white space::

    some/path/000.mp4 1
    some/path/001.mp4 1 4 7        (several labels: DATA.MULTI_LABEL True, MMAction2's multi_class)

Paths are relative to ``DATA.PATH_PREFIX`` (MMAction2's ``data_prefix``; default: the root);
absolute paths are kept. The path, as written, is the video's id in the score file. Labels are
class indices; ``<root>/classes.txt`` (one name per line, e.g. MMAction2's ``label_map_k400.txt``)
names them when present. MMAction2's raw-frame lists (``frame_dir total_frames label``) are not
read: videotl reads video files.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from ._files import annotation_lines, require_dir, require_file
from .base import DatasetError, VideoRecord
from .video_list import class_indices, list_class_names, listed_record

__all__ = ["load_mmaction_list"]


def load_mmaction_list(
    root: Path, split: str, *, num_classes: int, path_prefix: str = ""
) -> Tuple[List[VideoRecord], List[str]]:
    """The videos of the MMAction2 list ``split`` (a file name) and the class names."""
    root = Path(root)
    require_dir(root, "the dataset root: the MMAction2 list file (TRAIN.SPLIT / TEST.SPLIT names it) and the videos")
    annotation = require_file(root / split, "an MMAction2 video list ('path label' or 'path label1 label2 ...' lines)")
    class_names = list_class_names(root, num_classes)
    base = Path(path_prefix) if path_prefix else root
    records: List[VideoRecord] = []
    for number, line in annotation_lines(annotation, "an MMAction2 video list"):
        where = f"{annotation}:{number}"
        fields = line.split()
        if len(fields) < 2:
            raise DatasetError(f"{where}: malformed line {line!r}: expected 'path label' or 'path label1 label2 ...'")
        folder = base / fields[0]
        if not folder.suffix and folder.is_dir():
            raise DatasetError(
                f"{where}: {folder} is a folder: MMAction2's raw-frame lists (frame_dir total_frames label) "
                "are not read; list the video files instead"
            )
        labels = class_indices(fields[1:], num_classes, where, expected="'path label' or 'path label1 label2 ...'")
        records.append(listed_record(fields[0], base, labels, where))
    if not records:
        raise DatasetError(f"{annotation}: no videos listed")
    return records, class_names
