"""AViD (Piergiovanni & Ryoo 2020): JSON annotations ``{"<clip>.mp4": "<class name>", ...}``.

Layout under the root::

    avid_train.json        from github.com/piergiaj/AViD, dataset/
    avid_val.json
    avid_classes.txt       one class name per line (datasets/prepare_avid.py writes it)
    videos/<clip>.mp4      (DATA.VIDEO_DIR to change)

Label rules (the release has ``"none"`` labels, a few empty ones and names outside the class list):

- ``"none"``: ``DATA.AVID_NONE_LABEL = "drop"`` removes the clip; ``"class"`` keeps it as a class
  named ``none`` (appended to the class list when the list lacks it).
- ``""`` and names outside the class list: ``DATA.AVID_UNKNOWN_LABEL = "drop"`` removes the clip,
  ``"error"`` stops with the clip's name.

How many clips each rule removed is logged and kept in :attr:`AvidLabelReport`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from ._files import read_annotation_text, read_class_list, require_dir, require_file, require_score_file_id
from .base import DatasetError, VideoRecord

__all__ = ["AVID_SPLITS", "AvidLabelReport", "load_avid"]

logger = logging.getLogger("videotl.data")

AVID_SPLITS = {"train": "avid_train.json", "val": "avid_val.json", "test": "avid_val.json"}
CLASS_FILE = "avid_classes.txt"


@dataclass
class AvidLabelReport:
    """Clips kept and removed by each label rule."""

    kept: int = 0
    none_removed: int = 0
    empty_removed: int = 0
    unknown_removed: int = 0

    def __str__(self) -> str:
        return (
            f"kept {self.kept} clips; removed {self.none_removed} labelled 'none', {self.empty_removed} with an "
            f"empty label, {self.unknown_removed} with a name outside the class list"
        )


def load_avid(
    root: Path,
    split: str,
    *,
    video_dir: str = "",
    none_label: str = "drop",
    unknown_label: str = "drop",
) -> Tuple[List[VideoRecord], List[str], AvidLabelReport]:
    """Parse one AViD split (``"train"``, ``"val"``; ``"test"`` reads the validation file)."""
    root = Path(root)
    require_dir(root, "the AViD annotations (avid_train.json, avid_val.json, avid_classes.txt) and videos/")
    if split not in AVID_SPLITS:
        raise DatasetError(f"AViD split {split!r}: must be one of {sorted(AVID_SPLITS)}")
    if none_label not in ("drop", "class") or unknown_label not in ("drop", "error"):
        raise ValueError(f"none_label={none_label!r} / unknown_label={unknown_label!r}: see DATA.AVID_* rules")
    class_names = read_class_list(
        root / CLASS_FILE, "the AViD class names, one per line (make it with datasets/prepare_avid.py)"
    )
    if none_label == "class" and "none" not in class_names:
        class_names.append("none")
    index = {name: i for i, name in enumerate(class_names)}
    annotation = require_file(root / AVID_SPLITS[split], f"the AViD {split} annotations (JSON clip -> class name)")
    try:
        entries = json.loads(read_annotation_text(annotation, f"the AViD {split} annotations"))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{annotation}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(entries, dict):
        raise DatasetError(f"{annotation}: expected a JSON object mapping clip file names to class names")
    videos = require_dir(root / (video_dir or "videos"), "the AViD clips (<clip>.mp4)")
    report = AvidLabelReport()
    records: List[VideoRecord] = []
    for clip, name in entries.items():
        if not isinstance(name, str):
            raise DatasetError(f"{annotation}: entry {clip!r} has label {name!r}; expected a class name string")
        name = name.strip()
        if name == "none" and none_label == "drop":
            report.none_removed += 1
            continue
        if name not in index:
            if unknown_label == "error":
                raise DatasetError(
                    f"{annotation}: entry {clip!r} has label {name!r}, which is not in {root / CLASS_FILE} "
                    "(DATA.AVID_UNKNOWN_LABEL 'drop' removes such clips)"
                )
            if name:
                report.unknown_removed += 1
            else:
                report.empty_removed += 1
            continue
        video_id = require_score_file_id(Path(clip).stem, f"{annotation}: entry {clip!r}")
        report.kept += 1
        records.append(VideoRecord(video_id, videos / clip, (index[name],)))
    logger.info("AViD %s (%s): %s", split, annotation, report)
    if not records:
        raise DatasetError(f"{annotation}: no clip left after the label rules ({report})")
    return records, class_names, report
