"""Reading clips from video files by time, with decord, PyAV or torchcodec.

Every reader here follows one contract: output frame ``k`` of a request for times ``t_k`` is the
source frame *on screen* at ``t_k``, i.e. the frame with the largest presentation timestamp (PTS)
``<= t_k``. Timestamps come from the container, never from ``index / average_fps``, so
variable-frame-rate files and 29.97 fps files land on the right frames. Times before the first
frame give the first frame; times past the last frame repeat the last frame. A stream with no
timestamps at all (a raw ``.h264`` / ``.m4v`` elementary stream) shows frame ``k`` from
``k / rate``, the rate its header declares.

Time zero is the first frame's presentation time, so annotation times (Charades' action
intervals) count from the first picture the viewer sees. Frames an edit list hides are not part of
the video.

:func:`probe` demuxes every packet once (cached per process, and in a manifest on disk for whole
datasets, see :mod:`videotl.data.manifest`); the readers check their decoder against it. decord
and torchcodec keep their own frame index, which some real files break (decord reports garbage
timestamps for MPEG-4 Part 2 AVI files and edit lists, and crashes on huge ones; torchcodec's
index is off on the same AVI files); where their timestamps disagree with the container's, or
their decoder fails, the file is read with PyAV instead, logged once per process.

The PyAV reader selects frames by PTS value rather than by position in the decoder's output, so
frames that leave the decoder out of presentation order are placed where they belong, and it
tells the decoder to skip the non-reference frames no requested time shows (at 12 fps from a
30 fps source, most B-frames). Only returned frames are converted: scaled in YUV, then converted
once to RGB at the output size.

The decord backend never touches ``decord.bridge``: a global bridge change (as pytorchvideo does)
breaks ``.asnumpy()`` for every other caller in the process. Whatever bridge is active, the reader
accepts what ``get_batch`` returns.
"""

from __future__ import annotations

import bisect
import collections
import functools
import logging
import math
import os
import queue
import threading
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import av
import numpy as np
import torch

from . import ffmpeg_log
from .resize import Size, output_size, resize_frames
from .sampling import clip_times, segment_count

logger = logging.getLogger("videotl.data")

__all__ = [
    "BACKENDS",
    "DecodeTimeout",
    "VideoDecodeError",
    "VideoInfo",
    "call_with_timeout",
    "decoder_notes",
    "iter_segments",
    "output_size",
    "probe",
    "read_clip",
    "read_frames_at",
    "read_segments",
    "torchcodec_unavailable_reason",
]

BACKENDS = ("decord", "pyav", "torchcodec")
# A frame counts as on screen at time t when its PTS <= t + TIME_EPS: decord reports float32
# timestamps (about 2 microseconds of error at 30 s), and k / fps in float64 may fall a hair short
# of a PTS it equals exactly. 0.1 ms is far below any frame interval.
TIME_EPS = 1e-4
# decord may list a few frames past the last decodable one (it over-reports len()); a failure this close
# to the end is retried without them instead of failing the whole clip.
_DECORD_TAIL_RETRIES = 4
# decord reports float32 seconds: past this start time they no longer separate frames (and far
# past it decord aborts the process), so such files go to PyAV without asking decord.
_DECORD_MAX_START_SEC = 1e5
# How far (in packets) decode order may run ahead of presentation order. H.264 / HEVC reorder at
# most 16 frames; a packet's successor in presentation order is known this many packets later.
_REORDER_WINDOW = 33
# Ranks of the sorted frame times kept by the probe to check another decoder's frame index.
_MARKS = 17

PathLike = Union[str, os.PathLike]
T = TypeVar("T")


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


class DecodeTimeout(VideoDecodeError):
    """Decoding a file took longer than the time limit (:func:`call_with_timeout`)."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` measured about a video.

    Attributes:
        duration: seconds from the first frame's PTS to the end of the last frame.
        fps: mean frame rate, ``num_frames / duration``.
        num_frames: frames counted from the packets in the file (not from the header), without
            those an edit list hides.
        width: coded width in pixels.
        height: coded height in pixels.
        header_frames: the frame count the container's header claims (0 when it has none).
            More than ``num_frames`` means the file is cut short (or the header is wrong).
        start_pts: the first frame's PTS, in ``time_base`` units (time zero).
        time_base: seconds per PTS unit, as ``"num/den"``.
        has_timestamps: False for streams without PTS (frame ``k`` is shown from ``k / rate``).
        rate: the frame rate the stream's header declares (used without timestamps).
        frame_time_marks: sorted frame times (seconds from time zero) at evenly spaced ranks,
            first and last included: how the readers check another decoder's frame index.
        hidden_frames: packets an edit list marks as not shown.
        duplicate_timestamps: frames sharing a PTS with another frame.
        stored_out_of_order: packets stored after a packet with a later PTS (normal with
            B-frames, whose decoder puts them back in order).
        decoder_reorders: the codec may reorder frames (B-frames); when it does not, frames
            stored out of order leave the decoder out of presentation order.
        codec / container: FFmpeg's names of the codec and the container format.
    """

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    header_frames: int = 0
    start_pts: int = 0
    time_base: str = "1/1"
    has_timestamps: bool = True
    rate: float = 0.0
    frame_time_marks: Tuple[float, ...] = field(default=())
    hidden_frames: int = 0
    duplicate_timestamps: int = 0
    stored_out_of_order: int = 0
    decoder_reorders: bool = True
    codec: str = ""
    container: str = ""

    @property
    def start_time(self) -> float:
        """The first frame's PTS in seconds."""
        return float(self.start_pts * Fraction(self.time_base))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VideoInfo:
        data = dict(data)
        data["frame_time_marks"] = tuple(data.get("frame_time_marks", ()))
        return cls(**data)


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


