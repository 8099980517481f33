"""What every benchmark and table report shares: the machine it ran on, and Markdown sections
rewritten in place in the documents (``docs/benchmarks.md``)."""

import os
import platform
import re
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from videotl.utils.fileio import atomic_write_text

__all__ = ["machine_info", "update_markdown_section"]


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
