"""FFmpeg's own log lines go through videotl's logger, not straight to the terminal.

Every decoding backend carries a copy of FFmpeg's libavutil: decord and PyAV bundle their own,
torchcodec loads the system's. Left alone, a copy prints its warnings to stderr, as decord's
does: one damaged WebM file prints ``[matroska,webm @ 0x...] 0x00 at pos ... invalid as first
byte of an EBML number`` again and again, between the progress bars. Here each copy gets a log
callback (``csrc/ffmpeg_log.c``, compiled on first use like the other C code, see
:mod:`videotl.utils.native`) that keeps FFmpeg's warnings and errors, and the readers of
:mod:`videotl.data.decoding` attribute them to the file they were reading.

``VIDEOTL_FFMPEG_LOG`` (inherited by DataLoader workers and tools' subprocesses), or
:func:`set_ffmpeg_log` in this process, chooses what a user sees:

- ``summary`` (default): one warning per file and run, from the ``videotl.data.ffmpeg`` logger:
  how many lines FFmpeg logged about the file and the first of them. A run is the process that
  built the dataset with its DataLoader workers (:func:`shared_reports`, which the dataset passes
  to them). A read that fails logs them at debug level only: the file is reported as unreadable,
  with the reason, anyway. Lines that say nothing about the file (:data:`HARMLESS`) are logged at
  debug level only.
- ``all``: every warning and error line, each a warning naming the file.
- ``ffmpeg``: each backend's own behaviour, untouched (decord prints its FFmpeg's errors to
  stderr; PyAV and torchcodec keep theirs quiet).

Without a C compiler (or with ``VIDEOTL_CPU_KERNELS=0``) the lines cannot be kept: FFmpeg is
made quiet instead, and an info line says so once.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import importlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from ..utils.native import load_native
from ..utils.shared_keys import SharedKeys

__all__ = [
    "FFMPEG_LOG_MODES",
    "adopt_shared_reports",
    "ffmpeg_log_mode",
    "reporting",
    "route_backend",
    "set_ffmpeg_log",
    "shared_reports",
]

logger = logging.getLogger("videotl.data.ffmpeg")

FFMPEG_LOG_MODES = ("summary", "all", "ffmpeg")
ENVIRONMENT_VARIABLE = "VIDEOTL_FFMPEG_LOG"
SOURCE = Path(__file__).with_name("csrc") / "ffmpeg_log.c"
_SLOTS = 8
_LINE = 512
# FFmpeg's levels (libavutil/log.h).
AV_LOG_QUIET = -8
AV_LOG_WARNING = 24
# The module each backend's FFmpeg comes with: importing it loads that libavutil copy.
_BACKEND_MODULES = {"pyav": "av", "decord": "decord", "torchcodec": "torchcodec.decoders"}

_lock = threading.RLock()
_mode: Optional[str] = None
# libavutil path -> the library, for every copy given a callback (or made quiet).
_routed: Dict[str, ctypes.CDLL] = {}
_backends_seen: Set[str] = set()
# The files reported so far in this run (see shared_reports).
_reported: Optional[SharedKeys] = None
_local = threading.local()
# What FFmpeg logs about good files, matched at the start of a line's message: decord's filter
# graph notes a frame whose colour metadata (range, colour space) differs from the first frame's
# (VP9 WebM's first frame often lacks it); the frames come out the same.
HARMLESS = re.compile(
    r"(\[[^]]*\] )?(Changing video frame properties on the fly is not supported by all filters"
    r"|filter context - w: (\d+) h: (\d+) fmt: (\S+) .*incoming frame - w: \3 h: \4 fmt: \5 )"
)


def ffmpeg_log_mode() -> str:
    """The mode in force: :func:`set_ffmpeg_log`'s, else ``VIDEOTL_FFMPEG_LOG``'s, else ``summary``."""
    if _mode is not None:
        return _mode
    mode = os.environ.get(ENVIRONMENT_VARIABLE, "summary").strip().lower() or "summary"
    if mode not in FFMPEG_LOG_MODES:
        _warn_unknown_mode(mode)
        return "summary"
    return mode


@functools.cache
def _warn_unknown_mode(mode: str) -> None:
    logger.warning(
        "%s=%r is not one of %s: FFmpeg's lines are summarised", ENVIRONMENT_VARIABLE, mode, ", ".join(FFMPEG_LOG_MODES)
    )


def set_ffmpeg_log(mode: str) -> None:
    """Choose what FFmpeg's log lines do in this process (see the module's docstring); the
    library copies already routed keep their callback, so ``ffmpeg`` takes effect for the
    backends not used yet (set ``VIDEOTL_FFMPEG_LOG=ffmpeg`` before the first read instead)."""
    global _mode
    if mode not in FFMPEG_LOG_MODES:
        raise ValueError(f"FFmpeg log mode {mode!r}: must be one of {', '.join(FFMPEG_LOG_MODES)}")
    _mode = mode


@functools.cache
def _keeper() -> Optional[ctypes.CDLL]:
    return load_native(
        SOURCE,
        _open_keeper,
        base_flags=("-std=gnu11", "-O2", "-fPIC", "-shared", "-pthread"),
        what="the FFmpeg log callback",
        fallback="FFmpeg's log lines are dropped instead of shown in videotl's log.",
        logger=logger,
        missing_compiler_level=logging.INFO,
    )


def _open_keeper(path: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(path))
    library.videotl_log_callback.argtypes = [ctypes.c_int, ctypes.c_void_p]
    library.videotl_log_callback.restype = ctypes.c_void_p
    library.videotl_log_set_threshold.argtypes = [ctypes.c_int]
    library.videotl_log_take.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    library.videotl_log_take.restype = ctypes.c_int
    library.videotl_log_take_discarded.restype = ctypes.c_ulonglong
    library.videotl_log_set_threshold(AV_LOG_WARNING)
    return library


def _loaded_libavutils(module_name: str) -> List[str]:
    """The libavutil files loaded in this process (Linux: its memory map), else those shipped
    beside ``module_name``'s package (``<package>.libs`` of a manylinux wheel, ``.dylibs`` of a
    macOS one)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as handle:
            found = {line.split(None, 5)[5].strip() for line in handle if "libavutil" in line and line.count(" ") >= 5}
        return sorted(path for path in found if os.path.isfile(path))
    except OSError:
        pass
    module = importlib.import_module(module_name.split(".")[0])
    package = Path(module.__file__).parent
    patterns = [str(package.parent / "*.libs" / "libavutil*"), str(package / ".dylibs" / "libavutil*")]
    return sorted({path for pattern in patterns for path in glob.glob(pattern)})