def file_key(path: PathLike) -> Tuple[str, int, int]:
    """``(absolute path, size, mtime_ns)``: what probe results are keyed by.

    Raises:
        VideoDecodeError: missing, empty or not a regular file.
    """
    return _file_key(path)


def _open_pyav(path: PathLike) -> Tuple[av.container.InputContainer, av.video.stream.VideoStream]:
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


# ------------------------------------------------------------------------------------ probing


class _ProbeCache:
    """Per-process probe results keyed by (path, size, mtime_ns), least recently used dropped."""

    def __init__(self, capacity: int = 65536):
        self.capacity = capacity
        self._items: collections.OrderedDict[Tuple[str, int, int], VideoInfo] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> Optional[VideoInfo]:
        with self._lock:
            info = self._items.get(key)
            if info is not None:
                self._items.move_to_end(key)
            return info

    def put(self, key, info: VideoInfo) -> None:
        with self._lock:
            self._items[key] = info
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


_PROBES = _ProbeCache()


def remember_probe(key: Tuple[str, int, int], info: VideoInfo) -> None:
    """Seed the per-process probe cache (from a manifest written by an earlier run)."""
    _PROBES.put(key, info)


def probe(path: PathLike) -> VideoInfo:
    """Measure a video's duration, frame rate, frame count and timestamps from its packets.

    The header's frame count is not trusted (decord and some muxers over-report it): every video
    packet is read (demuxed, not decoded), which for a 30 s 480p file takes a few ms. Results are
    cached per process, keyed by path, size and modification time.

    Raises:
        VideoDecodeError: missing, empty, unreadable, truncated or frameless file.
    """
    key = _file_key(path)
    info = _PROBES.get(key)
    if info is None:
        with ffmpeg_log.reporting(key[0], "pyav"):
            info = _probe_file(key[0])
        _PROBES.put(key, info)
    return info


def _probe_file(path: str) -> VideoInfo:
    container, stream = _open_pyav(path)
    try:
        pts_list: List[int] = []
        durations: List[int] = []
        count = missing = hidden = out_of_order = 0
        latest = None
        try:
            for packet in container.demux(stream):
                # The demuxer's final flush packet has no PTS and no data.
                if packet.size == 0:
                    continue
                if packet.is_discard:
                    hidden += 1
                    continue
                count += 1
                if packet.pts is None:
                    missing += 1
                    continue
                pts_list.append(packet.pts)
                if latest is not None and packet.pts < latest:
                    out_of_order += 1
                latest = packet.pts if latest is None else max(latest, packet.pts)
                if packet.duration:
                    durations.append(packet.duration)
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"corrupt or truncated after {count} packets: {error}") from None
        if count == 0:
            raise VideoDecodeError(path, "the video stream has no frames")
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate
        rate = float(rate) if rate else 0.0
        common = dict(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            header_frames=int(stream.frames or 0),
            rate=rate,
            hidden_frames=hidden,
            stored_out_of_order=out_of_order,
            decoder_reorders=bool(stream.codec_context.has_b_frames),
            codec=stream.codec_context.name or "",
            container=container.format.name or "",
        )
        if missing:
            # No (or partial) timestamps: frame k is shown from k / rate.
            if rate <= 0:
                raise VideoDecodeError(path, "the stream has no timestamps and no frame rate")
            duration = count / rate
            marks = _marks(np.arange(count, dtype=np.float64) / rate)
            return VideoInfo(
                duration=duration,
                fps=count / duration,
                num_frames=count,
                time_base=str(Fraction(1, 1)),
                has_timestamps=False,
                frame_time_marks=marks,
                **common,
            )
        pts = np.sort(np.asarray(pts_list, dtype=np.int64))
        zero, last = int(pts[0]), int(pts[-1])
        last_duration = 0
        if durations:
            last_duration = int(np.median(durations))
        time_base = stream.time_base
        times = (pts - zero).astype(np.float64) * float(time_base)
        duration = float((last - zero + last_duration) * time_base)
        if duration <= 0:
            duration = count / rate if rate else 0.0
        if duration <= 0:
            raise VideoDecodeError(path, "cannot determine the duration (no usable timestamps)")
        return VideoInfo(
            duration=duration,
            fps=count / duration,
            num_frames=count,
            start_pts=zero,
            time_base=f"{time_base.numerator}/{time_base.denominator}",
            has_timestamps=True,
            frame_time_marks=_marks(times),
            duplicate_timestamps=int(count - len(np.unique(pts))),
            **common,
        )
    finally:
        container.close()


