"""How a dataset reads its videos: the decoding package's public readers (:func:`probe`,
:func:`read_clip`, :func:`iter_segments`) with one backend, thread count, orientation and time
limit, so that a :class:`~videotl.data.datasets.base.VideoDataset` holds one reader instead of
five decoding settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Tuple

import torch

from .decoding import DEFAULT_BACKEND, VideoInfo, call_with_timeout, iter_segments, probe, read_clip

__all__ = ["ClipReader"]


@dataclass(frozen=True)
class ClipReader:
    """Decoding settings and the reads that use them.

    Attributes:
        backend: the decoding backend (``"pyav"``, the default, ``"decord"``, ``"torchcodec"``).
        threads: decoder threads; 0 = 1 inside DataLoader workers (several share the cores),
            else the decoder's default.
        autorotate: apply videos' display matrices (frames as players show them); False keeps
            the stored orientation.
        timeout: seconds a probe or a clip (segments: one segment) may take before the video
            counts as unreadable; 0 = no limit.
        probe_cache: keep probe results in a manifest on disk (:mod:`videotl.data.manifest`),
            so the next construction (and every DDP rank) skips probing.
    """

    backend: str = DEFAULT_BACKEND
    threads: int = 0
    autorotate: bool = True
    timeout: float = 0.0
    probe_cache: bool = True

    def limited(self, path: Path, fn):
        """``fn()`` within the time limit (a :class:`VideoDecodeError` past it)."""
        return call_with_timeout(fn, seconds=self.timeout, path=path)

    def _options(self, size: int, device) -> dict:
        # What every read passes to the decoding package.
        return {
            "backend": self.backend,
            "size": size,
            # 0 becomes one thread inside a DataLoader worker (the decoding package's decoder_threads).
            "num_threads": self.threads,
            "device": device,
            "autorotate": self.autorotate,
        }

    def probe(self, path: Path) -> VideoInfo:
        return self.limited(path, functools.partial(probe, path))

    def frame_size(self, info: VideoInfo) -> Tuple[int, int]:
        """``(height, width)`` of the frames this reader reads from a probed video."""
        return info.frame_size(self.autorotate)

    def read(self, path: Path, start: float, num_frames: int, fps: float, *, size: int, device="cpu") -> torch.Tensor:
        """The uint8 ``T x H x W x 3`` clip on ``device`` (files the GPU decoder cannot read
        exactly come from PyAV, on the CPU, and are moved)."""
        options = self._options(size, device)
        clip = self.limited(path, lambda: read_clip(path, start, num_frames, fps, **options))
        return clip.to(device)

    def segments(
        self, path: Path, num_frames: int, fps: float, *, size: int, device="cpu", start_segment: int = 0
    ) -> Iterator[Tuple[float, torch.Tensor]]:
        """``(start_sec, clip)`` of each segment from ``start_segment`` on, decoded front to back;
        each segment is read within the time limit."""
        stream = iter_segments(path, num_frames, fps, start_segment=start_segment, **self._options(size, device))
        while True:
            item = self.limited(path, lambda: next(stream, None))
            if item is None:
                return
            yield item[0], item[1].to(device)
