"""Sampling strategies: given a video's duration (and frame size), what one sample reads.

A strategy decides everything about a sample that needs no frame: where its clip starts, the
short side it is decoded at, its crop and flip, its labels. It returns a :class:`ClipPlan`;
decoding the plan (:meth:`~videotl.data.datasets.base.VideoDataset.decode_plan`) is the same
call in a DataLoader worker on the CPU and in the main process on the GPU, so one plan gives one
sample wherever it is decoded. pytorchvideo's ``ClipSampler`` and torchcodec's samplers are the
model: an object that, given a video's duration, says what to read.

- :class:`RandomClip` (train): one clip at a random start, a jittered short side, a random crop
  and flip, labels from the actions on screen (``clip_labels``).
- :class:`MultiViewClips` (views): ``num_views`` evenly spread clips x ``num_crops`` crops.
- :class:`WholeVideoSegments` (segments): every consecutive ``num_frames`` segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .resize import output_size
from .sampling import clip_span, clip_times, last_clip_start, on_grid, segment_count, uniform_clip_starts
from .transforms import EvalTransform, TrainTransform

__all__ = ["ClipPlan", "RandomClip", "MultiViewClips", "WholeVideoSegments", "Strategy", "clip_classes"]


@dataclass(frozen=True)
class ClipPlan:
    """One sample without its frames.

    Attributes:
        video_index / view_index: the sample's video and its view (``t * C + s``; train: 0).
        start_sec: where the clip starts (on the ``1 / fps`` grid).
        short_side: the short side the clip is decoded at.
        classes: the sample's classes (train: the clip's, else the video's).
        crop: ``(top, left)`` of a training crop; None: the test transform's ``crop_index``.
        crop_index: the test crop (0, 1, 2 along the long side; one crop: the centre).
        flip: mirror the training crop.
        skipped: train: unreadable videos passed over to make this plan.
        valid: False when the video could not be probed (evaluation: zeros, named).
    """

    video_index: int
    view_index: int
    start_sec: float
    short_side: int
    classes: Tuple[int, ...]
    crop: Optional[Tuple[int, int]] = None
    crop_index: int = 1
    flip: bool = False
    skipped: int = 0
    valid: bool = True


def clip_classes(
    intervals: Sequence[Tuple[int, float, float]], start: float, *, num_frames: int, fps: float, min_coverage: float
) -> List[int]:
    """The classes whose actions ``(class, start_sec, end_sec)`` label a clip from ``start``: any
    overlap of its window (``min_coverage`` 0, PySlowFast's Charades rule), else on screen at
    ``min_coverage`` of its sampled times at least."""
    end = start + clip_span(num_frames=num_frames, fps=fps)
    overlapping = {(c, s, e) for c, s, e in intervals if s < end and e > start}
    if min_coverage <= 0.0:
        return sorted({c for c, _, _ in overlapping})
    times = clip_times(start, num_frames=num_frames, fps=fps)
    # Intervals of one class may abut or overlap: a frame counts once per class.
    shown: Dict[int, np.ndarray] = {}
    for c, s, e in overlapping:
        shown[c] = shown.get(c, np.zeros(len(times), dtype=bool)) | ((times >= s) & (times < e))
    return sorted(c for c, frames in shown.items() if frames.sum() >= min_coverage * num_frames - 1e-9)


@dataclass(frozen=True)
class RandomClip:
    """Training: one clip per video at a uniformly random start on the ``1 / fps`` grid that fits
    the video, with the transform's jittered short side, random crop and flip.

    ``clip_labels``: a clip's classes are those of the actions it shows (:func:`clip_classes` with
    ``min_coverage``); otherwise, or for a video without intervals, the video's labels.
    """

    num_frames: int
    fps: float
    transform: TrainTransform
    clip_labels: bool = False
    min_coverage: float = 0.0

    mode = "train"

    def __post_init__(self):
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"clip_label_min_coverage = {self.min_coverage}: must lie in [0, 1]")

    def plan(
        self,
        video_index: int,
        *,
        duration: float,
        frame_size: Tuple[int, int],
        labels: Sequence[int],
        intervals: Sequence[Tuple[int, float, float]] = (),
        generator: Optional[torch.Generator] = None,
    ) -> ClipPlan:
        """The plan of a clip of a video of ``duration`` seconds and ``frame_size`` ``(height,
        width)`` frames. Draws, in this order: the short side, the start, the crop, the flip."""
        short_side = self.transform.short_side(generator)
        draw = float(torch.rand((), dtype=torch.float64, generator=generator))
        start = on_grid(draw * last_clip_start(duration, num_frames=self.num_frames, fps=self.fps), fps=self.fps)
        top, left, flip = self.transform.draw(*output_size(*frame_size, short_side), generator=generator)
        classes = tuple(labels)
        if self.clip_labels and intervals:
            classes = tuple(
                clip_classes(intervals, start, num_frames=self.num_frames, fps=self.fps, min_coverage=self.min_coverage)
            )
        return ClipPlan(video_index, 0, start, short_side, classes, crop=(top, left), flip=flip)

    def apply(self, clip: torch.Tensor, plan: ClipPlan) -> torch.Tensor:
        """The normalised inputs of a plan's decoded clip."""
        top, left = plan.crop
        return self.transform.apply(clip, short_side=plan.short_side, top=top, left=left, flip=plan.flip)


@dataclass(frozen=True)
class MultiViewClips:
    """Testing: ``num_views`` clips evenly spread over each video (:func:`uniform_clip_starts`),
    each in ``num_crops`` crops; view ``t * num_crops + s`` is clip ``t``, crop ``s``."""

    num_frames: int
    fps: float
    transform: EvalTransform
    num_views: int = 1
    num_crops: int = 1

    mode = "views"

    @property
    def views_per_video(self) -> int:
        return self.num_views * self.num_crops

    def plan(self, video_index: int, view_index: int, *, duration: Optional[float], labels: Sequence[int]) -> ClipPlan:
        """The plan of one view; ``duration`` None (the video could not be probed) gives an
        invalid plan starting at 0."""
        temporal, spatial = divmod(view_index, self.num_crops)
        start = 0.0
        if duration is not None:
            starts = uniform_clip_starts(duration, num_frames=self.num_frames, fps=self.fps, num_clips=self.num_views)
            start = starts[temporal]
        return ClipPlan(
            video_index,
            view_index,
            start,
            self.transform.short_side,
            tuple(labels),
            crop_index=spatial,
            valid=duration is not None,
        )

    def apply(self, clip: torch.Tensor, plan: ClipPlan) -> torch.Tensor:
        return self.transform(clip, crop_index=plan.crop_index)


@dataclass(frozen=True)
class WholeVideoSegments:
    """Scoring whole videos: consecutive ``num_frames`` segments from the start, the last one
    running past the end (:func:`segment_count`), each centre-cropped."""

    num_frames: int
    fps: float
    transform: EvalTransform

    mode = "segments"

    def count(self, duration: Optional[float]) -> int:
        """Segments of a video of ``duration`` seconds; an unreadable video (None) keeps one, so
        that the evaluation names it."""
        return 1 if duration is None else segment_count(duration, num_frames=self.num_frames, fps=self.fps)

    def ranges(self, count: int) -> List[Tuple[float, float]]:
        """``(start_sec, end_sec)`` of the first ``count`` segments."""
        span = clip_span(num_frames=self.num_frames, fps=self.fps)
        return [(s * span, (s + 1) * span) for s in range(count)]


# What a VideoDataset samples with; its mode is the strategy's.
Strategy = Union[RandomClip, MultiViewClips, WholeVideoSegments]