def _marks(sorted_times: np.ndarray) -> Tuple[float, ...]:
    ranks = _mark_ranks(len(sorted_times))
    return tuple(round(float(sorted_times[r]), 6) for r in ranks)


def _mark_ranks(count: int) -> List[int]:
    return sorted({int(round(i * (count - 1) / (_MARKS - 1))) for i in range(_MARKS)})


def _index_disagreement(info: VideoInfo, sorted_times: np.ndarray, *, tolerance: float) -> Optional[str]:
    """Why a decoder's sorted frame times (seconds from its first frame) disagree with the probe's,
    or None when they agree at every mark."""
    count = len(sorted_times)
    if count != info.num_frames:
        return f"it lists {count} frames, the container holds {info.num_frames}"
    if not np.all(np.isfinite(sorted_times)):
        return "non-finite frame timestamps"
    for rank, expected in zip(_mark_ranks(count), info.frame_time_marks):
        if abs(float(sorted_times[rank]) - expected) > tolerance:
            return f"frame {rank} at {float(sorted_times[rank]):.6g} s, the container says {expected:.6g} s"
    return None


def decoder_notes(path: PathLike) -> List[str]:
    """What about a readable file makes decoders disagree or needs care (empty when nothing):
    missing timestamps, hidden frames, duplicate or huge timestamps, and whether decord's and
    torchcodec's frame indexes agree with the container's. ``tools/check_videos.py`` prints these."""
    info = probe(path)
    notes = []
    if not info.has_timestamps:
        notes.append(f"no presentation timestamps: frame k is taken to show from k / {info.rate:g} fps")
    if info.hidden_frames:
        notes.append(f"an edit list hides {info.hidden_frames} frames")
    if info.stored_out_of_order and not info.decoder_reorders:
        notes.append(f"{info.stored_out_of_order} frames are stored out of presentation order")
    if info.duplicate_timestamps:
        notes.append(f"{info.duplicate_timestamps} frames share a timestamp with another frame")
    name = _file_key(path)[0]
    reason = _session_refusal(lambda: _DecordSession(name, info, 1))
    if reason:
        notes.append(f"decord: {reason}; its reads fall back to PyAV")
    if torchcodec_unavailable_reason() is None:
        reason = _session_refusal(lambda: _TorchcodecSession(name, info, 1, "cpu"))
        if reason:
            notes.append(f"torchcodec: {reason}; its reads fall back to PyAV")
    return notes


def _session_refusal(open_session) -> Optional[str]:
    try:
        open_session()
    except (_Untrusted, VideoDecodeError) as error:
        return error.reason
    return None


# Files a backend could not read exactly and PyAV read instead, each logged once per process.
_FALLBACKS: set = set()


def _note_fallback(backend: str, path: str, reason: str) -> None:
    if (backend, path) not in _FALLBACKS:
        _FALLBACKS.add((backend, path))
        logger.warning("%s cannot read %s exactly (%s); read with PyAV instead", backend, path, reason)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend = {backend!r}: must be one of {BACKENDS}")


