"""Reading clips from video files by time, with decord or PyAV.

Every reader here follows one contract: output frame ``k`` of a request for times ``t_k`` is the
source frame *on screen* at ``t_k``, i.e. the last frame whose presentation timestamp (PTS) is
``<= t_k``. Timestamps come from the container, never from ``index / average_fps``, so
variable-frame-rate files and 29.97 fps files land on the right frames. Times before the first
frame give the first frame; times past the last frame repeat the last frame.

Time zero is the first frame's presentation time, so annotation times (Charades' action
intervals) count from the first picture the viewer sees.

Decoding starts at the keyframe preceding the first frame asked for and stops at the last frame
asked for; only the frames returned are converted to RGB.

The decord backend never touches ``decord.bridge``: a global bridge change (as pytorchvideo does)
breaks ``.asnumpy()`` for every other caller in the process. Whatever bridge is active, the reader
accepts what ``get_batch`` returns.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional, Sequence, Tuple, Union

import av
import numpy as np
import torch

from .sampling import clip_times, frame_indices_at, segment_count

logger = logging.getLogger("videotl.data")

__all__ = [
    "BACKENDS",
    "VideoDecodeError",
    "VideoInfo",
    "probe",
    "read_clip",
    "read_frames_at",
    "read_segments",
    "output_size",
]

BACKENDS = ("decord", "pyav")
# A frame counts as on screen at time t when its PTS <= t + TIME_EPS: decord reports float32
# timestamps (about 2 microseconds of error at 30 s), and k / fps in float64 may fall a hair short
# of a PTS it equals exactly. 0.1 ms is far below any frame interval.
TIME_EPS = 1e-4
# decord may list a few frames past the last decodable one (it over-reports len()); a failure this close
# to the end is retried without them instead of failing the whole clip.
_DECORD_TAIL_RETRIES = 4

Size = Union[None, int, Tuple[int, int]]
PathLike = Union[str, os.PathLike]


class VideoDecodeError(RuntimeError):
    """A video file could not be opened or decoded.

    Attributes:
        path: the file.
        reason: what went wrong, in words (missing file, no video stream, decoder error, ...).
    """

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keeps the (path, reason) signature when the error crosses a DataLoader worker boundary.
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` measured about a video.

    Attributes:
        duration: seconds from the first frame's PTS to the end of the last frame.
        fps: mean frame rate, ``num_frames / duration``.
        num_frames: frames counted from the packets in the file (not from the header).
        width: coded width in pixels.
        height: coded height in pixels.
        header_frames: the frame count the container's header claims (0 when it has none).
            More than ``num_frames`` means the file is cut short (or the header is wrong).
    """

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    header_frames: int = 0


def _file_key(path: PathLike) -> Tuple[str, int, int]:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError(path, "file not found") from None
    except OSError as error:
        raise VideoDecodeError(path, f"cannot stat file: {error.strerror or error}") from None
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a regular file")
    if stat.st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def _open_pyav(path: PathLike) -> Tuple["av.container.InputContainer", "av.video.stream.VideoStream"]:
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"cannot open as a video container: {error}") from None
    except OSError as error:
        raise VideoDecodeError(path, f"cannot open: {error}") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream in the container")
    return container, container.streams.video[0]


def _time_zero(stream) -> int:
    return stream.start_time if stream.start_time is not None else 0


def probe(path: PathLike) -> VideoInfo:
    """Measure a video's duration, frame rate and frame count from its packets.

    The header's frame count is not trusted (decord and some muxers over-report it): every video
    packet is read (demuxed, not decoded), which for a 30 s 480p file takes a few tens of ms.
    Results are cached per process, keyed by path, size and modification time.

    Raises:
        VideoDecodeError: missing, empty, unreadable, truncated or frameless file.
    """
    return _probe_cached(*_file_key(path))


