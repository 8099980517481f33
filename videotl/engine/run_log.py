"""Run logs: a text log, JSON-lines statistics, TensorBoard scalars and the environment dump.

Only the main process writes; the other ranks get objects that do nothing.
"""

import contextlib
import json
import logging
import math
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ..utils.fileio import WriteError, atomic_write_text, json_safe, os_error_reason
from ..utils.packages import package_version

__all__ = ["setup_logging", "StatsWriter", "write_environment", "memory_mb"]

LOGGER_NAME = "videotl"


class _LogFile(logging.FileHandler):
    """``log.txt``: a refused write (a full disk) is said once in one line, then the log goes on
    on the console only, instead of a traceback per record."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self.failed = True
        sys.stderr.write(
            f"warning: cannot write {self.baseFilename}: {os_error_reason(error)}; the log goes on on the console only\n"
        )

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            # What the buffer held could not be written; the failure was already said.
            self.stream = None


def setup_logging(output_dir: Optional[str], *, is_main: bool) -> logging.Logger:
    """The ``videotl`` logger: stdout and ``OUTPUT_DIR/log.txt`` on the main process, warnings only elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        with contextlib.suppress(OSError):
            handler.close()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    formatter = logging.Formatter("[%(asctime)s %(levelname)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if is_main and output_dir:
        path = Path(output_dir) / "log.txt"
        try:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            file_handler = _LogFile(path)
        except OSError as error:
            raise WriteError(f"cannot write {path}: {os_error_reason(error, path)}", error.errno) from None
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


def memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: allocated CUDA memory on a GPU, the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class StatsWriter:
    """Appends one JSON object per line to ``stats.jsonl`` and mirrors numbers to TensorBoard.

    A line is written in one call and flushed, and a partial last line left by a killed run is
    cut off when the file is reopened, so every line of the file parses.
    """

    def __init__(self, output_dir: str, *, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / "stats.jsonl"
        self._handle = None
        self._tb = None
        if not enabled:
            return
        self._tb_dir = Path(output_dir) / "tensorboard"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._drop_partial_line()
            self._handle = open(self.path, "a", encoding="utf-8")
        except OSError as error:
            raise WriteError(f"cannot write {self.path}: {os_error_reason(error, self.path)}", error.errno) from None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            try:
                self._tb = SummaryWriter(log_dir=str(self._tb_dir))
            except OSError as error:
                raise WriteError(
                    f"cannot write {self._tb_dir}: {os_error_reason(error, self._tb_dir)}", error.errno
                ) from None

    def _drop_partial_line(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def write(self, record: Dict[str, Any], *, step: Optional[int] = None, prefix: str = "") -> None:
        if not self.enabled:
            return
        clean = json_safe(record)
        try:
            self._handle.write(json.dumps(clean, sort_keys=False) + "\n")
            self._handle.flush()
        except OSError as error:
            raise WriteError(f"cannot write {self.path}: {os_error_reason(error)}", error.errno) from None
        if self._tb is not None and step is not None:
            try:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "iter"):
                        if isinstance(value, float) and not math.isfinite(value):
                            continue
                        self._tb.add_scalar(f"{prefix}{key}", value, step)
            except OSError as error:
                raise WriteError(f"cannot write {self._tb_dir}: {os_error_reason(error)}", error.errno) from None

    def close(self) -> None:
        # Closing after a refused write must not hide that error with a second one.
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with contextlib.suppress(OSError):
                handle.close()
        if self._tb is not None:
            tb, self._tb = self._tb, None
            with contextlib.suppress(OSError):
                tb.close()


def write_environment(output_dir: str, *, device: torch.device, world_size: int) -> Path:
    """Versions, devices and the launch command, to ``OUTPUT_DIR/environment.json``."""
    import numpy

    import videotl

    info: Dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "videotl": videotl.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "world_size": world_size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv,
    }
    for module in ("torchvision", "fvcore", "decord", "av", "sklearn"):
        info[module] = package_version(module)
    path = Path(output_dir) / "environment.json"
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")
    return path
