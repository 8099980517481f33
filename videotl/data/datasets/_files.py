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
