"""Kinetics-400 / 600 / 700 (Kay et al. 2017; Carreira et al. 2018, 2019) from the official CSVs.

Layout under the root (``DATA.PATH_TO_DATA_DIR``)::

    train.csv, val.csv (or validate.csv), test.csv    label,youtube_id,time_start,time_end,split[,is_cc]
                                                      (also found under annotations/)
    classes.txt          optional: the class names in index order (else the sorted names of the CSVs)
    train/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4     per-class folders, or
    train/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4             flat, as the downloaders save them

The split names the CSV (``<split>.csv``, ``val`` also finds ``validate.csv``; a name ending in
``.csv`` is taken as it is). Videos are searched under ``DATA.VIDEO_DIR`` (relative to the root)
when set, else the first folder of ``<split>``, ``videos/<split>``, ``videos`` and the root that
exists, in the folder itself and in its subfolders (per-class folders, whatever their names), with
any file extension. Clips missing there (Kinetics always has some: videos taken off YouTube) are
left out, counted and listed in one warning; the run goes on with the rest. A clip's id in the
score file is its file name without extension.

Class indices follow ``classes.txt`` when present, else the sorted class names of every Kinetics CSV
beside the split's (train, val and test together), so that every split numbers classes alike.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Set, Tuple

from ._files import read_class_list, read_csv_table, require_dir, require_score_file_id
from .base import DatasetError, VideoRecord

__all__ = ["KineticsReport", "load_kinetics"]

logger = logging.getLogger("videotl.data")

COLUMNS = ("label", "youtube_id", "time_start", "time_end")
EXPECTED = "the official Kinetics columns label,youtube_id,time_start,time_end,split"
# Other names the official releases give a split's CSV.
SPLIT_ALIASES = {"val": ("validate",), "validate": ("val",)}
# Missing clips named in the warning; the count covers all.
LISTED_MISSING = 20
_reported: Set[str] = set()


@dataclass
class KineticsReport:
    """Clips a split's CSV lists, and those of them not found among the videos."""

    listed: int = 0
    missing: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        names = ", ".join(self.missing[:LISTED_MISSING])
        more = len(self.missing) - LISTED_MISSING
        return f"{len(self.missing)} of {self.listed} clips missing: {names}" + (
            f" and {more} more" if more > 0 else ""
        )


def clip_name(youtube_id: str, time_start: int, time_end: int) -> str:
    """The file name (without extension) the usual downloaders give a clip."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def annotation_file(root: Path, split: str) -> Path:
    if split.endswith(".csv"):
        return root / split
    names = (split, *SPLIT_ALIASES.get(split, ()))
    candidates = [folder / f"{name}.csv" for folder in (root, root / "annotations") for name in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{candidates[0]}: no such file (nor {', '.join(str(c) for c in candidates[1:])}); expected the official "
        f"Kinetics CSV of split {split!r} ({EXPECTED})"
    )


def _video_folder(root: Path, split: str, video_dir: str) -> Path:
    if video_dir:
        return require_dir(root / video_dir, "the Kinetics clips (per-class folders or flat)")
    names = (Path(split).stem, *SPLIT_ALIASES.get(Path(split).stem, ()))
    for folder in (*(root / n for n in names), *(root / "videos" / n for n in names), root / "videos", root):
        if folder.is_dir():
            return folder
    raise DatasetError(f"{root}: no such folder; expected the Kinetics root with the CSVs and the clips")


def _index_videos(folder: Path) -> Dict[str, Path]:
    """File name without extension -> path, for the files in ``folder`` and in its subfolders."""
    found: Dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                with os.scandir(entry.path) as inner:
                    found.update((Path(e.name).stem, Path(e.path)) for e in inner if e.is_file())
            elif entry.is_file():
                found[Path(entry.name).stem] = Path(entry.path)
    return found


def kinetics_class_names(annotation: Path, rows: List[Tuple[int, Dict[str, str]]]) -> List[str]:
    """``classes.txt`` beside the CSVs (or in the root above ``annotations/``), else the sorted
    labels of ``rows`` (the annotation's) and of every other Kinetics CSV in its folder."""
    for folder in (annotation.parent, annotation.parent.parent):
        if (folder / "classes.txt").is_file():
            return read_class_list(folder / "classes.txt", "the Kinetics class names, one per line")
    names = {row["label"] for _, row in rows}
    for other in sorted(annotation.parent.glob("*.csv")):
        if other == annotation:
            continue
        try:
            names.update(row["label"] for _, row in read_csv_table(other, "", columns=COLUMNS, expected=EXPECTED))
        except DatasetError:
            continue  # not a labelled Kinetics CSV: the unlabelled test split, a file of the user's
    return sorted(names)


def _seconds(text: str, where: str, column: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        raise DatasetError(f"{where}: {column} {text!r} is not a number of seconds") from None


def load_kinetics(
    root: Path, split: str, *, video_dir: str = ""
) -> Tuple[List[VideoRecord], List[str], KineticsReport]:
    """The clips of one split found among the videos, the class names, and what was missing."""
    root = Path(root)
    require_dir(root, "the Kinetics root (train.csv, val.csv and the clips)")
    annotation = annotation_file(root, split)
    rows = read_csv_table(annotation, f"the Kinetics {split} annotations", columns=COLUMNS, expected=EXPECTED)
    class_names = kinetics_class_names(annotation, rows)
    index = {name: i for i, name in enumerate(class_names)}
    folder = _video_folder(root, split, video_dir)
    videos = _index_videos(folder)
    report = KineticsReport(listed=len(rows))
    records: List[VideoRecord] = []
    for line, row in rows:
        where = f"{annotation}:{line}"
        if row["label"] not in index:
            raise DatasetError(f"{where}: class {row['label']!r} is not among the {len(class_names)} class names")
        start, end = (_seconds(row[c], where, c) for c in ("time_start", "time_end"))
        name = require_score_file_id(clip_name(row["youtube_id"], start, end), where)
        if name not in videos:
            report.missing.append(name)
            continue
        records.append(VideoRecord(name, videos[name], (index[row["label"]],)))
    message = f"Kinetics {split} ({annotation}, clips under {folder}): {report}"
    if report.missing and message not in _reported and logger.isEnabledFor(logging.WARNING):
        # Once per process: a run reads a split again for each evaluation.
        _reported.add(message)
        logger.warning(message)
    if not records:
        raise DatasetError(
            f"{annotation}: none of its {report.listed} clips is under {folder}; expected files named "
            "<youtube_id>_<time_start:06d>_<time_end:06d>.mp4 there, flat or in per-class folders (or set DATA.VIDEO_DIR)"
        )
    return records, class_names, report
