"""Atomic file writes, one-line write errors and the one NaN-safe conversion for JSON files.

A crash never leaves a half-written file under the final name, and a file system that refuses a
write (full, read-only, no permission) raises :class:`WriteError`, whose message names the file
and gives the reason in words; the temporary file is removed and the previous file stays as it was.
"""

import contextlib
import errno
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

__all__ = [
    "WriteError",
    "atomic_path",
    "atomic_write_text",
    "check_writable",
    "format_bytes",
    "json_safe",
    "os_error_reason",
    "write_error_from",
]

PathLike = Union[str, os.PathLike]

# Errors that say the file system refused the write rather than something about the data.
_REFUSED = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EFBIG,
    errno.EIO,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}


class WriteError(OSError):
    """A file or folder could not be written; the message names it and says why in words.

    ``errno`` keeps the operating system's code (``errno.ENOSPC``, ...) when there was one.
    """

    def __init__(self, message: str, code: Optional[int] = None):
        super().__init__(message)
        self.errno = code


def _blocking_file(path: Path) -> Optional[Path]:
    """The first of ``path`` and its parents that exists but is not a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def os_error_reason(error: OSError, path: Optional[PathLike] = None) -> str:
    """What went wrong, in words: ``"no space left on device"``, ``"read-only file system"``,
    ``"/out/checkpoints is a file, not a folder"``."""
    if path is not None and error.errno in (errno.ENOTDIR, errno.EEXIST):
        blocking = _blocking_file(Path(path))
        if blocking is not None:
            return f"{blocking} is a file, not a folder"
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


def write_error_from(error: BaseException) -> Optional[OSError]:
    """The :class:`OSError` behind a failed write, following ``__cause__`` and ``__context__``
    (``torch.save`` reports a refused write as a ``RuntimeError`` whose context is the OSError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _refused(error: BaseException) -> Optional[OSError]:
    cause = write_error_from(error)
    return cause if cause is not None and cause.errno in _REFUSED else None


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A refused write (in the block, the flush or the rename) raises :class:`WriteError` naming
    ``path``; other errors of the block pass through unchanged. Either way the temporary is gone.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteError(f"cannot write {path}: {os_error_reason(error, path.parent)}", error.errno) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        # mkstemp creates the file 0600; give the result the permissions open() would (umask applied).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception as error:
        refused = _refused(error)
        if refused is None:
            raise
        raise WriteError(f"cannot write {path}: {os_error_reason(refused, path)}", refused.errno) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def check_writable(folder: PathLike, *, name: str, need_bytes: int = 0) -> Path:
    """Create ``folder`` if needed, write and remove a probe file in it and check that it has
    ``need_bytes`` free; raise :class:`WriteError` (naming ``name`` and the folder) otherwise."""
    folder = Path(folder)
    blocking = _blocking_file(folder)
    if blocking is not None:
        what = "it is" if blocking == folder else f"{blocking} is"
        raise WriteError(f"cannot write to {name} {folder}: {what} a file, not a folder", errno.ENOTDIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"cannot create {name} {folder}: {os_error_reason(error, folder)}", error.errno) from None
    probe = folder / f".write_probe.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            # One byte needs a data block: a full file system refuses it, an empty file it may not.
            os.write(fd, b"0")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise WriteError(f"cannot write to {name} {folder}: {os_error_reason(error, folder)}", error.errno) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    if need_bytes > 0:
        free = shutil.disk_usage(folder).free
        if free < need_bytes:
            raise WriteError(
                f"not enough free space in {name} {folder}: {format_bytes(free)} free, one checkpoint needs "
                f"about {format_bytes(need_bytes)}; free some space or choose another OUTPUT_DIR",
                errno.ENOSPC,
            )
    return folder