class _Untrusted(Exception):
    """A backend's frame index or decoder cannot be trusted on a file: read it with PyAV."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------------ public API


def read_frames_at(
    path: PathLike,
    times: Sequence[float],
    *,
    backend: str = "decord",
    size: Size = None,
    num_threads: int = 0,
    device: Union[str, torch.device] = "cpu",
) -> torch.Tensor:
    """Decode the frames on screen at each of ``times`` (seconds from the first frame).

    Args:
        path: video file.
        times: times in any order (negative ones give the first frame); repeats are decoded once.
        backend: ``"decord"``, ``"pyav"`` or ``"torchcodec"``; all return the same frames.
        size: ``None`` (source size), short side (int) or ``(height, width)``. PyAV scales the
            decoded YUV picture (swscale, bilinear) before its one conversion to RGB, decord's and
            torchcodec's frames go through torchvision's antialiased bilinear resize; either way
            each frame is resized once, and only frames returned.
        num_threads: decoder threads; 0 lets the decoder choose. Inside DataLoader workers 1 is
            best (the workers already use the cores).
        device: torchcodec only: ``"cuda"`` decodes on the GPU (NVDEC) and returns CUDA tensors;
            it belongs in the main process, never in DataLoader workers. Without CUDA (or with a
            torchcodec built without it) the CPU decodes, logged once; so does every read from
            the first one the GPU decoder fails on (that read is retried on the CPU).

    Returns:
        uint8 tensor ``len(times) x H x W x 3`` (RGB).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, corrupt or truncated.
    """
    _check_backend(backend)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times must be a non-empty 1-D sequence, got shape {times.shape}")
    times = np.maximum(times, 0.0)
    key = _file_key(path)
    info = probe(path)
    out_hw = None if size is None else output_size(info.height, info.width, size)
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    with ffmpeg_log.reporting(key[0], backend):
        frames = _read_sorted(key[0], info, sorted_times, out_hw, backend, num_threads, device)
    if np.array_equal(order, np.arange(len(order))):
        return frames
    result = torch.empty_like(frames)
    result[torch.from_numpy(order)] = frames
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
    device: Union[str, torch.device] = "cpu",
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
    return read_frames_at(path, times, backend=backend, size=size, num_threads=num_threads, device=device)


def iter_segments(
    path: PathLike,
    num_frames: int = 64,
    fps: float = 12.0,
    backend: str = "decord",
    size: Size = None,
    *,
    num_threads: int = 0,
    device: Union[str, torch.device] = "cpu",
    start_segment: int = 0,
) -> Iterator[Tuple[float, torch.Tensor]]:
    """Split a whole video into consecutive ``num_frames`` clips at ``fps``, decoding it once,
    front to back, and yield each segment as soon as it is complete.

    Segment ``s`` starts at ``s * num_frames / fps``; together the segments cover every target
    time ``k / fps < duration`` (duration from :func:`probe`); the last segment is padded by
    repeating the final frame. The number of segments is
    :func:`videotl.data.sampling.segment_count` of the probed duration. Memory holds the segment
    being filled (and a few frames the decoder reorders), whatever the video's length.
    ``start_segment`` starts from that segment (decoding from the keyframe before it).

    Yields:
        ``(start_sec, uint8 tensor num_frames x H x W x 3)``, in time order.
    """
    _check_backend(backend)
    key = _file_key(path)
    info = probe(path)
    out_hw = None if size is None else output_size(info.height, info.width, size)
    count = segment_count(info.duration, num_frames=num_frames, fps=fps)
    if not 0 <= start_segment < count:
        raise ValueError(f"start_segment = {start_segment}: {key[0]} has {count} segments")
    times = np.arange(start_segment * num_frames, count * num_frames, dtype=np.float64) / fps
    span = num_frames / fps
    if backend == "pyav":
        chunks = _pyav_chunks(key[0], info, times, out_hw, num_threads, num_frames)
    else:
        chunks = _chunked_reads(key[0], info, times, out_hw, backend, num_threads, device, num_frames)
    segments = enumerate(chunks, start=start_segment)
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
    backend: str = "decord",
    size: Size = None,
    *,
    num_threads: int = 0,
    device: Union[str, torch.device] = "cpu",
) -> List[Tuple[float, torch.Tensor]]:
    """Every segment of :func:`iter_segments` in a list (the whole video in memory at once:
    prefer :func:`iter_segments` for long videos)."""
    return list(iter_segments(path, num_frames, fps, backend, size, num_threads=num_threads, device=device))


# ------------------------------------------------------------------------------- backend choice


def _read_sorted(path, info, sorted_times, out_hw, backend, num_threads, device) -> torch.Tensor:
    if backend == "pyav":
        return _pyav_read(path, info, sorted_times, out_hw, num_threads)
    reader = _decord_read if backend == "decord" else functools.partial(_torchcodec_read, device=device)
    try:
        return reader(path, info, sorted_times, out_hw, num_threads)
    except _Untrusted as untrusted:
        _note_fallback(backend, path, untrusted.reason)
        return _pyav_read(path, info, sorted_times, out_hw, num_threads)
    except VideoDecodeError as error:
        # decord fails on files PyAV reads (some frame widths, e.g. 96 or 144 pixels: "Check
        # failed: from_size == to_size"); every backend follows the same contract, so fall back.
        try:
            result = _pyav_read(path, info, sorted_times, out_hw, num_threads)
        except VideoDecodeError as pyav_error:
            raise VideoDecodeError(path, f"{error.reason}; PyAV: {pyav_error.reason}") from None
        _note_fallback(backend, path, error.reason)
        return result


def _chunked_reads(path, info, times, out_hw, backend, num_threads, device, chunk) -> Iterator[torch.Tensor]:
    """decord / torchcodec segments: one open reader asked for one segment's frames at a time,
    which both serve by decoding forward from where the previous request stopped."""
    try:
        if backend == "decord":
            session = _DecordSession(path, info, num_threads)
        else:
            session = _TorchcodecSession(path, info, num_threads, device)
    except _Untrusted as untrusted:
        _note_fallback(backend, path, untrusted.reason)
        yield from _pyav_chunks(path, info, times, out_hw, num_threads, chunk)
        return
    except VideoDecodeError as error:
        _note_fallback(backend, path, error.reason)
        yield from _pyav_chunks(path, info, times, out_hw, num_threads, chunk)
        return
    done = 0
    try:
        for start in range(0, len(times), chunk):
            yield session.read(times[start : start + chunk], out_hw)
            done = start + chunk
    except (_Untrusted, VideoDecodeError) as error:
        # Segments already handed out were exact; the rest come from PyAV.
        _note_fallback(backend, path, getattr(error, "reason", str(error)))
        yield from _pyav_chunks(path, info, times[done:], out_hw, num_threads, chunk)


# --------------------------------------------------------------------------------------- decord


def _decord_untrusted(path: str, info: VideoInfo) -> Optional[str]:
    """Why decord must not read this file (checked before asking decord), or None."""
    if not info.has_timestamps:
        return "the stream has no timestamps"
    if abs(info.start_time) > _DECORD_MAX_START_SEC:
        return f"its first timestamp ({info.start_time:.3g} s) is beyond decord's float32 seconds"
    if info.hidden_frames:
        return "decord ignores the edit list that hides frames"
    if info.stored_out_of_order and not info.decoder_reorders:
        return "frames stored out of presentation order, which decord's index does not follow"
    return None


class _DecordSession:
    """An open decord reader whose frame index agrees with the container's."""

    def __init__(self, path: str, info: VideoInfo, num_threads: int):
        import decord

        reason = _decord_untrusted(path, info)
        if reason:
            raise _Untrusted(reason)
        self.path = path
        self._decord = decord
        try:
            # decord's own scaler fails on some output sizes (a buffer-size check on widths that
            # are not padded as it expects), so frames come at source size and are resized below.
            self.reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
        except (decord.DECORDError, RuntimeError) as error:
            # decord reports a file it cannot open as a bare RuntimeError("Error reading ...").
            raise VideoDecodeError(path, f"decord cannot open the file: {_first_line(error)}") from None
        count = len(self.reader)
        if count == 0:
            raise VideoDecodeError(path, "the video stream has no frames")
        try:
            stamps = self.reader.get_frame_timestamp(np.arange(count))[:, 0].astype(np.float64)
        except decord.DECORDError as error:
            raise VideoDecodeError(path, f"decord cannot read frame timestamps: {_first_line(error)}") from None
        # decord lists frames in decode order for some files; present them in PTS order.
        self.order = np.argsort(stamps, kind="stable")
        sorted_stamps = stamps[self.order] - stamps.min()
        # decord may list a few phantom frames past the end (its issue #373).
        usable = min(count, info.num_frames) if 0 <= count - info.num_frames <= _DECORD_TAIL_RETRIES else count
        # float32 seconds: about 1e-7 relative error, plus the usual timestamp slack.
        tolerance = 1e-3 + 2e-7 * abs(float(sorted_stamps[-1]) + info.start_time)
        disagreement = _index_disagreement(info, sorted_stamps[:usable], tolerance=tolerance)
        if disagreement:
            raise _Untrusted(f"its frame index disagrees with the container's: {disagreement}")
        self.count = count
        self.sorted_stamps = sorted_stamps
        self.usable = usable

    def read(self, sorted_times: np.ndarray, out_hw) -> torch.Tensor:
        decord = self._decord
        for _ in range(_DECORD_TAIL_RETRIES + 1):
            positions = _on_screen(self.sorted_stamps[: self.usable], sorted_times)
            indices = self.order[positions]
            unique, inverse = np.unique(indices, return_inverse=True)
            try:
                batch = self.reader.get_batch(unique.tolist())
            except decord.DECORDError as error:
                last = int(positions.max())
                # Only a failure among the last listed frames is the over-reported-length case.
                if last >= self.count - _DECORD_TAIL_RETRIES - 1 and last > 0 and last < self.usable:
                    self.usable = last
                    continue
                raise VideoDecodeError(self.path, f"decord cannot decode frames: {_first_line(error)}") from None
            frames = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch.asnumpy())
            if out_hw is not None:
                frames = resize_frames(frames, out_hw)
            return _expand(frames, inverse.reshape(-1))
        raise VideoDecodeError(self.path, f"decord cannot decode the last frames (lists {self.count}, fewer decodable)")