@functools.lru_cache(maxsize=65536)
def _probe_cached(path: str, size: int, mtime_ns: int) -> VideoInfo:
    container, stream = _open_pyav(path)
    try:
        zero = _time_zero(stream)
        last_pts, last_duration, count = None, 0, 0
        durations = []
        try:
            for packet in container.demux(stream):
                # The demuxer's final flush packet has no PTS and no data.
                if packet.pts is None or packet.size == 0:
                    continue
                count += 1
                if packet.duration:
                    durations.append(packet.duration)
                if last_pts is None or packet.pts > last_pts:
                    last_pts, last_duration = packet.pts, packet.duration or 0
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"corrupt or truncated after {count} packets: {error}") from None
        if count == 0 or last_pts is None:
            raise VideoDecodeError(path, "the video stream has no frames")
        if not last_duration:
            last_duration = int(np.median(durations)) if durations else 0
        time_base = stream.time_base
        duration = float((last_pts + last_duration - zero) * time_base)
        if duration <= 0:
            rate = stream.average_rate or stream.guessed_rate
            duration = count / float(rate) if rate else 0.0
        if duration <= 0:
            raise VideoDecodeError(path, "cannot determine the duration (no usable timestamps)")
        return VideoInfo(
            duration=duration,
            fps=count / duration,
            num_frames=count,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            header_frames=int(stream.frames or 0),
        )
    finally:
        container.close()


@functools.lru_cache(maxsize=65536)
def _coded_size_cached(path: str, size: int, mtime_ns: int) -> Tuple[int, int]:
    container, stream = _open_pyav(path)
    try:
        return stream.codec_context.height, stream.codec_context.width
    finally:
        container.close()


def output_size(height: int, width: int, size: Size) -> Tuple[int, int]:
    """The (height, width) a clip of ``height x width`` is decoded to for a ``size`` request.

    ``None`` keeps the source size, an int is the short side (aspect ratio kept, long side
    rounded), a pair is ``(height, width)``.
    """
    if size is None:
        return height, width
    if isinstance(size, int):
        if height <= width:
            return size, max(1, int(round(width * size / height)))
        return max(1, int(round(height * size / width))), size
    out_h, out_w = size
    return int(out_h), int(out_w)


# Files decord failed on and PyAV read, each logged once per process.
_DECORD_FALLBACKS: set = set()


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend = {backend!r}: must be one of {BACKENDS}")


def read_frames_at(
    path: PathLike,
    times: Sequence[float],
    *,
    backend: str = "decord",
    size: Size = None,
    num_threads: int = 0,
) -> torch.Tensor:
    """Decode the frames on screen at each of ``times`` (seconds from the first frame).

    Args:
        path: video file.
        times: non-negative times, in any order; repeats are decoded once.
        backend: ``"decord"`` or ``"pyav"``; both return the same frames.
        size: ``None`` (source size), short side (int) or ``(height, width)``. PyAV resizes in
            its RGB conversion, decord's frames go through torchvision's antialiased bilinear
            resize; either way each frame is resized once, and only frames returned.
        num_threads: decoder threads; 0 lets the decoder choose. Inside DataLoader workers 1 is
            best (the workers already use the cores).

    Returns:
        uint8 tensor ``len(times) x H x W x 3`` (RGB).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, corrupt or truncated.
    """
    frames, inverse = _read_unique(path, times, backend=backend, size=size, num_threads=num_threads)
    return _gather(frames, inverse)


