"""The one place that decides "this backend cannot read this file exactly: read it with PyAV".

A backend hands a file to PyAV when it says so from the probe (``cannot_read_exactly``), when its
frame index or its frames disagree with the container's (:class:`CannotReadExactly`), or when its
decoder fails on a file PyAV reads (:class:`VideoDecodeError`; decord fails on some frame widths,
e.g. 96 or 144 pixels). Every backend follows the same contract, so the frames are the same;
each such file is logged once per process.
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional

import numpy as np
import torch

from .backends import BACKENDS, DecodingBackend, backend_named
from .errors import CannotReadExactly, VideoDecodeError
from .video_info import VideoInfo

__all__ = ["FALLBACK_BACKEND", "exact_read_refusal", "read_sorted", "read_segments_of"]

logger = logging.getLogger("videotl.data")

# The backend that reads every file exactly.
FALLBACK_BACKEND = "pyav"

# Files a backend could not read exactly and PyAV read instead, each logged once per process.
_FALLBACKS: set = set()


def _note_fallback(backend: str, path: str, reason: str) -> None:
    if (backend, path) not in _FALLBACKS:
        _FALLBACKS.add((backend, path))
        logger.warning("%s cannot read %s exactly (%s); read with PyAV instead", backend, path, reason)


def _open_exact(backend: DecodingBackend, path: str, info: VideoInfo, options: dict):
    reason = backend.cannot_read_exactly(info)
    if reason:
        raise CannotReadExactly(reason)
    return backend.open(path, info, **options)


def read_sorted(name: str, path: str, info: VideoInfo, sorted_times: np.ndarray, out_hw, **options) -> torch.Tensor:
    """The frames on screen at ``sorted_times``, read with backend ``name`` or, where it cannot
    read the file exactly, with PyAV. ``options``: ``num_threads``, ``device``, ``autorotate``."""

    def with_fallback() -> torch.Tensor:
        with BACKENDS.get(FALLBACK_BACKEND).open(path, info, **options) as reader:
            return reader.frames_at(sorted_times, out_hw)

    if name == FALLBACK_BACKEND:
        return with_fallback()
    try:
        with _open_exact(backend_named(name), path, info, options) as reader:
            return reader.frames_at(sorted_times, out_hw)
    except CannotReadExactly as untrusted:
        _note_fallback(name, path, untrusted.reason)
        return with_fallback()
    except VideoDecodeError as error:
        try:
            result = with_fallback()
        except VideoDecodeError as pyav_error:
            raise VideoDecodeError(path, f"{error.reason}; PyAV: {pyav_error.reason}") from None
        _note_fallback(name, path, error.reason)
        return result


def read_segments_of(
    name: str, path: str, info: VideoInfo, times: np.ndarray, out_hw, frames_per_segment: int, **options
) -> Iterator[torch.Tensor]:
    """Consecutive ``frames_per_segment`` clips of ``times`` (sorted) from one open reader of
    backend ``name``; where it cannot read the file exactly, the rest come from PyAV (segments
    already handed out were exact)."""

    def with_fallback(rest: np.ndarray) -> Iterator[torch.Tensor]:
        with BACKENDS.get(FALLBACK_BACKEND).open(path, info, **options) as reader:
            yield from reader.segments(rest, out_hw, frames_per_segment)

    if name == FALLBACK_BACKEND:
        yield from with_fallback(times)
        return
    try:
        reader = _open_exact(backend_named(name), path, info, options)
    except (CannotReadExactly, VideoDecodeError) as error:
        _note_fallback(name, path, error.reason)
        yield from with_fallback(times)
        return
    done = 0
    try:
        for segment in reader.segments(times, out_hw, frames_per_segment):
            yield segment
            done += frames_per_segment
    except (CannotReadExactly, VideoDecodeError) as error:
        _note_fallback(name, path, error.reason)
        if done < len(times):
            yield from with_fallback(times[done:])
    finally:
        reader.close()


def exact_read_refusal(backend: DecodingBackend, path: str, info: VideoInfo) -> Optional[str]:
    """Why ``backend`` hands ``path`` to PyAV before reading a frame (None when it reads it itself)."""
    try:
        _open_exact(backend, path, info, dict(num_threads=1)).close()
    except (CannotReadExactly, VideoDecodeError) as error:
        return error.reason
    return None
