"""The decoding backends: one small protocol every reader follows, and the registry
(:data:`BACKENDS`) from the name ``DATA.DECODING_BACKEND`` and ``backend=`` give to the backend.

A backend is an object with

- ``unavailable_reason()``: None where it can decode here, else one line saying what is missing;
- ``cannot_read_exactly(info)``: why, from the probe alone, it must not read a file (None when
  it may); such files are read with PyAV (:mod:`~videotl.data.decoding.fallback`);
- ``prepare()``: load its libraries before FFmpeg's log routing imports them;
- ``open(path, info, *, num_threads, device, autorotate)``: a :class:`BackendReader` over the
  file (it may raise :class:`CannotReadExactly` when its frame index disagrees with the probe).

A reader gives ``frames_at(sorted_times, out_hw)`` (``N x H x W x 3`` uint8, the frame on screen
at each time, see :mod:`videotl.data.decoding`), ``segments(times, out_hw, frames_per_segment)``
(consecutive clips, each as soon as it is complete) and ``close()``. :class:`DecodingBackend`
and :class:`BackendReader` give the defaults (``segments`` asks ``frames_at`` one segment at a
time); ``datasets/DATASETS.md`` registers a reader over pre-extracted frames.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator, Optional, Tuple, Union

import numpy as np
import torch

from ...registry import Registry
from ..sampling import frame_indices_at
from .errors import CannotReadExactly
from .video_info import TIME_EPS, VideoInfo

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "BackendReader",
    "DecodingBackend",
    "backend_named",
    "decoder_threads",
    "frames_on_screen",
    "oriented",
]

Device = Union[str, torch.device]
OutputSize = Optional[Tuple[int, int]]


class BackendReader(ABC):
    """One open file of a backend. Subclasses give :meth:`frames_at`; :meth:`segments` asks it for
    one segment at a time (a reader that decodes forward serves that in one pass)."""

    @abstractmethod
    def frames_at(self, sorted_times: np.ndarray, out_hw: OutputSize) -> torch.Tensor:
        """uint8 ``len(sorted_times) x H x W x 3``: the frame on screen at each time (seconds from
        the first frame, sorted), at ``out_hw`` (``(height, width)``) or at the source size."""

    def segments(self, times: np.ndarray, out_hw: OutputSize, frames_per_segment: int) -> Iterator[torch.Tensor]:
        """Consecutive ``frames_per_segment`` clips of ``times`` (sorted), each yielded once complete."""
        for start in range(0, len(times), frames_per_segment):
            yield self.frames_at(times[start : start + frames_per_segment], out_hw)

    def close(self) -> None:
        """Release the decoder (the default holds nothing that needs it)."""
        return None

    def __enter__(self) -> BackendReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class DecodingBackend(ABC):
    """A way to read videos; subclasses give :meth:`open` (and say what they cannot read exactly)."""

    def unavailable_reason(self) -> Optional[str]:
        return None

    def cannot_read_exactly(self, info: VideoInfo) -> Optional[str]:
        return None

    def prepare(self) -> None:
        """Load the backend's libraries (nothing by default)."""
        return None

    @abstractmethod
    def open(
        self, path: str, info: VideoInfo, *, num_threads: int = 0, device: Device = "cpu", autorotate: bool = True
    ) -> BackendReader:
        """A reader over ``path`` (probed as ``info``)."""


BACKENDS: Registry[DecodingBackend] = Registry("decoding backend")

# The default reader (``DATA.DECODING_BACKEND``, ``backend=``): PyAV is the fastest exact reader on
# every kind of file measured (docs/benchmarks.md): it skips the non-reference frames no asked time
# shows and scales in YUV, where decord and torchcodec decode every frame and resize RGB.
DEFAULT_BACKEND = "pyav"


def backend_named(name: str) -> DecodingBackend:
    """The registered backend ``name``; a ValueError names the registered ones."""
    if name not in BACKENDS:
        raise ValueError(f"backend = {name!r}: must be one of {tuple(BACKENDS.names())}")
    return BACKENDS.get(name)


def decoder_threads(num_threads: int) -> int:
    """The decoder threads of a read asking for ``num_threads``: 0 ("the decoder chooses") is one
    thread inside a DataLoader worker, where the workers already share the cores and FFmpeg's own
    choice (a thread per core, plus decord's worker) doubles the CPU time of a clip."""
    if num_threads > 0:
        return int(num_threads)
    return 1 if torch.utils.data.get_worker_info() is not None else 0


def frames_on_screen(sorted_stamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time: the last ``sorted_stamps[i] <= t + TIME_EPS``."""
    return frame_indices_at(sorted_stamps, times, eps=TIME_EPS)


def oriented(frames: torch.Tensor, info: VideoInfo, autorotate: bool) -> torch.Tensor:
    """Frames of a decoder that applies the display matrix (``N x H x W x 3``, turned as
    displayed) in the orientation asked for."""
    if tuple(frames.shape[1:3]) != (info.height, info.width):
        raise CannotReadExactly(
            f"it returns {frames.shape[2]}x{frames.shape[1]} frames, the display size is {info.width}x{info.height}"
        )
    turns = info.rotation // 90
    if autorotate or not turns:
        return frames
    return torch.rot90(frames, -turns, dims=(1, 2))


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