def _gather(frames: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    if positions.size and positions[0] + positions.size - 1 == positions[-1] and np.all(np.diff(positions) == 1):
        # Consecutive distinct frames (the usual case): a view, no copy.
        return frames[int(positions[0]) : int(positions[-1]) + 1]
    return frames[torch.from_numpy(positions)]


def _read_unique(path: PathLike, times, *, backend: str, size: Size, num_threads: int) -> Tuple[torch.Tensor, np.ndarray]:
    """The distinct frames needed, in time order, and for each time the position of its frame."""
    _check_backend(backend)
    key = _file_key(path)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times must be a non-empty 1-D sequence, got shape {times.shape}")
    out_hw = None
    if size is not None:
        out_hw = output_size(*_coded_size_cached(*key), size)
    if backend == "pyav":
        return _pyav_read(key[0], times, out_hw, num_threads)
    try:
        return _decord_read(key[0], times, out_hw, num_threads)
    except VideoDecodeError as decord_error:
        # decord fails on files PyAV reads (some frame widths, e.g. 96 or 144 pixels: "Check
        # failed: from_size == to_size"); both follow the same timestamp contract, so fall back.
        try:
            result = _pyav_read(key[0], times, out_hw, num_threads)
        except VideoDecodeError as pyav_error:
            raise VideoDecodeError(key[0], f"{decord_error.reason}; PyAV: {pyav_error.reason}") from None
        if key[0] not in _DECORD_FALLBACKS:
            _DECORD_FALLBACKS.add(key[0])
            logger.warning("decord cannot read %s (%s); read with PyAV instead", key[0], decord_error.reason)
        return result


def read_clip(
    path: PathLike,
    start_sec: float,
    num_frames: int = 64,
    fps: float = 12.0,
    backend: str = "decord",
    size: Size = None,
    *,
    num_threads: int = 0,
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
    return read_frames_at(path, times, backend=backend, size=size, num_threads=num_threads)


def read_segments(
    path: PathLike,
    num_frames: int = 64,
    fps: float = 12.0,
    backend: str = "decord",
    size: Size = None,
    *,
    num_threads: int = 0,
) -> List[Tuple[float, torch.Tensor]]:
    """Split a whole video into consecutive ``num_frames`` clips at ``fps``, decoding it once.

    Segment ``s`` starts at ``s * num_frames / fps``; together the segments cover every target
    time ``k / fps < duration`` (duration from :func:`probe`); the last segment is padded by
    repeating the final frame. The number of segments is
    :func:`videotl.data.sampling.segment_count` of the probed duration.

    Returns:
        list of ``(start_sec, uint8 tensor num_frames x H x W x 3)``, in time order.
    """
    info = probe(path)
    count = segment_count(info.duration, num_frames=num_frames, fps=fps)
    times = np.arange(count * num_frames, dtype=np.float64) / fps
    frames, inverse = _read_unique(path, times, backend=backend, size=size, num_threads=num_threads)
    # Segments are views into one buffer, so each frame is converted and copied once. (decord's
    # batch holds distinct frames only: there a padded or slow-source segment is gathered.)
    return [
        (s * num_frames / fps, _gather(frames, inverse[s * num_frames : (s + 1) * num_frames])) for s in range(count)
    ]


# --------------------------------------------------------------------------------------- decord


def _decord_read(path: str, times: np.ndarray, out_hw: Optional[Tuple[int, int]], num_threads: int):
    import decord

    try:
        # decord's own scaler fails on some output sizes (a buffer-size check on widths that are
        # not padded as it expects), so frames come at source size and are resized below.
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
    except (decord.DECORDError, RuntimeError) as error:
        # decord reports a file it cannot open as a bare RuntimeError("Error reading ...").
        raise VideoDecodeError(path, f"decord cannot open the file: {_first_line(error)}") from None
    count = len(reader)
    if count == 0:
        raise VideoDecodeError(path, "the video stream has no frames")
    try:
        stamps = reader.get_frame_timestamp(np.arange(count))[:, 0].astype(np.float64)
    except decord.DECORDError as error:
        raise VideoDecodeError(path, f"decord cannot read frame timestamps: {_first_line(error)}") from None
    stamps -= stamps.min()
    if np.any(np.diff(stamps) < 0):
        # decord lists frames in decode order for some files; present them in PTS order.
        order = np.argsort(stamps, kind="stable")
    else:
        order = None
    sorted_stamps = stamps if order is None else stamps[order]

    usable = count
    for _ in range(_DECORD_TAIL_RETRIES + 1):
        positions = frame_indices_at(sorted_stamps[:usable], times, eps=TIME_EPS)
        indices = positions if order is None else order[positions]
        unique, inverse = np.unique(indices, return_inverse=True)
        try:
            batch = reader.get_batch(unique.tolist())
        except decord.DECORDError as error:
            last = int(positions.max())
            # Only a failure among the last listed frames is the over-reported-length case.
            if last >= count - _DECORD_TAIL_RETRIES and last > 0:
                usable = last
                continue
            raise VideoDecodeError(path, f"decord cannot decode frames: {_first_line(error)}") from None
        frames = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch.asnumpy())
        if out_hw is not None and tuple(frames.shape[1:3]) != tuple(out_hw):
            frames = _resize_frames(frames, out_hw)
        return frames, inverse.reshape(-1)
    raise VideoDecodeError(path, f"decord cannot decode the last frames (lists {count}, fewer decodable)")


def _resize_frames(frames: torch.Tensor, out_hw: Tuple[int, int]) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    # A channels-last view of T x H x W x 3 takes torchvision's fast uint8 path.
    resized = F.resize(frames.permute(0, 3, 1, 2), list(out_hw), antialias=True)
    return resized.permute(0, 2, 3, 1).contiguous()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------------- PyAV


def _pyav_read(path: str, times: np.ndarray, out_hw: Optional[Tuple[int, int]], num_threads: int):
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    container, stream = _open_pyav(path)
    try:
        if num_threads > 1:
            stream.thread_type = "AUTO"
        if num_threads > 0:
            stream.codec_context.thread_count = num_threads
        zero = _time_zero(stream)
        time_base = stream.time_base
        convert = _frame_converter(out_hw)
        try:
            picked = _pyav_pick(container, stream, zero, time_base, sorted_times, convert, seek=True)
            if picked is None:
                # The seek landed after the first wanted frame (index timestamps that are DTS):
                # decode from the start instead.
                picked = _pyav_pick(container, stream, zero, time_base, sorted_times, convert, seek=False)
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"decoding failed: {error}") from None
        if picked is None:
            raise VideoDecodeError(path, "the video stream has no decodable frames")
    finally:
        container.close()
    buffer, stored, sorted_positions = picked
    if stored < len(times) and np.array_equal(order, np.arange(len(times))):
        # Times in order (clips, segments): give every time its own slot by copying repeated
        # frames back to front inside the buffer (positions[j] <= j, non-decreasing), so callers
        # take views instead of gathering a new tensor.
        for j in range(len(times) - 1, -1, -1):
            source = int(sorted_positions[j])
            if source != j:
                buffer[j] = buffer[source]
        return torch.from_numpy(buffer), np.arange(len(times))
    inverse = np.empty(len(times), dtype=np.int64)
    inverse[order] = sorted_positions
    return torch.from_numpy(buffer[:stored]), inverse


