"""Charades (Sigurdsson et al. 2016) from the official release, unchanged.

Layout under the root (``DATA.PATH_TO_DATA_DIR``)::

    Charades_v1_train.csv      id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length
    Charades_v1_test.csv
    Charades_v1_classes.txt    c000 Holding some clothes   (157 lines)
    Charades_v1_480/<id>.mp4   (or the original-resolution Charades_v1/<id>.mp4)

``actions`` is ``c092 11.90 21.20;c147 0.00 12.60`` (class, start s, end s) and may be empty.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

from ._files import annotation_lines, read_csv_table, require_dir, require_file, require_score_file_id
from .base import DatasetError, VideoRecord

__all__ = ["CHARADES_SPLITS", "CHARADES_VIDEO_DIRS", "load_charades", "read_charades_classes"]

CHARADES_SPLITS = {"train": "Charades_v1_train.csv", "test": "Charades_v1_test.csv"}
# Searched in this order when DATA.VIDEO_DIR is empty.
CHARADES_VIDEO_DIRS = ("Charades_v1_480", "Charades_v1")
_CLASS_LINE = re.compile(r"^(c\d{3})\s+(\S.*)$")
_ACTION = re.compile(r"^(c\d{3})\s+(-?\d+(?:\.\d*)?)\s+(-?\d+(?:\.\d*)?)$")


def read_charades_classes(path: Path) -> Tuple[List[str], Dict[str, int]]:
    """Class names in file order and the code -> index map (``c000`` -> 0)."""
    names: List[str] = []
    codes: Dict[str, int] = {}
    for number, line in annotation_lines(path, "the Charades class list (lines like 'c000 Holding some clothes')"):
        match = _CLASS_LINE.match(line)
        if not match:
            raise DatasetError(f"{path}:{number}: malformed class line {line!r}: expected 'cNNN name'")
        code, name = match.groups()
        if code in codes:
            raise DatasetError(f"{path}:{number}: class code {code} is listed twice")
        codes[code] = len(names)
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: no classes; expected lines like 'c000 Holding some clothes'")
    return names, codes


def _intervals(actions: str, codes: Dict[str, int], *, where: str, video_id: str) -> List[Tuple[int, float, float]]:
    """(class, start, end) of each ``cNNN start end`` item of an ``actions`` field."""
    intervals = []
    for item in actions.split(";"):
        item = item.strip()
        if not item:
            continue
        match = _ACTION.match(item)
        if not match:
            raise DatasetError(f"{where}: malformed action {item!r} of video {video_id}: expected 'cNNN start end'")
        code, start, end = match.group(1), float(match.group(2)), float(match.group(3))
        if code not in codes:
            raise DatasetError(f"{where}: action class {code} is not in Charades_v1_classes.txt")
        intervals.append((codes[code], start, end))
    return intervals


def _video_dir(root: Path, video_dir: str) -> Path:
    if video_dir:
        return require_dir(root / video_dir, "the Charades videos (<id>.mp4)")
    for name in CHARADES_VIDEO_DIRS:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(
        f"{root}: no video folder; expected {' or '.join(CHARADES_VIDEO_DIRS)} with <id>.mp4 files there "
        "(or set DATA.VIDEO_DIR)"
    )


def load_charades(root: Path, split: str, *, video_dir: str = "") -> Tuple[List[VideoRecord], List[str]]:
    """Parse the official annotation files of one split (``"train"`` or ``"test"``).

    Returns:
        the videos (video-level labels = every action class of the video; intervals kept for
        clip labels) and the class names.
    """
    root = Path(root)
    require_dir(root, "the Charades release (Charades_v1_train.csv, Charades_v1_classes.txt, Charades_v1_480/)")
    if split not in CHARADES_SPLITS:
        raise DatasetError(f"Charades split {split!r}: must be one of {sorted(CHARADES_SPLITS)}")
    class_names, codes = read_charades_classes(root / "Charades_v1_classes.txt")
    annotation = require_file(
        root / CHARADES_SPLITS[split], f"the Charades {split} annotations (official CSV with id and actions columns)"
    )
    videos = _video_dir(root, video_dir)
    records: List[VideoRecord] = []
    rows = read_csv_table(
        annotation,
        f"the Charades {split} annotations",
        columns=("id", "actions"),
        expected="the official columns id,subject,scene,quality,relevance,verified,script,objects,descriptions,"
        "actions,length",
    )
    for line, row in rows:
        video_id = row["id"]
        where = f"{annotation}:{line}"
        intervals = _intervals(row["actions"], codes, where=where, video_id=video_id)
        require_score_file_id(video_id, where)
        labels = tuple(sorted({c for c, _, _ in intervals}))
        records.append(VideoRecord(video_id, videos / f"{video_id}.mp4", labels, tuple(intervals)))
    if not records:
        raise DatasetError(f"{annotation}: no videos listed")
    return records, class_names
