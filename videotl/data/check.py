"""Scan videos for files the data pipeline cannot read (``tools/check_videos.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Union

import av
from tqdm import tqdm

from .decoding import DEFAULT_BACKEND, VideoDecodeError, decoder_notes, probe, read_frames_at

__all__ = ["VideoProblem", "check_video", "check_videos"]

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class VideoProblem:
    """A file that cannot be read (``severity == "error"``), or one that reads but has timestamps
    that some decoder gets wrong (``"note"``: the readers fall back or compensate, see
    :func:`videotl.data.decoding.decoder_notes`)."""

    path: str
    reason: str
    severity: str = "error"


def _decode_everything(path: PathLike, expected_frames: int) -> None:
    container = av.open(str(path))
    try:
        decoded = 0
        try:
            for _ in container.decode(container.streams.video[0]):
                decoded += 1
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"decoding failed after {decoded} frames: {error}") from None
    finally:
        container.close()
    if decoded < expected_frames:
        raise VideoDecodeError(path, f"only {decoded} of {expected_frames} frames decode (truncated or corrupt)")


def check_video(path: PathLike, *, backend: str = DEFAULT_BACKEND, full: bool = False) -> Optional[VideoProblem]:
    """None if the video reads, else what is wrong with it.

    Probes the packets (a file holding fewer frames than its header lists is reported as
    truncated), then decodes the first and last frame with ``backend``; ``full`` also decodes
    every frame (slower: about one sequential decode of the file).
    """
    try:
        info = probe(path)
        if info.header_frames > info.num_frames:
            return VideoProblem(
                str(path), f"truncated: the header lists {info.header_frames} frames, the file holds {info.num_frames}"
            )
        # The last frame starts at most one mean frame interval before the end.
        last = max(0.0, info.duration - 1.0 / info.fps)
        read_frames_at(path, [0.0, last], backend=backend, num_threads=1)
        if full:
            _decode_everything(path, info.num_frames)
    except VideoDecodeError as error:
        return VideoProblem(error.path, error.reason)
    return None


def video_notes(path: PathLike) -> List[VideoProblem]:
    """The timestamp oddities of a readable file, as ``"note"`` problems (empty when none)."""
    try:
        return [VideoProblem(str(path), note, "note") for note in decoder_notes(path)]
    except VideoDecodeError:
        return []


def check_videos(
    paths: Sequence[PathLike],
    *,
    backend: str = DEFAULT_BACKEND,
    full: bool = False,
    progress: bool = True,
    notes: bool = False,
) -> List[VideoProblem]:
    """Check every path (with a tqdm progress bar) and return the problems found, in input order;
    ``notes`` adds the timestamp notes of the readable files (severity ``"note"``)."""
    problems: List[VideoProblem] = []
    items: Iterable = paths
    if progress:
        items = tqdm(paths, desc="checking videos", unit="video", dynamic_ncols=True)
    broken = 0
    for path in items:
        problem = check_video(path, backend=backend, full=full)
        if problem is not None:
            problems.append(problem)
            broken += 1
            if progress:
                items.set_postfix(broken=broken)
        elif notes:
            problems.extend(video_notes(path))
    return problems
