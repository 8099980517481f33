"""The one video dataset class behind Charades, AViD and CSV: annotation parsers produce
:class:`VideoRecord` lists, :class:`VideoDataset` turns them into samples for the three modes.

Sample dict (every mode, never ``None``):

- ``"inputs"``: float32 ``C x T x H x W``, normalised.
- ``"label"``: float multi-hot of ``num_classes`` (multi-label) or int64 class index.
- ``"video_index"``: int, position in ``video_ids``.
- ``"view_index"``: int. Views mode: ``t * C + s`` (PySlowFast's sample index is
  ``video * V * C + t * C + s``). Segments mode: the segment number. Train mode: 0.
- ``"valid"``: bool; False only in evaluation modes when the video could not be decoded (inputs
  are zeros then, and the evaluator reports the video by name from ``video_ids``).
- ``"start_sec"`` / ``"end_sec"``: the clip's time window in the video (``"segment_start_sec"``
  too in segments mode, for timelines).
- ``"skipped"``: int, train mode: broken videos skipped to produce this sample (sum it over
  batches to count skips across workers). ``dataset.broken`` lists every unreadable path found
  so far by any worker, each logged once (a decode past ``decode_timeout`` counts as unreadable,
  its reason says so).

Segments mode decodes each video once, front to back, and hands out segments as they complete
(:meth:`VideoDataset.iter_segment_samples`): memory does not grow with the video's length.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, get_args

import torch
from torch.utils.data import Dataset

from .. import ffmpeg_log
from ..clip_reader import ClipReader
from ..decoding import VideoDecodeError
from ..manifest import probe_videos
from ..sampling import clip_span
from ..strategies import ClipPlan, Strategy
from ._registry import BrokenVideoRegistry

__all__ = ["DatasetError", "VideoRecord", "VideoDataset", "MODES"]

logger = logging.getLogger("videotl.data")
# Its own logger, so that a caller that reports unreadable videos itself (prediction) can mute it.
unreadable_logger = logging.getLogger("videotl.data.unreadable")

MODES = ("train", "views", "segments")


class DatasetError(ValueError):
    """A dataset root, annotation file or class file is missing or malformed; the message says
    which path (and line) and what was expected."""


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video.

    Attributes:
        video_id: name used in results (Charades id, AViD file name, CSV path).
        path: the video file.
        labels: video-level class indices.
        intervals: ``(class, start_sec, end_sec)`` actions, for clip-level training labels
            (Charades); empty when the dataset has none.
    """

    video_id: str
    path: Path
    labels: Tuple[int, ...]
    intervals: Tuple[Tuple[int, float, float], ...] = field(default=())


