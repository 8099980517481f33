"""The PyAV backend: FFmpeg's demuxer and decoder driven packet by packet, which reads every file
exactly (the other backends fall back to it, :mod:`~videotl.data.decoding.fallback`).

A read seeks to the keyframe before the first wanted time (retried earlier where the seek lands
late), then picks frames as :mod:`~videotl.data.decoding.pyav_frames` says for the file's timing.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import av
import numpy as np
import torch

from .backends import BACKENDS, BackendReader, DecodingBackend
from .container import open_video
from .errors import VideoDecodeError
from .pyav_frames import FramesByPts, SeekLandedLate, frames_by_clock, frames_by_index
from .rgb import rgb_converter
from .video_info import TIME_EPS, VideoInfo

__all__ = ["PyAVBackend", "PyAVReader"]

# A seek that lands after the first wanted time (a transport stream lands on any packet, the
# keyframe may follow the target) is retried this many seconds earlier, then from the start.
_SEEK_BACKOFF_SEC = (1.0, 4.0, 16.0)


class PyAVBackend(DecodingBackend):
    """PyAV's reader. ``open_container`` opens a file as ``(container, video stream)`` (a test
    wraps the real one to watch what is sent to the decoder)."""

    def __init__(self, *, open_container: Callable = open_video):
        self.open_container = open_container

    def open(self, path: str, info: VideoInfo, *, num_threads: int = 0, device="cpu", autorotate: bool = True):
        return PyAVReader(
            path, info, num_threads=num_threads, autorotate=autorotate, open_container=self.open_container
        )


class PyAVReader(BackendReader):
    """A file read with PyAV: each request opens the file, seeks and decodes forward."""

    def __init__(
        self, path: str, info: VideoInfo, *, num_threads: int, autorotate: bool, open_container: Callable = open_video
    ):
        self.path, self.info = path, info
        self.num_threads, self.autorotate = num_threads, autorotate
        self.open_container = open_container

    def frames_at(self, sorted_times: np.ndarray, out_hw) -> torch.Tensor:
        buffer: Optional[np.ndarray] = None
        for lo, hi, array in self.frames(sorted_times, out_hw):
            if buffer is None:
                buffer = np.empty((len(sorted_times),) + array.shape, dtype=np.uint8)
            buffer[lo:hi] = array
        return torch.from_numpy(buffer)

    def segments(self, times: np.ndarray, out_hw, frames_per_segment: int) -> Iterator[torch.Tensor]:
        """One forward decode for all ``times``; each segment yielded as soon as it is complete."""
        chunk = frames_per_segment
        pending: Dict[int, List] = {}  # chunk index -> [buffer, frames filled]
        next_chunk = 0
        total = math.ceil(len(times) / chunk)
        for lo, hi, array in self.frames(times, out_hw):
            for index in range(lo // chunk, (hi - 1) // chunk + 1):
                entry = pending.get(index)
                if entry is None:
                    rows = min(chunk, len(times) - index * chunk)
                    entry = pending[index] = [np.empty((rows,) + array.shape, dtype=np.uint8), 0]
                a, b = max(lo, index * chunk), min(hi, (index + 1) * chunk)
                entry[0][a - index * chunk : b - index * chunk] = array
                entry[1] += b - a
            while (
                next_chunk < total and next_chunk in pending and pending[next_chunk][1] == len(pending[next_chunk][0])
            ):
                yield torch.from_numpy(pending.pop(next_chunk)[0])
                next_chunk += 1

    def frames(self, sorted_times: np.ndarray, out_hw) -> Iterator[Tuple[int, int, np.ndarray]]:
        """``(lo, hi, rgb)``: the frame on screen at ``sorted_times[lo:hi]``; every index once."""
        first = float(sorted_times[0])
        info = self.info
        # Where timestamps jump, a seek target names no single place: decode from the start.
        if info.has_timestamps and not info.discontinuities:
            for back in (0.0,) + _SEEK_BACKOFF_SEC:
                if first - back <= TIME_EPS:
                    break
                try:
                    yield from self._decode(sorted_times, out_hw, seek_to=first - back)
                    return
                except SeekLandedLate:
                    # The keyframe before the target lies further back (the index timestamps are
                    # DTS, an open GOP, a transport stream): seek earlier.
                    continue
        yield from self._decode(sorted_times, out_hw, seek_to=None)

    def _decode(self, sorted_times, out_hw, *, seek_to: Optional[float]):
        container, stream = self.open_container(self.path)
        info = self.info
        try:
            context = stream.codec_context
            if self.num_threads > 1:
                stream.thread_type = "AUTO"
            if self.num_threads > 0:
                context.thread_count = self.num_threads
            rotation = info.rotation if self.autorotate else 0
            convert = rgb_converter(out_hw, rotation, info.frame_size(self.autorotate))
            try:
                if info.timing == "none":
                    yield from frames_by_index(container, stream, info, sorted_times, convert)
                elif info.timing == "decoder":
                    yield from frames_by_clock(container, stream, info, sorted_times, convert, seek_to=seek_to)
                else:
                    yield from FramesByPts(container, stream, info, sorted_times, convert, seek_to=seek_to)
            except av.error.FFmpegError as error:
                raise VideoDecodeError(self.path, f"decoding failed: {error}") from None
        finally:
            container.close()


BACKENDS.register("pyav", PyAVBackend())
