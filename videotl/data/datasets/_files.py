"""Shared checks for annotation files: every error names the path and what was expected there."""

from __future__ import annotations

from pathlib import Path
from typing import List

from .base import DatasetError


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: no such folder; expected {what} there")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; expected {what} there")
    return path


def require_score_file_id(video_id: str, where: str) -> str:
    """``video_id`` if the score file (TEST.SUBMISSION_FILE, the official Charades submission format:
    ``<id> s0 s1 ...`` split at white space) can hold it, else a DatasetError naming ``where``: found
    when the annotations are read, not after a whole run has trained."""
    if not video_id:
        raise DatasetError(f"{where}: empty video id; every video needs an id for the score file")
    if any(character.isspace() for character in video_id):
        raise DatasetError(
            f"{where}: video id {video_id!r} contains white space, which the space-separated score file "
            "(TEST.SUBMISSION_FILE, the official submission format) cannot hold; rename the video and its "
            "annotation entry together"
        )
    return video_id


def read_class_list(path: Path, what: str) -> List[str]:
    """One class name per non-blank line."""
    require_file(path, what)
    names = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise DatasetError(f"{path}:{number}: class {name!r} is listed twice")
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: the class list is empty; expected {what}")
    return names
