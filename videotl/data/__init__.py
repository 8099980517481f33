"""Video data: time-exact decoding, clip sampling, transforms, datasets and loaders.

Public API::

    read_clip(path, start_sec, num_frames=64, fps=12.0, backend="pyav", size=None) -> uint8 T x H x W x 3
    iter_segments(path, num_frames=64, fps=12.0, backend="pyav", size=None) -> yields (start_sec, uint8 T x H x W x 3)
    read_segments(...) -> the same, as a list
    read_frames_at(path, times, backend=..., size=...) -> uint8 N x H x W x 3
    probe(path) -> VideoInfo(duration, fps, num_frames, width, height)
    VideoDecodeError(path, reason)
    build_dataset(cfg, split, mode) -> VideoDataset      (mode: "train", "views", "segments")
    build_loader(cfg, split, mode, *, distributed=False) -> VideoLoader (batches of sample dicts)

See :mod:`videotl.data.datasets.base` for the sample dict.
"""

from .build import build_dataset, load_records
from .datasets import DatasetError, VideoDataset, VideoRecord
from .decoding import (
    BACKENDS,
    DecodeTimeout,
    VideoDecodeError,
    VideoInfo,
    iter_segments,
    probe,
    read_clip,
    read_frames_at,
    read_segments,
)
from .loader import SegmentBatches, ShardSampler, TrainSampler, VideoLoader
from .pipeline import build_loader

__all__ = [
    "BACKENDS",
    "DatasetError",
    "DecodeTimeout",
    "SegmentBatches",
    "ShardSampler",
    "TrainSampler",
    "VideoDataset",
    "VideoDecodeError",
    "VideoInfo",
    "VideoLoader",
    "VideoRecord",
    "build_dataset",
    "build_loader",
    "iter_segments",
    "load_records",
    "probe",
    "read_clip",
    "read_frames_at",
    "read_segments",
]
