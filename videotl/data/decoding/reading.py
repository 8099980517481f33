"""The public readers: frames at times, a clip, a whole video in segments; and what about a file
makes decoders disagree (:func:`decoder_notes`)."""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch

from .. import ffmpeg_log
from ..resize import Size, output_size
from ..sampling import clip_times, segment_count
from .backends import BACKENDS, DEFAULT_BACKEND, backend_named, decoder_threads
from .errors import PathLike
from .fallback import FALLBACK_BACKEND, exact_read_refusal, read_segments_of, read_sorted
from .probing import probe
from .video_info import file_key

__all__ = ["decoder_notes", "iter_segments", "read_clip", "read_frames_at", "read_segments"]

Device = Union[str, torch.device]


def read_frames_at(
    path: PathLike,
    times: Sequence[float],
    *,
    backend: str = DEFAULT_BACKEND,
    size: Size = None,
    num_threads: int = 0,
    device: Device = "cpu",
    autorotate: bool = True,
) -> torch.Tensor:
    """Decode the frames on screen at each of ``times`` (seconds from the first frame).

    Args:
        path: video file.
        times: times in any order (negative ones give the first frame); repeats are decoded once.
        backend: ``"pyav"`` (the default: the fastest exact reader), ``"decord"``,
            ``"torchcodec"`` or a name registered in :data:`~videotl.data.decoding.BACKENDS`;
            all return the same frames.
        size: ``None`` (source size), short side (int) or ``(height, width)``. PyAV scales the
            decoded YUV picture (swscale, bilinear) before its one conversion to RGB, decord's and
            torchcodec's frames go through torchvision's antialiased bilinear resize; either way
            each frame is resized once, and only frames returned.
        num_threads: decoder threads; 0 lets the decoder choose, except inside a DataLoader
            worker, where it means 1 (the workers already use the cores).
        device: torchcodec only: ``"cuda"`` decodes on the GPU (NVDEC) and returns CUDA tensors;
            it belongs in the main process, never in DataLoader workers. Without CUDA (or with a
            torchcodec built without it) the CPU decodes, logged once; so does every read from
            the first one the GPU decoder fails on (that read is retried on the CPU).
        autorotate: apply the file's display matrix (a phone video shot upright comes upright,
            as players show it); False keeps the stored orientation. ``size`` refers to the
            orientation returned.

    Returns:
        uint8 tensor ``len(times) x H x W x 3`` (RGB).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, corrupt or truncated.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times must be a non-empty 1-D sequence, got shape {times.shape}")
    times = np.maximum(times, 0.0)
    chosen, key, info, out_hw = _request(path, backend, size, autorotate)
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    chosen.prepare()
    with ffmpeg_log.reporting(key[0], backend):
        options = dict(num_threads=decoder_threads(num_threads), device=device, autorotate=autorotate)
        frames = read_sorted(backend, key[0], info, sorted_times, out_hw, **options)
    if np.array_equal(order, np.arange(len(order))):
        return frames
    result = torch.empty_like(frames)
    result[torch.from_numpy(order)] = frames
    return result


def _request(path: PathLike, backend: str, size: Size, autorotate: bool):
    """What every read starts from: the backend, the file's key, its probe and the output size."""
    chosen = backend_named(backend)
    key = file_key(path)
    info = probe(path)
    return chosen, key, info, None if size is None else output_size(*info.frame_size(autorotate), size)


def read_clip(
    path: PathLike,
    start_sec: float,
    num_frames: int = 64,
    fps: float = 12.0,
    backend: str = DEFAULT_BACKEND,
    size: Size = None,
    *,
    num_threads: int = 0,
    device: Device = "cpu",
    autorotate: bool = True,
) -> torch.Tensor:
    """Read ``num_frames`` frames sampled at ``fps`` from ``start_sec``.

    Frame ``k`` is the source frame on screen at ``start_sec + k / fps`` (the last frame whose PTS
    is ``<=`` that time). A source slower than ``fps`` repeats frames; times past the end repeat
    the last frame.

    Returns:
        uint8 tensor ``num_frames x H x W x 3``, at source resolution unless ``size`` is given
        (see :func:`read_frames_at`).

    Raises:
        VideoDecodeError: unreadable file.
    """
    if num_frames <= 0 or fps <= 0:
        raise ValueError(f"num_frames ({num_frames}) and fps ({fps}) must be positive")
    times = clip_times(max(0.0, float(start_sec)), num_frames=num_frames, fps=fps)
    return read_frames_at(
        path, times, backend=backend, size=size, num_threads=num_threads, device=device, autorotate=autorotate
    )