def _decord_read(path: str, info: VideoInfo, sorted_times: np.ndarray, out_hw, num_threads: int) -> torch.Tensor:
    return _DecordSession(path, info, num_threads).read(sorted_times, out_hw)


def _on_screen(sorted_stamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time: the last ``sorted_stamps[i] <= t + TIME_EPS``."""
    indices = np.searchsorted(sorted_stamps, times + TIME_EPS, side="right") - 1
    return np.clip(indices, 0, len(sorted_stamps) - 1)


def _expand(frames: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    if positions.size == frames.shape[0] and np.array_equal(positions, np.arange(positions.size)):
        return frames
    return frames[torch.from_numpy(positions)]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------- torchcodec

_TORCHCODEC_HELP = (
    "install FFmpeg's shared libraries (Debian/Ubuntu: apt-get install ffmpeg, or only "
    "libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8; "
    "conda: conda install ffmpeg); the decord and PyAV backends work without them"
)


@functools.lru_cache(maxsize=1)
def torchcodec_unavailable_reason() -> Optional[str]:
    """None when the torchcodec backend can decode here, else one line saying what is missing."""
    try:
        import torchcodec  # noqa: F401
    except ImportError as error:
        return f"torchcodec is not installed ({error}); pip install torchcodec"
    try:
        from torchcodec._internally_replaced_utils import load_core_libraries
    except ImportError:
        return None
    try:
        load_core_libraries()
    except (RuntimeError, OSError):
        return f"torchcodec cannot load FFmpeg's shared libraries (libavcodec etc.): {_TORCHCODEC_HELP}"
    return None


def _torchcodec_decoder(path: str, num_threads: int, device):
    reason = torchcodec_unavailable_reason()
    if reason:
        raise VideoDecodeError(path, reason)
    from torchcodec.decoders import VideoDecoder

    device = _torchcodec_device(device)
    try:
        return VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=max(0, int(num_threads)), device=device)
    except (RuntimeError, ValueError) as error:
        if str(device) != "cpu":
            _warn_once(f"torchcodec cannot decode on {device} ({_first_line(error)}): decoding on the CPU")
            _TORCHCODEC_CPU_ONLY.add(str(device))
            return VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=max(0, int(num_threads)), device="cpu")
        raise VideoDecodeError(path, f"torchcodec cannot open the file: {_first_line(error)}") from None


_TORCHCODEC_CPU_ONLY: set = set()
_WARNED: set = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning("%s", message)


def _torchcodec_device(device) -> str:
    device = str(device or "cpu")
    if device == "cpu" or device in _TORCHCODEC_CPU_ONLY:
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        _warn_once(f"torchcodec device {device!r} asked for but CUDA is not available: decoding on the CPU")
        return "cpu"
    return device


class _TorchcodecSession:
    """An open torchcodec decoder (exact seek mode) whose frame index agrees with the container's."""

    def __init__(self, path: str, info: VideoInfo, num_threads: int, device):
        if not info.has_timestamps:
            raise _Untrusted("the stream has no timestamps")
        self.path = path
        self.info = info
        self.num_threads = num_threads
        self.decoder = _torchcodec_decoder(path, num_threads, device)
        # "cpu" too when the GPU decoder could not be built and this one decodes on the CPU.
        self.device = _torchcodec_device(device)
        meta = self.decoder.metadata
        begin = meta.begin_stream_seconds_from_content
        end = meta.end_stream_seconds_from_content
        frames = meta.num_frames_from_content
        if frames is not None and frames != info.num_frames:
            raise _Untrusted(f"it counts {frames} frames, the container holds {info.num_frames}")
        if begin is None or end is None or abs(begin - info.start_time) > 1e-3:
            raise _Untrusted(f"its first frame is at {begin} s, the container's at {info.start_time:.6g} s")
        self.begin = float(begin)
        self.last_frame = info.frame_time_marks[-1]
        # torchcodec refuses times at or past its end of stream.
        self.limit = float(end) - 1e-6

    def read(self, sorted_times: np.ndarray, out_hw) -> torch.Tensor:
        wanted = np.minimum(self.begin + sorted_times + TIME_EPS, self.limit)
        try:
            batch = self.decoder.get_frames_played_at(wanted.tolist())
        except (RuntimeError, IndexError, ValueError) as error:
            if self.device == "cpu":
                raise VideoDecodeError(self.path, f"torchcodec cannot decode frames: {_first_line(error)}") from None
            batch = self._read_on_cpu(wanted, error)
        shown = batch.pts_seconds.cpu().numpy() - self.begin
        # The frame returned for t must start at or before t (torchcodec's index can be off), and
        # be the last frame for times past it.
        wrong = (shown > sorted_times + 2 * TIME_EPS) | (
            (sorted_times >= self.last_frame) & (shown < self.last_frame - 2 * TIME_EPS)
        )
        if np.any(wrong):
            k = int(np.argmax(wrong))
            raise _Untrusted(f"it returns the frame at {shown[k]:.6g} s for time {sorted_times[k]:.6g} s")
        frames = batch.data.permute(0, 2, 3, 1)  # N x C x H x W -> N x H x W x C
        if out_hw is not None:
            frames = resize_frames(frames, out_hw)
        return frames


    def _read_on_cpu(self, wanted: np.ndarray, error: BaseException):
        # A GPU decoder that fails mid-stream says nothing about the file: read it on the CPU
        # before calling it broken, and keep later reads there too.
        _warn_once(f"torchcodec cannot decode on {self.device} ({_first_line(error)}): decoding on the CPU from now on")
        _TORCHCODEC_CPU_ONLY.add(self.device)
        self.device = "cpu"
        self.decoder = _torchcodec_decoder(self.path, self.num_threads, "cpu")
        try:
            return self.decoder.get_frames_played_at(wanted.tolist())
        except (RuntimeError, IndexError, ValueError) as cpu_error:
            raise VideoDecodeError(self.path, f"torchcodec cannot decode frames: {_first_line(cpu_error)}") from None


def _torchcodec_read(path, info, sorted_times, out_hw, num_threads, *, device="cpu") -> torch.Tensor:
    return _TorchcodecSession(path, info, num_threads, device).read(sorted_times, out_hw)


# ----------------------------------------------------------------------------------------- PyAV


class _SeekLandedLate(Exception):
    """The keyframe a seek landed on is shown after the first wanted time."""


def _pyav_read(path: str, info: VideoInfo, sorted_times: np.ndarray, out_hw, num_threads: int) -> torch.Tensor:
    buffer: Optional[np.ndarray] = None
    for lo, hi, array in _pyav_frames(path, info, sorted_times, out_hw, num_threads):
        if buffer is None:
            buffer = np.empty((len(sorted_times),) + array.shape, dtype=np.uint8)
        buffer[lo:hi] = array
    return torch.from_numpy(buffer)


def _pyav_chunks(path, info, times, out_hw, num_threads, chunk) -> Iterator[torch.Tensor]:
    """Consecutive ``chunk``-frame clips of ``times`` (sorted), each yielded once complete."""
    pending: Dict[int, List] = {}  # chunk index -> [buffer, frames filled]
    next_chunk = 0
    total = math.ceil(len(times) / chunk)
    for lo, hi, array in _pyav_frames(path, info, times, out_hw, num_threads):
        for index in range(lo // chunk, (hi - 1) // chunk + 1):
            entry = pending.get(index)
            if entry is None:
                rows = min(chunk, len(times) - index * chunk)
                entry = pending[index] = [np.empty((rows,) + array.shape, dtype=np.uint8), 0]
            a, b = max(lo, index * chunk), min(hi, (index + 1) * chunk)
            entry[0][a - index * chunk : b - index * chunk] = array
            entry[1] += b - a
        while next_chunk < total and next_chunk in pending and pending[next_chunk][1] == len(pending[next_chunk][0]):
            yield torch.from_numpy(pending.pop(next_chunk)[0])
            next_chunk += 1


def _pyav_frames(path, info, sorted_times, out_hw, num_threads) -> Iterator[Tuple[int, int, np.ndarray]]:
    """``(lo, hi, rgb)``: the frame on screen at ``sorted_times[lo:hi]``; every index once."""
    seek = info.has_timestamps and float(sorted_times[0]) > TIME_EPS
    try:
        yield from _pyav_decode(path, info, sorted_times, out_hw, num_threads, seek=seek)
    except _SeekLandedLate:
        # Index timestamps that are DTS, or an open GOP: decode from the start instead.
        yield from _pyav_decode(path, info, sorted_times, out_hw, num_threads, seek=False)


def _pyav_decode(path, info, sorted_times, out_hw, num_threads, *, seek: bool):
    container, stream = _open_pyav(path)
    try:
        context = stream.codec_context
        if num_threads > 1:
            stream.thread_type = "AUTO"
        if num_threads > 0:
            context.thread_count = num_threads
        convert = _converter(out_hw)
        try:
            if info.has_timestamps:
                yield from _frames_by_pts(container, stream, info, sorted_times, convert, seek=seek)
            else:
                yield from _frames_by_index(container, stream, info, sorted_times, convert)
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"decoding failed: {error}") from None
    finally:
        container.close()


def _converter(out_hw: Optional[Tuple[int, int]]) -> Callable:
    from av.video.reformatter import VideoReformatter

    # Each reformatter keeps its scaler context for the whole read; one thread, because the
    # caller parallelises across clips (and several threads cost more CPU time in all).
    to_rgb = VideoReformatter()
    if out_hw is None:
        return lambda frame: to_rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
    height, width = out_hw
    scaler = VideoReformatter()

    def convert(frame) -> np.ndarray:
        # Scaling the planar YUV picture first, then converting the small one, is cheaper than
        # swscale's combined scale-and-convert (several times so for odd output widths).
        small = scaler.reformat(frame, width=width, height=height, interpolation="BILINEAR", threads=1)
        return to_rgb.reformat(small, format="rgb24", threads=1).to_ndarray()

    return convert


def _frames_by_pts(container, stream, info: VideoInfo, sorted_times, convert, *, seek: bool):
    """Decode forward and hand out each frame a wanted time shows, chosen by its PTS.

    A packet is sent to the decoder once ``_REORDER_WINDOW`` more have been demuxed, when its
    successor in presentation order is known: the times in ``[pts, successor)`` are the ones it
    shows. A packet that shows none is sent with ``skip_frame = NONREF``, so a non-reference
    frame is not decoded at all (a reference frame still is: later frames need it).
    """
    context = stream.codec_context
    zero = info.start_pts
    tick = float(Fraction(info.time_base))
    targets = (sorted_times + TIME_EPS).tolist()
    count = len(targets)
    if seek:
        first = float(sorted_times[0])
        # backward=True lands on the keyframe at or before the target.
        container.seek(zero + int(math.floor(first / tick)), stream=stream, backward=True, any_frame=False)
    window: List[float] = []  # sorted times of the packets around the one being decided
    recent: collections.deque = collections.deque()  # the same times, in decode order
    pending: collections.deque = collections.deque()  # (packet, time) demuxed, not yet sent
    slots: Dict[int, Tuple[int, int]] = {}  # PTS of a sent packet -> the wanted times it shows
    claimed: set = set()  # every PTS ever put in slots (a duplicate PTS shows nothing new)
    assigned = handed = 0
    skipping = False
    started = False
    sent_latest = -math.inf  # the latest frame time among the packets sent so far

    def decide(time: float) -> Tuple[int, int]:
        position = bisect.bisect_right(window, time)
        successor = window[position] if position < len(window) else math.inf
        return bisect.bisect_left(targets, time), bisect.bisect_left(targets, successor)

    def deliver(frames):
        nonlocal handed
        for frame in frames:
            span = slots.pop(frame.pts, None) if frame.pts is not None else None
            if span is not None:
                handed += span[1] - span[0]
                yield span[0], span[1], convert(frame)

    def send(packet, time):
        nonlocal assigned, skipping, sent_latest
        if time is not None:
            sent_latest = max(sent_latest, time)
        lo, hi = decide(time) if time is not None else (0, 0)
        wanted = hi > lo and packet.pts not in claimed
        if wanted:
            slots[packet.pts] = (lo, hi)
            claimed.add(packet.pts)
            assigned += hi - lo
        if skipping == wanted:
            skipping = not wanted
            context.skip_frame = "NONREF" if skipping else "DEFAULT"
        return context.decode(packet)

    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        time = None
        if packet.pts is not None and not packet.is_discard:
            time = (packet.pts - zero) * tick
            if not started and seek and time > targets[0]:
                raise _SeekLandedLate()
            if time < sent_latest:
                # Decisions already made assumed no packet this far back in presentation order.
                raise VideoDecodeError(
                    container.name,
                    f"frames are stored more than {_REORDER_WINDOW} packets away from their presentation order",
                )
            bisect.insort(window, time)
            recent.append(time)
            if len(recent) > 2 * _REORDER_WINDOW + 2:
                old = recent.popleft()
                del window[bisect.bisect_left(window, old)]
        started = True
        pending.append((packet, time))
        if len(pending) > _REORDER_WINDOW:
            yield from deliver(send(*pending.popleft()))
            if assigned == count:
                break
    else:
        while pending and assigned < count:
            yield from deliver(send(*pending.popleft()))
    yield from deliver(context.decode(None))
    if handed < count:
        raise VideoDecodeError(
            container.name,
            f"the decoder returned no frame for {len(slots)} of the timestamps the container lists "
            "(decoded frames' timestamps do not match the packets')"
            if slots
            else "the video stream has no decodable frames",
        )


def _frames_by_index(container, stream, info: VideoInfo, sorted_times, convert):
    """Streams without timestamps: the k-th decoded frame is shown from ``k / rate``."""
    targets = (sorted_times + TIME_EPS).tolist()
    count = len(targets)
    rate = info.rate
    previous, previous_lo, k = None, 0, 0
    for frame in container.decode(stream):
        lo = bisect.bisect_left(targets, k / rate)
        if previous is not None and lo > previous_lo:
            yield previous_lo, lo, convert(previous)
        if lo >= count:
            return
        previous, previous_lo, k = frame, lo, k + 1
    if previous is None:
        raise VideoDecodeError(container.name, "the video stream has no decodable frames")
    yield previous_lo, count, convert(previous)


# ------------------------------------------------------------------------------------- time limit


class _DecodeThread:
    """A daemon thread that runs decoding calls, so that the caller can stop waiting."""

    def __init__(self):
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="videotl-decode", daemon=True).start()

    def _run(self):
        while True:
            fn, box, done = self.requests.get()
            try:
                box.append((True, fn()))
            except BaseException as error:  # handed to the waiting caller, who re-raises it
                box.append((False, error))
            done.set()


