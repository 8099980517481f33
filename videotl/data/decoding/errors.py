"""What the readers raise: a file that cannot be read, a read past the time limit, and a backend
that cannot read a file exactly (the fallback's signal to read it with PyAV)."""

from __future__ import annotations

import os
from typing import Union

__all__ = ["CannotReadExactly", "DecodeTimeout", "PathLike", "VideoDecodeError"]

PathLike = Union[str, os.PathLike]


class VideoDecodeError(RuntimeError):
    """A video file could not be opened or decoded.

    Attributes:
        path: the file.
        reason: what went wrong, in words (missing file, no video stream, decoder error, ...).
    """

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keeps the (path, reason) signature when the error crosses a DataLoader worker boundary.
        return (type(self), (self.path, self.reason))


class DecodeTimeout(VideoDecodeError):
    """Decoding a file took longer than the time limit (:func:`~videotl.data.decoding.call_with_timeout`)."""


class CannotReadExactly(Exception):
    """A backend's frame index or decoder cannot be trusted on a file: the file is read with PyAV
    instead (:mod:`videotl.data.decoding.fallback` decides that, and logs it once per file)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