def iter_segments(
    path: PathLike,
    num_frames: int = 64,
    fps: float = 12.0,
    backend: str = DEFAULT_BACKEND,
    size: Size = None,
    *,
    num_threads: int = 0,
    device: Device = "cpu",
    start_segment: int = 0,
    autorotate: bool = True,
) -> Iterator[Tuple[float, torch.Tensor]]:
    """Split a whole video into consecutive ``num_frames`` clips at ``fps``, decoding it once,
    front to back, and yield each segment as soon as it is complete.

    Segment ``s`` starts at ``s * num_frames / fps``; together the segments cover every target
    time ``k / fps < duration`` (duration from :func:`probe`); the last segment is padded by
    repeating the final frame. The number of segments is
    :func:`videotl.data.sampling.segment_count` of the probed duration. Memory holds the segment
    being filled (and a few frames the decoder reorders), whatever the video's length.
    ``start_segment`` starts from that segment (decoding from the keyframe before it).
    ``autorotate`` as in :func:`read_frames_at`.

    Yields:
        ``(start_sec, uint8 tensor num_frames x H x W x 3)``, in time order.
    """
    chosen, key, info, out_hw = _request(path, backend, size, autorotate)
    count = segment_count(info.duration, num_frames=num_frames, fps=fps)
    if not 0 <= start_segment < count:
        raise ValueError(f"start_segment = {start_segment}: {key[0]} has {count} segments")
    times = np.arange(start_segment * num_frames, count * num_frames, dtype=np.float64) / fps
    span = num_frames / fps
    options = dict(num_threads=decoder_threads(num_threads), device=device, autorotate=autorotate)
    chunks = read_segments_of(backend, key[0], info, times, out_hw, num_frames, **options)
    segments = enumerate(chunks, start=start_segment)
    chosen.prepare()
    while True:
        # FFmpeg's lines are collected while a segment decodes, never across a yield: the caller
        # may read other files in between.
        with ffmpeg_log.reporting(key[0], backend):
            segment = next(segments, None)
        if segment is None:
            return
        yield segment[0] * span, segment[1]


def read_segments(
    path: PathLike,
    num_frames: int = 64,
    fps: float = 12.0,
    backend: str = DEFAULT_BACKEND,
    size: Size = None,
    *,
    num_threads: int = 0,
    device: Device = "cpu",
    autorotate: bool = True,
) -> List[Tuple[float, torch.Tensor]]:
    """Every segment of :func:`iter_segments` in a list (the whole video in memory at once:
    prefer :func:`iter_segments` for long videos)."""
    return list(
        iter_segments(
            path, num_frames, fps, backend, size, num_threads=num_threads, device=device, autorotate=autorotate
        )
    )


def decoder_notes(path: PathLike) -> List[str]:
    """What about a readable file makes decoders disagree or needs care (empty when nothing):
    missing timestamps, frames timed by the decoder, timestamp jumps, a display matrix, hidden
    frames, duplicate or huge timestamps, and whether each other backend's frame index (decord's,
    torchcodec's) agrees with the container's. ``tools/check_videos.py`` prints these."""
    info = probe(path)
    notes = []
    if not info.has_timestamps:
        notes.append(f"no presentation timestamps: frame k is taken to show from k / {info.rate:g} fps")
    if info.timing == "decoder":
        notes.append("frames are timed by the decoder's output (best-effort timestamps), as FFmpeg's tools time them")
    if info.discontinuities:
        notes.append(f"{info.discontinuities} timestamp jumps, joined up as FFmpeg's command line does")
    if info.rotation:
        notes.append(
            f"a display matrix turns it {info.rotation} degrees: frames are read as displayed "
            f"({info.width}x{info.height}) unless autorotate is off (DATA.AUTOROTATE)"
        )
    if info.hidden_frames:
        notes.append(f"an edit list hides {info.hidden_frames} frames")
    if info.stored_out_of_order and not info.decoder_reorders:
        notes.append(f"{info.stored_out_of_order} frames are stored out of presentation order")
    if info.duplicate_timestamps:
        notes.append(f"{info.duplicate_timestamps} frames share a timestamp with another frame")
    name = file_key(path)[0]
    for backend_name in BACKENDS.names():
        backend = BACKENDS.get(backend_name)
        if backend_name == FALLBACK_BACKEND or backend.unavailable_reason() is not None:
            continue
        reason = exact_read_refusal(backend, name, info)
        if reason:
            notes.append(f"{backend_name}: {reason}; its reads fall back to PyAV")
    return notes
