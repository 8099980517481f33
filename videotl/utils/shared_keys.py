"""A set of keys shared by a process and the processes it starts (DataLoader workers, forked or
spawned): :meth:`SharedKeys.add` is True only for the first call with a key in any of them.

Each worker is its own process, so a per-process set would note a key once per worker. A marker
file created with O_EXCL in a folder the processes share (made by the process that created the
object, and passed to spawned workers when the object is pickled) makes "first to see this key"
atomic across processes, and lets any of them read back every key noted so far.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
from typing import Dict

__all__ = ["SharedKeys"]


class SharedKeys:
    def __init__(self, prefix: str = "videotl_keys_"):
        self.folder = tempfile.mkdtemp(prefix=prefix)
        # Only the creating process removes the folder: workers leave through os._exit, which
        # skips this finaliser, and must not delete what the others still use.
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)

    def __getstate__(self):
        # Pickled into spawned workers: they share the folder but never own it.
        return {"folder": self.folder}

    def __setstate__(self, state):
        self.folder = state["folder"]
        self._finalizer = None

    def add(self, key: str, value: str = "") -> bool:
        """Record ``key`` with ``value``; True only for the first call with it in any process."""
        marker = os.path.join(self.folder, hashlib.sha1(key.encode("utf-8")).hexdigest())
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError:
            # The shared folder is gone (e.g. cleaned by the system): still count the key as new.
            return True
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{key}\t{value}")
        return True

    def read(self) -> Dict[str, str]:
        """Every key recorded so far by any process, with its value."""
        found: Dict[str, str] = {}
        try:
            names = os.listdir(self.folder)
        except OSError:
            return found
        for name in names:
            try:
                with open(os.path.join(self.folder, name), encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                continue
            key, _, value = text.partition("\t")
            if key:
                found[key] = value
        return found
