"""Shared reading and checks for annotation files: every error names the path (and row) and what
was expected there.

Files are read as a spreadsheet or an editor saves them: UTF-8 with or without a byte-order mark,
any line ends, blank lines and blank rows anywhere, spaces around fields, quoted fields. What no
such program writes stops in one line: a byte that is not UTF-8, a quote left open (a row cut off
while the file was written), a row with more or fewer fields than the header.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

from .base import DatasetError

ENCODING = "UTF-8"


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
    names = []
    for number, name in annotation_lines(path, what):
        if name in names:
            raise DatasetError(f"{path}:{number}: class {name!r} is listed twice")
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: the class list is empty; expected {what}")
    return names


def read_annotation_text(path: Path, what: str) -> str:
    """The text of an annotation file read as UTF-8 (a byte-order mark dropped); a byte that is not
    UTF-8 is a DatasetError naming its row and column."""
    require_file(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DatasetError(
            f"{path}:{row}: byte 0x{data[error.start]:02x} at column {column} is not {ENCODING}, the encoding "
            f"annotation files are read in; save the file as {ENCODING} (a spreadsheet's 'CSV UTF-8')"
        ) from None


def annotation_lines(path: Path, what: str) -> Iterator[Tuple[int, str]]:
    """(line number, text) of each line that holds something, stripped; a line a spreadsheet quoted
    whole (``"a.mp4 1,4"``) is unquoted, and a spreadsheet's blank row (only commas) is skipped."""
    for number, line in enumerate(read_annotation_text(path, what).splitlines(), start=1):
        text = line.strip()
        if not text.strip(","):
            continue
        if text.startswith('"'):
            text = _unquoted(path, number, text)
        yield number, text


def _unquoted(path: Path, number: int, text: str) -> str:
    try:
        fields = next(csv.reader([text], strict=True))
    except csv.Error:
        raise DatasetError(f"{path}:{number}: unterminated quote in {text!r}") from None
    # A one-column sheet saved as CSV pads the line with the empty cells of wider rows.
    while len(fields) > 1 and not fields[-1].strip():
        fields.pop()
    return ",".join(fields).strip()


def read_csv_table(path: Path, what: str, *, columns: Sequence[str], expected: str) -> List[Tuple[int, Dict[str, str]]]:
    """(row's first line number, column -> stripped value) of each data row of a CSV file with a
    header holding ``columns`` (``expected`` says what the header should be, for the error).

    A row whose fields differ in number from the header's is an error (a cut-off last row among
    them), except for empty fields past the header's width, which spreadsheets add."""
    text = read_annotation_text(path, what)
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    header: List[str] = []
    rows: List[Tuple[int, Dict[str, str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise DatasetError(_csv_problem(path, start, error)) from None
        fields = [field.strip() for field in fields]
        if not any(fields):
            continue
        if not header:
            header = _header(path, start, _trimmed(fields, 0), columns, expected)
            continue
        fields = _trimmed(fields, len(header))
        if len(fields) != len(header):
            raise DatasetError(
                f"{path}:{start}: {len(fields)} fields where the header has {len(header)} "
                f"({', '.join(header)}){'; a row cut off while the file was written?' if len(fields) < len(header) else ''}"
            )
        rows.append((start, dict(zip(header, fields))))
    if not header:
        raise DatasetError(f"{path}: empty file; expected {expected}")
    return rows


def _trimmed(fields: List[str], width: int) -> List[str]:
    """``fields`` without the empty ones past ``width`` (a spreadsheet pads rows to its widest)."""
    while len(fields) > width and not fields[-1]:
        fields.pop()
    return fields


def _header(path: Path, line: int, fields: List[str], columns: Sequence[str], expected: str) -> List[str]:
    missing = [column for column in columns if column not in fields]
    if missing:
        raise DatasetError(f"{path}:{line}: header lacks column(s) {missing}; expected {expected}")
    return fields


def _csv_problem(path: Path, line: int, error: csv.Error) -> str:
    if "unexpected end of data" in str(error):
        return (
            f"{path}:{line}: unterminated quote: this row's quoted field runs to the end of the file "
            "(a row cut off while the file was written?)"
        )
    return f"{path}:{line}: malformed CSV row ({error})"