_DECODE_THREAD: Optional[_DecodeThread] = None
_DECODE_LOCK = threading.Lock()


def _in_callers_stream(fn: Callable[[], T]) -> Callable[[], T]:
    # CUDA streams are per thread: the decode thread would otherwise issue on the default stream.
    # Never touches CUDA where it is not started (DataLoader workers).
    if not torch.cuda.is_initialized():
        return fn
    stream = torch.cuda.current_stream()

    def in_stream():
        with torch.cuda.stream(stream):
            return fn()

    return in_stream


def call_with_timeout(fn: Callable[[], T], *, seconds: float, path: PathLike) -> T:
    """``fn()``, or a :class:`VideoDecodeError` for ``path`` once it has run ``seconds``.

    ``seconds <= 0`` calls ``fn`` directly. The call runs in a daemon thread of this process; one
    that never returns (a decoder spinning on a corrupt stream) is left behind and the next call
    gets a new thread, so a hung file costs a sample, not the run. ``fn`` runs in the caller's
    current CUDA stream (a GPU decode issued from a side stream stays on it).
    """
    global _DECODE_THREAD
    if not seconds or seconds <= 0:
        return fn()
    fn = _in_callers_stream(fn)
    with _DECODE_LOCK:
        # A forked DataLoader worker inherits the object but not the thread.
        if _DECODE_THREAD is None or _DECODE_THREAD.pid != os.getpid():
            _DECODE_THREAD = _DecodeThread()
        worker = _DECODE_THREAD
    box: list = []
    done = threading.Event()
    worker.requests.put((fn, box, done))
    if not done.wait(seconds):
        with _DECODE_LOCK:
            if _DECODE_THREAD is worker:
                _DECODE_THREAD = None
        logger.warning("decoding %s took longer than %g s: abandoned (its thread may still be running)", path, seconds)
        raise DecodeTimeout(path, f"decoding took longer than {seconds:g} s (time limit); skipped")
    ok, value = box[0]
    if ok:
        return value
    raise value