def _frame_converter(out_hw: Optional[Tuple[int, int]]):
    if out_hw is None:
        return lambda frame: frame.to_ndarray(format="rgb24")
    height, width = out_hw
    return lambda frame: frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")


def _pyav_pick(container, stream, zero: int, time_base: Fraction, sorted_times: np.ndarray, convert, *, seek: bool):
    """Stream the decoder over the wanted span.

    Returns ``(buffer, stored, positions)``: the distinct frames converted, in time order, in
    ``buffer[:stored]`` (room for one frame per wanted time), and for each of ``sorted_times`` the
    position of its frame; or None when seeking skipped past the first wanted time (or nothing
    decoded).
    """
    first = float(sorted_times[0])
    sought = seek and first > TIME_EPS
    if sought:
        # backward=True lands on the keyframe at or before the target.
        container.seek(zero + int(math.floor(first / time_base)), stream=stream, backward=True, any_frame=False)
    else:
        container.seek(zero, stream=stream, backward=True, any_frame=False)
    # Float seconds per PTS tick: exact Fraction arithmetic per frame costs more than it buys.
    tick = float(time_base)
    targets = [t + TIME_EPS for t in sorted_times.tolist()]
    positions = np.empty(len(targets), dtype=np.int64)
    buffer: Optional[np.ndarray] = None
    stored = 0

    def store(frame) -> int:
        nonlocal buffer, stored
        array = convert(frame)
        if buffer is None:
            # At most one distinct frame per wanted time.
            buffer = np.empty((len(targets),) + array.shape, dtype=np.uint8)
        buffer[stored] = array
        stored += 1
        return stored - 1

    wanted = 0
    previous = None
    previous_slot = -1  # where `previous` sits in the buffer once a wanted time needs it
    for frame in container.decode(stream):
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            continue
        frame_time = (pts - zero) * tick
        if previous is None and sought and frame_time > first + TIME_EPS:
            return None
        current_slot = -1
        # Every wanted time before this frame's PTS is answered by the previous frame (or, for
        # times before the very first frame, by this one).
        while wanted < len(targets) and frame_time > targets[wanted]:
            if previous is None:
                if current_slot < 0:
                    current_slot = store(frame)
                positions[wanted] = current_slot
            else:
                if previous_slot < 0:
                    previous_slot = store(previous)
                positions[wanted] = previous_slot
            wanted += 1
        if wanted == len(targets):
            break
        previous, previous_slot = frame, current_slot
    else:
        if previous is None:
            return None
        # Past the last frame: repeat it.
        if wanted < len(targets):
            if previous_slot < 0:
                previous_slot = store(previous)
            positions[wanted:] = previous_slot
    return buffer, stored, positions
