"""One run per output folder, and a folder that can take the run's files before any work starts.

A training or test run holds an exclusive ``flock`` on ``OUTPUT_DIR/.lock``. The kernel drops the
lock when the process ends, however it ends (SIGKILL included), so a stale lock never blocks a
folder; a second run on the same folder stops at once, naming the holder from what the lock file
records (PID, host, start time, command). Under DDP only rank 0 takes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

from torch import nn

from ..utils.fileio import WriteError, check_writable, os_error_reason

try:
    import fcntl
except ImportError:  # not a POSIX system: runs are not locked
    fcntl = None

__all__ = [
    "LOCK_FILE",
    "RunLockError",
    "run_lock",
    "release_inherited_locks",
    "checkpoint_size_estimate",
]

logger = logging.getLogger("videotl")

LOCK_FILE = ".lock"

PathLike = Union[str, os.PathLike]

# Locks this process holds: resolved folder -> [file descriptor, nesting count, owner PID]. A
# process that locks a folder it already holds (train_net around train() and test()) only counts
# up: a second flock on a new descriptor of the same file would conflict with the first.
_HELD: Dict[Path, List[int]] = {}


class RunLockError(RuntimeError):
    """Another run holds the output folder; the message names the folder and that run."""


def release_inherited_locks() -> None:
    """In a forked child (a DataLoader worker), close the lock descriptors copied from the parent.

    The kernel frees a lock once every descriptor of it is closed: a worker that outlived its
    killed parent would otherwise keep the folder locked. The parent's lock is unaffected.
    """
    for key, (fd, _, owner) in list(_HELD.items()):
        if owner != os.getpid():
            with contextlib.suppress(OSError):
                os.close(fd)
            del _HELD[key]


def _holder(path: Path) -> str:
    # The holder writes its details right after taking the lock: retry briefly if they are not there yet.
    for _ in range(20):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            return f"PID {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "a process whose details the lock file does not give"


def _acquire(folder: Path) -> Optional[int]:
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WriteError(
            f"cannot write to OUTPUT_DIR {folder}: {os_error_reason(error, folder)}", error.errno
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockError(
            f"OUTPUT_DIR {folder} is in use by another run ({_holder(path)}): wait for it to end or choose "
            "another OUTPUT_DIR"
        ) from None
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            logger.warning(
                f"cannot lock {path} ({os_error_reason(error)}): nothing stops a second run on {folder} meanwhile"
            )
            return None
        raise WriteError(f"cannot lock {path}: {os_error_reason(error)}", error.errno) from None
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        "command": " ".join(sys.argv),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    except OSError as error:
        os.close(fd)
        raise WriteError(f"cannot write {path}: {os_error_reason(error)}", error.errno) from None
    return fd


@contextlib.contextmanager
def run_lock(output_dir: PathLike, *, enabled: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of ``output_dir`` (created if needed) for the block.

    Raises :class:`RunLockError` when another process holds it and :class:`WriteError` when the
    folder cannot be created or written. ``enabled=False`` (DDP ranks other than 0) does nothing.
    """
    if not enabled or fcntl is None:
        yield
        return
    folder = Path(output_dir)
    check_writable(folder, name="OUTPUT_DIR")
    key = folder.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        fd = _acquire(folder)
        if fd is None:
            yield
            return
        _HELD[key] = [fd, 1, os.getpid()]
    try:
        yield
    finally:
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            # Closing the descriptor releases the lock; the file stays for the next run to lock.
            os.close(entry[0])


def checkpoint_size_estimate(model: nn.Module, optimizer) -> int:
    """Bytes one checkpoint of ``model`` takes: its state, the optimizer's per-parameter buffers
    (one for SGD with momentum, two for Adam-style methods) and room for the rest."""
    # A DistributedDataParallel wrapper's state dict holds the same tensors under longer names.
    state = model.state_dict()
    size = sum(t.numel() * t.element_size() for t in state.values())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    defaults = getattr(optimizer, "defaults", {})
    if "betas" in defaults:
        slots = 3 if defaults.get("amsgrad") else 2
    else:
        slots = 1 if defaults.get("momentum", 0) else 0
    # Random generator states, the config text and the archive's per-record padding.
    rest = 2**20 + 128 * (len(state) + len(params))
    return size + slots * param_bytes + rest