class VideoDataset(Dataset):
    """Samples of annotated videos: what each sample reads comes from ``strategy``, the reading
    from ``reader``.

    Args:
        records: the videos.
        class_names: one name per class index.
        strategy: :class:`~videotl.data.strategies.RandomClip` (train mode: one random clip per
            video, broken videos skipped), :class:`~videotl.data.strategies.MultiViewClips`
            (views mode: ``V x C`` clips per video) or
            :class:`~videotl.data.strategies.WholeVideoSegments` (segments mode: every
            consecutive segment of each video); its transform makes the inputs.
        reader: the decoding backend, threads, orientation, time limit and probe cache.
        multi_label: multi-hot float labels, else an int64 class index (one label per video).
        seed: seeds the choice of a replacement for a broken training video.
        max_skip_attempts: broken videos tried in a row before a training sample gives up.
        show_progress: show the probing of a segments-mode dataset's videos.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        class_names: Sequence[str],
        *,
        strategy: Strategy,
        reader: ClipReader,
        multi_label: bool,
        seed: int = 0,
        max_skip_attempts: int = 20,
        show_progress: bool = True,
    ):
        if not isinstance(strategy, get_args(Strategy)):
            raise ValueError(
                f"strategy is a {type(strategy).__name__}: needs RandomClip, MultiViewClips or WholeVideoSegments"
            )
        if not records:
            raise DatasetError("the dataset has no videos")
        self.records = list(records)
        self.class_names = list(class_names)
        self.video_ids: List[str] = [r.video_id for r in self.records]
        self.strategy = strategy
        self.reader = reader
        self.multi_label = bool(multi_label)
        self.seed = int(seed)
        self.max_skip_attempts = int(max_skip_attempts)
        if not self.multi_label:
            for record in self.records:
                if len(record.labels) != 1:
                    raise DatasetError(
                        f"video {record.video_id} has {len(record.labels)} labels but the data is "
                        "single-label (DATA.MULTI_LABEL False): set DATA.MULTI_LABEL True for multi-label data"
                    )
        # Paths that failed, shared by all worker processes (each logged once overall).
        self._broken = BrokenVideoRegistry()
        # The files FFmpeg's lines were reported for, shared likewise (see __setstate__).
        self._ffmpeg_reports = ffmpeg_log.shared_reports()
        # Per process: the last decoded clip, so the C spatial crops of one view decode it once.
        self._clip_cache: Optional[Tuple[tuple, torch.Tensor]] = None
        # Per process: (video, next segment, its stream) for segments read in order.
        self._cursor: Optional[Tuple[int, int, Iterator]] = None
        self._segments: List[Tuple[int, int]] = []
        self._segment_counts: List[int] = []
        self._video_first_segment: List[int] = []
        if self.mode == "segments":
            self._index_segments(show_progress)
        elif reader.probe_cache:
            # Earlier runs' probe results, without probing anything now.
            probe_videos(self.video_paths, probe_missing=False, show_progress=False)

    def __setstate__(self, state: dict) -> None:
        # Unpickled in a spawned DataLoader worker: FFmpeg's lines about a file are reported once
        # per run, not once per worker.
        self.__dict__.update(state)
        ffmpeg_log.adopt_shared_reports(self._ffmpeg_reports)

    # ------------------------------------------------------------------ bookkeeping

    @property
    def mode(self) -> str:
        """``"train"``, ``"views"`` or ``"segments"``, from the strategy."""
        return self.strategy.mode

    @property
    def num_frames(self) -> int:
        return self.strategy.num_frames

    @property
    def fps(self) -> float:
        return self.strategy.fps

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_videos(self) -> int:
        return len(self.records)

    @property
    def video_paths(self) -> List[Path]:
        return [r.path for r in self.records]

    def _index_segments(self, show_progress: bool) -> None:
        infos = probe_videos(
            self.video_paths,
            use_cache=self.reader.probe_cache,
            timeout=self.reader.timeout,
            show_progress=show_progress,
            on_error=self._note_broken,
        )
        for video_index, info in enumerate(infos):
            # An unreadable video keeps one invalid sample, so the evaluation reports it by name.
            count = self.strategy.count(None if info is None else info.duration)
            self._video_first_segment.append(len(self._segments))
            self._segment_counts.append(count)
            self._segments.extend((video_index, s) for s in range(count))

    def num_views(self, video_index: int) -> int:
        """Samples the evaluator receives for a video: ``V * C`` in views mode, its number of
        segments (from :func:`probe`; 1 for an unreadable video) in segments mode, 1 in train mode."""
        if self.mode == "views":
            return self.strategy.views_per_video
        if self.mode == "segments":
            return self._segment_counts[video_index]
        return 1

    def sample_range(self, video_index: int) -> range:
        """Dataset indices holding the samples of one video (evaluation modes)."""
        if self.mode == "segments":
            first = self._video_first_segment[video_index]
            return range(first, first + self._segment_counts[video_index])
        per_video = self.num_views(video_index)
        return range(video_index * per_video, (video_index + 1) * per_video)

    def segment_ranges(self, video_index: int) -> List[Tuple[float, float]]:
        """(start_sec, end_sec) of each segment of a video (segments mode)."""
        return self.strategy.ranges(self.num_views(video_index))

    def video_labels(self) -> torch.Tensor:
        """Video-level labels: float ``[num_videos, num_classes]`` (multi-label) or int64 ``[num_videos]``."""
        if self.multi_label:
            labels = torch.zeros(len(self.records), self.num_classes)
            for i, record in enumerate(self.records):
                labels[i, list(record.labels)] = 1.0
            return labels
        return torch.tensor([r.labels[0] for r in self.records], dtype=torch.int64)

    def __len__(self) -> int:
        if self.mode == "train":
            return len(self.records)
        if self.mode == "views":
            return len(self.records) * self.strategy.views_per_video
        return len(self._segments)

    # ------------------------------------------------------------------ labels

    def _encode(self, classes: Sequence[int]) -> torch.Tensor:
        if self.multi_label:
            label = torch.zeros(self.num_classes)
            label[list(classes)] = 1.0
            return label
        return torch.tensor(classes[0], dtype=torch.int64)

    # ------------------------------------------------------------------ decoding

    @property
    def broken(self) -> Dict[str, str]:
        """path -> reason of every video found unreadable so far, by this process or any worker."""
        return self._broken.read()

    def unreadable_reason(self, path: Path) -> str:
        """Why ``path`` (a record's path, relative or not) could not be read; "" if it could or was
        not tried. The decoders name a file by its absolute path, so that is looked up too."""
        broken = self.broken
        for key in (str(path), os.path.abspath(path), os.path.realpath(path)):
            if key in broken:
                return broken[key]
        return ""

    def _note_broken(self, error: VideoDecodeError) -> None:
        if self._broken.add(error.path, error.reason):
            unreadable_logger.warning("unreadable video %s: %s", error.path, error.reason)

    def _read(self, path: Path, start: float, short_side: int, device="cpu") -> torch.Tensor:
        device = torch.device(device)
        key = (str(path), round(start, 6), short_side, str(device))
        if self._clip_cache is None or self._clip_cache[0] != key:
            clip = self.reader.read(path, start, self.num_frames, self.fps, size=short_side, device=device)
            self._clip_cache = (key, clip)
        return self._clip_cache[1]

    def _invalid(self, video_index: int, view_index: int, start: float, device="cpu") -> dict:
        return self._sample(
            self.invalid_inputs(device),
            self._encode(self.records[video_index].labels),
            video_index,
            view_index,
            start,
            valid=False,
        )

    def _sample(self, inputs, label, video_index, view_index, start, *, valid=True, skipped=0) -> dict:
        sample = {
            "inputs": inputs,
            "label": label,
            "video_index": video_index,
            "view_index": view_index,
            "valid": valid,
            "start_sec": float(start),
            "end_sec": float(start) + clip_span(num_frames=self.num_frames, fps=self.fps),
        }
        if self.mode == "train":
            sample["skipped"] = skipped
        if self.mode == "segments":
            sample["segment_start_sec"] = float(start)
        return sample

    # ------------------------------------------------------------------ samples: plan, decode, transform

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if self.mode == "segments":
            video_index, segment = self._segments[index]
            return self._next_segment_sample(video_index, segment)
        return self.decode_sample(self.clip_plan(index))

    def clip_plan(self, index: int, *, generator: Optional[torch.Generator] = None) -> ClipPlan:
        """Everything sample ``index`` needs except its frames (train and views mode), from the
        strategy. Probes the video (reads no frame); an unreadable one is skipped in train mode
        (replaced by a video that depends only on seed, index and attempt) and gives an invalid
        plan in views mode. ``generator``: the draws' random source (default: torch's)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if self.mode == "train":
            return self._train_plan(index, generator)
        if self.mode == "views":
            return self._view_plan(index)
        raise RuntimeError("segments mode decodes whole videos: use iter_segment_samples")

    def _replacement(self, index: int, attempt: int) -> int:
        # Deterministic in (seed, index, attempt): reruns skip to the same replacements.
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + index) * 101 + attempt)
        return int(torch.randint(len(self.records), (), generator=generator))

    def _train_plan(self, index: int, generator: Optional[torch.Generator]) -> ClipPlan:
        candidate = index
        for attempt in range(self.max_skip_attempts):
            record = self.records[candidate]
            try:
                info = self.reader.probe(record.path)
            except VideoDecodeError as error:
                self._note_broken(error)
                candidate = self._replacement(index, attempt)
                continue
            plan = self.strategy.plan(
                candidate,
                duration=info.duration,
                frame_size=self.reader.frame_size(info),
                labels=record.labels,
                intervals=record.intervals,
                generator=generator,
            )
            return replace(plan, skipped=attempt)
        raise self._exhausted(self.records[index].path)

    def _exhausted(self, path: Path) -> VideoDecodeError:
        return VideoDecodeError(
            path,
            f"this and {self.max_skip_attempts - 1} replacement videos could not be decoded "
            f"(unreadable so far: {len(self.broken)}); run tools/check_videos.py",
        )

    def _view_plan(self, index: int) -> ClipPlan:
        video_index, view_index = divmod(index, self.strategy.views_per_video)
        record = self.records[video_index]
        duration = None
        try:
            duration = self.reader.probe(record.path).duration
        except VideoDecodeError as error:
            self._note_broken(error)
        return self.strategy.plan(video_index, view_index, duration=duration, labels=record.labels)

    def replacement_plan(self, plan: ClipPlan, attempt: int) -> ClipPlan:
        """A training plan for another video, for a planned clip that failed to decode: the video
        and its draws follow from (seed, the failed video, attempt), never from torch's global
        random state, so whichever process decodes may call it at any time."""
        seed = ((self.seed * 1_000_003 + plan.video_index) * 101 + attempt) * 7 + 3
        generator = torch.Generator().manual_seed(seed)
        return self._train_plan(int(torch.randint(len(self.records), (), generator=generator)), generator)

    def decode_plan(self, plan: ClipPlan, *, device="cpu") -> torch.Tensor:
        """The normalised ``C x T x H x W`` inputs of a plan, decoded and transformed on ``device``
        (torchcodec decodes on a CUDA device; the transform runs where the frames are). Raises
        :class:`VideoDecodeError` (noted as broken) if the video fails."""
        try:
            clip = self._read(self.records[plan.video_index].path, plan.start_sec, plan.short_side, device=device)
        except VideoDecodeError as error:
            self._note_broken(error)
            raise
        return self.strategy.apply(clip, plan)

    def decode_sample(self, plan: ClipPlan, *, device="cpu") -> dict:
        """The sample of a plan from :meth:`clip_plan`, decoded on ``device``: the one path of
        train and views samples, run in a DataLoader worker (CPU) or in the main process (GPU).
        Train: a clip that fails to decode is replaced (:meth:`replacement_plan`) and counted in
        ``"skipped"``. Views: an unreadable video gives an invalid sample of zeros."""
        if self.mode == "train":
            return self._decode_training(plan, device)
        if plan.valid:
            try:
                return self._planned_sample(plan, self.decode_plan(plan, device=device))
            except VideoDecodeError:
                pass
        return self._planned_sample(plan, self.invalid_inputs(device), valid=False)

    def _decode_training(self, plan: ClipPlan, device) -> dict:
        failed = plan
        # Skips so far: videos the planner could not probe, then clips that failed to decode.
        skipped = plan.skipped
        for attempt in range(self.max_skip_attempts):
            try:
                inputs = self.decode_plan(plan, device=device)
            except VideoDecodeError:
                plan = self.replacement_plan(failed, attempt)
                skipped += 1 + plan.skipped
                continue
            return self._planned_sample(plan, inputs, skipped=skipped)
        raise self._exhausted(self.records[failed.video_index].path)

    def _planned_sample(self, plan: ClipPlan, inputs: torch.Tensor, *, valid: bool = True, skipped: int = 0) -> dict:
        classes = plan.classes
        if not self.multi_label and len(classes) != 1:
            classes = self.records[plan.video_index].labels
        return self._sample(
            inputs,
            self._encode(classes),
            plan.video_index,
            plan.view_index,
            plan.start_sec,
            valid=plan.valid and valid,
            skipped=skipped,
        )

    def invalid_inputs(self, device="cpu") -> torch.Tensor:
        """The zeros an unreadable evaluation sample carries."""
        size = self.strategy.transform.crop_size
        return torch.zeros(3, self.num_frames, size, size, device=device)

    def release_cache(self) -> None:
        """Drop the decoded frames kept for the latest clip and the open segment stream."""
        self._clip_cache = None
        self._cursor = None

    def iter_segment_samples(
        self,
        video_index: int,
        start_segment: int = 0,
        *,
        device="cpu",
        into: Optional[Callable[[], torch.Tensor]] = None,
    ) -> Iterator[dict]:
        """The samples of a video's segments from ``start_segment`` on, in order, decoding the
        video once, front to back, as they are asked for (segments mode). An unreadable video,
        or a segment past the time limit, gives invalid samples for the rest of the video.
        ``device``: where the frames are decoded (torchcodec on CUDA) and transformed.
        ``into``: called once per sample for the float32 ``3 x T x S x S`` tensor on ``device``
        that its inputs are written into (a slot of the caller's batch); None allocates each."""
        if self.mode != "segments":
            raise RuntimeError("segment samples need segments mode")
        record = self.records[video_index]
        count = self._segment_counts[video_index]
        label = self._encode(record.labels)
        segment = start_segment
        try:
            self._check_unchanged(video_index)
            stream = self.reader.segments(
                record.path,
                self.num_frames,
                self.fps,
                size=self.strategy.transform.short_side,
                device=device,
                start_segment=start_segment,
            )
            transform = self.strategy.transform
            while segment < count:
                item = next(stream, None)
                if item is None:
                    raise VideoDecodeError(record.path, "the file changed while the dataset was in use")
                start, clip = item
                inputs = transform(clip) if into is None else transform(clip, out=into())
                yield self._sample(inputs, label, video_index, segment, start)
                segment += 1
        except VideoDecodeError as error:
            self._note_broken(error)
            for rest in range(segment, count):
                sample = self._invalid(
                    video_index, rest, rest * clip_span(num_frames=self.num_frames, fps=self.fps), device=device
                )
                if into is not None:
                    sample["inputs"] = into().copy_(sample["inputs"])
                yield sample

    def _check_unchanged(self, video_index: int) -> None:
        record = self.records[video_index]
        if self.strategy.count(self.reader.probe(record.path).duration) != self._segment_counts[video_index]:
            # The probe at construction and now disagree only if the file changed since.
            raise VideoDecodeError(record.path, "the file changed while the dataset was in use")

    def segment_samples(self, video_index: int) -> List[dict]:
        """Every segment sample of one video in a list (:meth:`iter_segment_samples` streams)."""
        return list(self.iter_segment_samples(video_index))

    def _next_segment_sample(self, video_index: int, segment: int) -> dict:
        # Indices in order (a plain loop, a sequential sampler) continue one stream per video.
        if self._cursor is None or self._cursor[:2] != (video_index, segment):
            self._cursor = (video_index, segment, self.iter_segment_samples(video_index, segment))
        sample = next(self._cursor[2])
        self._cursor = (video_index, segment + 1, self._cursor[2])
        return sample
