"""What every benchmark and table report shares: the machine it ran on, the one Markdown table
renderer, and Markdown sections rewritten in place in the documents (``docs/benchmarks.md``).

A benchmark's tables are rows: flat dicts of numbers and names (the units in the field names,
``clips_per_s``, ``peak_mib``; a list of numbers at most), each with a ``table`` field naming the
table it belongs to. :func:`markdown_table` writes one table from its rows and :class:`Column`
specs, which hold everything about the look: titles, number formats, alignment.
"""

import os
import platform
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch

from videotl.utils.fileio import atomic_write_text

__all__ = ["Column", "machine_info", "markdown_table", "table", "update_markdown_section", "yes_no"]

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of a Markdown table.

    ``cell`` is a ``str.format`` template over the row's fields (``"{fw_median_ms:,.1f}"``), whose
    cell is ``missing`` when a field it names is absent or None, or a function of the row for
    cells a template cannot say. ``align`` is ``"right"`` (numbers) or ``"left"``.
    """

    title: str
    cell: Union[str, Callable[[Row], str]]
    align: str = "right"
    missing: str = ""

    def __post_init__(self) -> None:
        if self.align not in ("left", "right"):
            raise ValueError(f"column {self.title!r}: align must be 'left' or 'right', got {self.align!r}")

    def text(self, row: Row) -> str:
        if callable(self.cell):
            return self.cell(row)
        fields = [name for _, name, _, _ in string.Formatter().parse(self.cell) if name]
        if any(row.get(re.split(r"[.\[]", name)[0]) is None for name in fields):
            return self.missing
        return self.cell.format_map(row)


def markdown_table(rows: Iterable[Row], columns: Sequence[Column]) -> str:
    """The Markdown table of ``rows``: a header line, the alignment line, one line per row."""

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [line(c.title for c in columns), line("---:" if c.align == "right" else "---" for c in columns)]
    lines += [line(c.text(row) for c in columns) for row in rows]
    return "\n".join(lines)


def table(rows: Iterable[Row], name: str) -> List[Row]:
    """The rows of table ``name``, in order."""
    return [row for row in rows if row["table"] == name]


def yes_no(field: str, *, no: str = "no", missing: str = "—") -> Callable[[Row], str]:
    """A cell saying ``yes`` or ``no`` for a boolean field (``missing`` for None or absent)."""
    return lambda row: missing if row.get(field) is None else ("yes" if row[field] else no)


def machine_info(*, device: str = "cpu", threads: Optional[int] = None) -> Dict[str, Any]:
    """The machine, the library versions and the load when a measurement starts."""
    import av
    import decord

    from videotl.models.vector_attention_cpu import load_kernels

    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "decord": getattr(decord, "__version__", "?"),
        "av": av.__version__,
        "cpu_count": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads or torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "vector_attention_cpu_kernels": load_kernels() is not None,
        "cuda": torch.cuda.is_available(),
    }
    try:
        import torchcodec

        info["torchcodec"] = torchcodec.__version__
    except Exception:  # noqa: BLE001 - torchcodec raises several types when FFmpeg is missing
        info["torchcodec"] = None
    try:
        with open("/proc/cpuinfo") as handle:
            info["cpu"] = re.search(r"model name\s*:\s*(.+)", handle.read()).group(1).strip()
    except (OSError, AttributeError):
        info["cpu"] = platform.processor() or platform.machine()
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def update_markdown_section(path: Path, section: str) -> None:
    """Replace the ``## <title>`` section of ``path`` with ``section`` (or append it), keeping the rest."""
    path = Path(path)
    title = section.splitlines()[0]
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(path, text.rstrip("\n") + "\n")
