"""Broken videos noted once across all DataLoader worker processes.

Each worker is its own process, so a per-process set would log a bad file once per worker. A
marker file created with O_EXCL in a folder the workers share (inherited from the process that
built the dataset) makes "first to see this path" atomic across processes, and lets the main
process read back every path any worker found broken.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
from typing import Dict


class BrokenVideoRegistry:
    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="videotl_broken_")
        # Only the creating process removes the folder: workers leave through os._exit, which
        # skips this finaliser, and must not delete what the others still use.
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)

    def __getstate__(self):
        # Pickled into spawned workers: they share the folder but never own it.
        return {"folder": self.folder}

    def __setstate__(self, state):
        self.folder = state["folder"]
        self._finalizer = None

    def add(self, path: str, reason: str) -> bool:
        """Record ``path``; True only for the first call with it in any process."""
        marker = os.path.join(self.folder, hashlib.sha1(path.encode("utf-8")).hexdigest())
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError:
            # The shared folder is gone (e.g. cleaned by the system): still report the path.
            return True
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{path}\t{reason}")
        return True

    def read(self) -> Dict[str, str]:
        """Every path recorded so far by any process, with its reason."""
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
            path, _, reason = text.partition("\t")
            if path:
                found[path] = reason
        return found
