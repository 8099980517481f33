"""Time grids: where clips start and which source frame each sampled time shows.

All times are seconds from a video's first frame. A clip of ``num_frames`` at ``fps`` samples the
times ``start + k / fps`` and spans ``num_frames / fps`` seconds. Clip starts lie on the ``1 / fps``
grid, so every time a clip samples is some ``k / fps``: a file transcoded to ``fps`` (with
``datasets/transcode.py``) holds exactly the frames the same request reads from the original.
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import torch

__all__ = [
    "clip_times",
    "clip_span",
    "on_grid",
    "frame_indices_at",
    "num_target_frames",
    "segment_count",
    "segment_starts",
    "last_clip_start",
    "random_clip_start",
    "uniform_clip_starts",
]

# Guards ceil() against float noise: 30 s x 12 fps is 360 target frames, not 361.
_GRID_EPS = 1e-6


def clip_span(*, num_frames: int, fps: float) -> float:
    """Seconds a clip of ``num_frames`` frames at ``fps`` covers."""
    return num_frames / fps


def clip_times(start_sec: float, *, num_frames: int, fps: float) -> np.ndarray:
    """The ``num_frames`` sample times ``start_sec + k / fps`` (float64)."""
    return start_sec + np.arange(num_frames, dtype=np.float64) / fps


def frame_indices_at(timestamps: np.ndarray, times: np.ndarray, *, eps: float) -> np.ndarray:
    """Index of the frame on screen at each time: the last ``timestamps[i] <= t + eps``.

    ``timestamps`` must be sorted ascending. Times before the first frame give frame 0.
    """
    indices = np.searchsorted(timestamps, np.asarray(times, dtype=np.float64) + eps, side="right") - 1
    return np.clip(indices, 0, len(timestamps) - 1)


def num_target_frames(duration: float, *, fps: float) -> int:
    """How many times ``k / fps`` fall inside ``[0, duration)`` (at least one)."""
    return max(1, math.ceil(duration * fps - _GRID_EPS))


def segment_count(duration: float, *, num_frames: int, fps: float) -> int:
    """Number of consecutive ``num_frames`` segments that cover a video of ``duration`` seconds."""
    return max(1, math.ceil(num_target_frames(duration, fps=fps) / num_frames - _GRID_EPS))


def segment_starts(duration: float, *, num_frames: int, fps: float) -> List[float]:
    """Start times of the consecutive segments covering the video (the last one may run past the end)."""
    span = clip_span(num_frames=num_frames, fps=fps)
    return [s * span for s in range(segment_count(duration, num_frames=num_frames, fps=fps))]


def _last_start(duration: float, num_frames: int, fps: float) -> float:
    # The last start whose final sample time still lies before the end of the video.
    return max(0.0, duration - (num_frames - 1) / fps - 1.0 / fps)


def on_grid(time: float, *, fps: float) -> float:
    """The latest ``k / fps`` at or before ``time`` (for ``time >= 0``)."""
    return max(0, math.floor(time * fps + _GRID_EPS)) / fps


def last_clip_start(duration: float, *, num_frames: int, fps: float) -> float:
    """The latest start whose clip still ends inside the video (0 for short videos)."""
    return _last_start(duration, num_frames, fps)


def random_clip_start(
    duration: float, *, num_frames: int, fps: float, generator: Optional[torch.Generator] = None
) -> float:
    """A uniformly random start on the ``1 / fps`` grid such that the clip fits in the video (0
    for short videos)."""
    last = _last_start(duration, num_frames, fps)
    return on_grid(float(torch.rand((), generator=generator, dtype=torch.float64)) * last, fps=fps)


def uniform_clip_starts(duration: float, *, num_frames: int, fps: float, num_clips: int) -> List[float]:
    """Starts of ``num_clips`` evenly spread test clips, each moved back onto the ``1 / fps`` grid.

    One clip is centred; several run from the start (first clip) to the end (last clip) of the
    video. A video shorter than a clip gives start 0 for all of them.
    """
    if num_clips <= 0:
        raise ValueError(f"num_clips = {num_clips}: must be positive")
    last = _last_start(duration, num_frames, fps)
    if num_clips == 1:
        return [on_grid(last / 2.0, fps=fps)]
    return [on_grid(last * i / (num_clips - 1), fps=fps) for i in range(num_clips)]