def route_backend(backend: str) -> None:
    """Give every libavutil copy that ``backend`` (``pyav``, ``decord``, ``torchcodec``) loads
    videotl's log callback, once per process; a backend that cannot be imported is left to the
    error its reader gives."""
    if backend in _backends_seen or ffmpeg_log_mode() == "ffmpeg":
        return
    with _lock:
        if backend in _backends_seen:
            return
        _backends_seen.add(backend)
        module_name = _BACKEND_MODULES.get(backend)
        if module_name is None:
            return
        try:
            importlib.import_module(module_name)
        except (ImportError, OSError, RuntimeError):
            return
        for path in _loaded_libavutils(module_name):
            if path not in _routed:
                _route(path)


def _route(path: str) -> None:
    try:
        library = ctypes.CDLL(path)
        set_callback, set_level = library.av_log_set_callback, library.av_log_set_level
    except (OSError, AttributeError):
        return
    keeper = _keeper()
    if keeper is None or len(_routed) >= _SLOTS:
        set_level.argtypes = [ctypes.c_int]
        set_level(AV_LOG_QUIET)
    else:
        formatter = ctypes.cast(library.av_log_format_line2, ctypes.c_void_p).value
        set_callback.argtypes = [ctypes.c_void_p]
        set_callback(keeper.videotl_log_callback(len(_routed), formatter))
    _routed[path] = library


def _take_lines() -> Tuple[List[str], int]:
    """The lines kept since the last call, oldest first, and how many more the keeper had to drop."""
    keeper = _keeper() if _routed else None
    if keeper is None:
        return [], 0
    lines: List[str] = []
    buffer, level = ctypes.create_string_buffer(_LINE), ctypes.c_int()
    while keeper.videotl_log_take(buffer, _LINE, ctypes.byref(level)):
        lines.append(buffer.value.decode("utf-8", errors="replace").rstrip())
    return lines, int(keeper.videotl_log_take_discarded())


@contextlib.contextmanager
def reporting(path: str, backend: str) -> Iterator[None]:
    """Attribute FFmpeg's lines logged while the body reads ``path`` (with ``backend``, which may
    fall back to PyAV) to that file, and report them as :func:`ffmpeg_log_mode` says. Nested
    uses report in the outermost one."""
    depth = getattr(_local, "depth", 0)
    if depth == 0:
        route_backend("pyav")
        route_backend(backend)
        # Lines logged outside any read (another library using the same FFmpeg) belong to no file.
        _take_lines()
    _local.depth = depth + 1
    failed = True
    try:
        yield
        failed = False
    finally:
        _local.depth = depth
        if depth == 0:
            _report(path, *_take_lines(), failed=failed)


def shared_reports() -> SharedKeys:
    """The files reported in this run: made by the first caller in a process (the one that builds
    the datasets), inherited by forked DataLoader workers and handed to spawned ones with the
    dataset (:func:`adopt_shared_reports`), so that each file is reported once per run."""
    global _reported
    with _lock:
        if _reported is None:
            _reported = SharedKeys(prefix="videotl_ffmpeg_reported_")
        return _reported


def adopt_shared_reports(reported: SharedKeys) -> None:
    """Report through ``reported``, the record of the process that started this one."""
    global _reported
    with _lock:
        _reported = reported


def _report(path: str, lines: List[str], dropped: int, *, failed: bool) -> None:
    if ffmpeg_log_mode() == "summary":
        harmless = [line for line in lines if HARMLESS.match(line)]
        if harmless:
            logger.debug("FFmpeg, reading %s: %s", path, " | ".join(harmless))
            lines = [line for line in lines if not HARMLESS.match(line)]
    if not lines:
        return
    if failed and ffmpeg_log_mode() == "summary":
        # The read raised (an unreadable file, reported with its reason by whoever catches it):
        # FFmpeg's lines about it would say the same thing a second time.
        logger.debug("FFmpeg, reading %s: %s", path, " | ".join(lines))
        return
    if ffmpeg_log_mode() == "all":
        for line in lines:
            logger.warning("FFmpeg, reading %s: %s", path, line)
        if dropped:
            logger.warning("FFmpeg, reading %s: %d more lines not kept", path, dropped)
        return
    if not shared_reports().add(path):
        return
    count = len(lines) + dropped
    logger.warning(
        "FFmpeg logged %d line%s reading %s, the first: %s (%s=all shows every line)",
        count,
        "" if count == 1 else "s",
        path,
        lines[0],
        ENVIRONMENT_VARIABLE,
    )
