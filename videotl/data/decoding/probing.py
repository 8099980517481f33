"""Probing: a video's frame count, duration and frame times measured from its packets, cached per
process (:data:`PROBE_CACHE`); and the check of another decoder's frame index against them.

(The module is ``probing``, not ``probe``: ``videotl.data.decoding.probe`` is the function.)
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import List, Optional, Tuple

import av
import numpy as np

from .. import ffmpeg_log
from .container import NO_TIMESTAMPS, FrameClock, demux, open_video
from .errors import PathLike, VideoDecodeError
from .video_info import VideoInfo, file_key

__all__ = ["PROBE_CACHE", "ProbeCache", "index_disagreement", "probe", "probe_file", "remember_probe"]

# Ranks of the sorted frame times kept by the probe to check another decoder's frame index.
_MARKS = 17
# Packets the probe sends to the decoder to read the display matrix from the first frame.
_ROTATION_PACKETS = 16


class ProbeCache:
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


PROBE_CACHE = ProbeCache()


def remember_probe(key: Tuple[str, int, int], info: VideoInfo) -> None:
    """Seed the per-process probe cache (from a manifest written by an earlier run)."""
    PROBE_CACHE.put(key, info)


def probe(path: PathLike) -> VideoInfo:
    """Measure a video's duration, frame rate, frame count and timestamps from its packets.

    The header's frame count is not trusted (decord and some muxers over-report it): every video
    packet is read (demuxed, not decoded), which for a 30 s 480p file takes a few ms. Results are
    cached per process, keyed by path, size and modification time.

    Raises:
        VideoDecodeError: missing, empty, unreadable, truncated or frameless file.
    """
    key = file_key(path)
    info = PROBE_CACHE.get(key)
    if info is None:
        with ffmpeg_log.reporting(key[0], "pyav"):
            info = probe_file(key[0])
        PROBE_CACHE.put(key, info)
    return info


@dataclass
class PacketCounts:
    """What the probe counts while it demuxes (see :class:`VideoInfo` for each)."""

    count: int = 0
    missing_pts: int = 0
    missing_dts: int = 0
    hidden: int = 0
    out_of_order: int = 0
    leading: int = 0
    before_keyframe: int = 0
    pts: List[int] = field(default_factory=list)
    durations: List[int] = field(default_factory=list)
    latest: Optional[int] = None  # the latest PTS so far
    key_pts: Optional[int] = None  # the latest keyframe's PTS

    def add(self, pts, dts, duration, keyframe, discard) -> None:
        if discard:
            self.hidden += 1
            return
        self.count += 1
        self.missing_dts += dts is None
        if pts is None:
            self.missing_pts += 1
            return
        self.pts.append(pts)
        if keyframe:
            self.key_pts = pts
        elif self.key_pts is not None and pts < self.key_pts:
            self.leading += 1
        if self.latest is not None and pts < self.latest:
            self.out_of_order += 1
        self.latest = pts if self.latest is None else max(self.latest, pts)
        if duration:
            self.durations.append(duration)


def probe_file(path: str) -> VideoInfo:
    """:func:`probe` without the cache: one demux of every packet (and, for files whose frames the
    decoder times, one decode)."""
    container, stream = open_video(path)
    try:
        clock = FrameClock(container, stream)
        rotation = _RotationReader(stream)
        counts = _count_packets(path, container, stream, clock, rotation)
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate
        rate = float(rate) if rate else 0.0
        common = _stream_facts(container, stream, counts, rotation.degrees(), rate)
        no_timestamps = container.format.flags & NO_TIMESTAMPS or (
            counts.missing_pts == counts.count and counts.missing_dts == counts.count
        )
        if no_timestamps:
            return _info_without_timestamps(path, counts, rate, common)
        return _info_with_timestamps(path, counts, clock, stream.time_base, rate, common)
    finally:
        container.close()


def _count_packets(path: str, container, stream, clock: FrameClock, rotation: _RotationReader) -> PacketCounts:
    counts = PacketCounts()
    # Packets before the first keyframe (a transport stream cut mid-GOP) cannot be decoded:
    # no player shows them. They count only if no packet is a keyframe.
    head: Optional[list] = []
    try:
        for packet in demux(container, stream):
            # The demuxer's final flush packet has no PTS and no data.
            if packet.size == 0:
                continue
            rotation.send(packet)
            clock.packet(packet)
            fields = (packet.pts, packet.dts, packet.duration, packet.is_keyframe, packet.is_discard)
            if head is not None:
                if not packet.is_keyframe:
                    head.append(fields)
                    continue
                counts.before_keyframe, head = len(head), None
            counts.add(*fields)
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"corrupt or truncated after {counts.count} packets: {error}") from None
    for fields in head or ():
        counts.add(*fields)
    if counts.count == 0:
        raise VideoDecodeError(path, "the video stream has no frames")
    return counts


def _stream_facts(container, stream, counts: PacketCounts, degrees: int, rate: float) -> dict:
    """The :class:`VideoInfo` fields that do not depend on how frames are timed."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if degrees % 180:
        width, height = height, width
    return dict(
        width=width,
        height=height,
        header_frames=int(stream.frames or 0),
        rate=rate,
        hidden_frames=counts.hidden,
        stored_out_of_order=counts.out_of_order,
        decoder_reorders=bool(stream.codec_context.has_b_frames),
        codec=stream.codec_context.name or "",
        container=container.format.name or "",
        rotation=degrees,
        leading_frames=counts.leading,
        frames_before_keyframe=counts.before_keyframe,
    )


def _info_without_timestamps(path: str, counts: PacketCounts, rate: float, common: dict) -> VideoInfo:
    # No timestamps: frame k is shown from k / rate.
    if rate <= 0:
        raise VideoDecodeError(path, "the stream has no timestamps and no frame rate")
    count = counts.count
    duration = count / rate
    return VideoInfo(
        duration=duration,
        fps=count / duration,
        num_frames=count,
        time_base=str(Fraction(1, 1)),
        has_timestamps=False,
        frame_time_marks=_marks(np.arange(count, dtype=np.float64) / rate),
        timing="none",
        **common,
    )


def _info_with_timestamps(
    path: str, counts: PacketCounts, clock: FrameClock, time_base, rate: float, common: dict
) -> VideoInfo:
    if counts.missing_pts or clock.discontinuities:
        # Packets without a PTS, or jumps: the frames' times are the decoder's.
        times, last_duration = _decoded_times(path)
        pts = np.asarray(times, dtype=np.int64)
        timing = "decoder"
    else:
        pts = np.sort(np.asarray(counts.pts, dtype=np.int64))
        last_duration = int(np.median(counts.durations)) if counts.durations else 0
        timing = "pts"
    zero, last = int(pts[0]), int(pts[-1])
    times = (pts - zero).astype(np.float64) * float(time_base)
    duration = float((last - zero + last_duration) * time_base)
    if duration <= 0:
        duration = len(pts) / rate if rate else 0.0
    if duration <= 0:
        raise VideoDecodeError(path, "cannot determine the duration (no usable timestamps)")
    return VideoInfo(
        duration=duration,
        fps=len(pts) / duration,
        num_frames=len(pts),
        start_pts=zero,
        time_base=f"{time_base.numerator}/{time_base.denominator}",
        has_timestamps=True,
        frame_time_marks=_marks(times),
        duplicate_timestamps=int(len(pts) - len(np.unique(pts))),
        timing=timing,
        discontinuities=clock.discontinuities,
        **common,
    )


class _RotationReader:
    """The display matrix's rotation, read from the first decoded frame (PyAV has no stream-level
    getter). The first frame shown is decoded alone: the packets from the first keyframe up to
    it, then the decoder is flushed (and takes no more packets)."""

    def __init__(self, stream):
        self.context = stream.codec_context
        # Only the frame's side data is wanted, not its pixels.
        self.context.options = {"skip_idct": "all", "skip_loop_filter": "all"}
        self.sent = 0
        self.frame = None
        self.done = False

    def send(self, packet) -> None:
        if self.done or (self.sent == 0 and not packet.is_keyframe):
            return
        self.sent += 1
        try:
            frames = self.context.decode(packet)
            if not frames and (not packet.is_discard or self.sent >= _ROTATION_PACKETS):
                frames = self.context.decode(None)
                self.done = True
        except av.error.FFmpegError:
            frames, self.done = [], True
        if frames:
            self.frame, self.done = frames[0], True

    def degrees(self) -> int:
        return 0 if self.frame is None else _quarter_turns(self.frame.rotation) * 90


def _quarter_turns(rotation: float) -> int:
    """A counter-clockwise rotation in degrees as 0 to 3 quarter turns (PyAV truncates the
    matrix's angle to an int: -89.999 comes as -89)."""
    return int(round(float(rotation or 0) / 90.0)) % 4


def _decoded_times(path: str) -> Tuple[List[int], int]:
    """Every frame's presentation time as the decoder returns them (see :class:`FrameClock`),
    and the last frame's duration; one decode of the whole stream, skipping what only the
    pixels need (inverse DCT, loop filter)."""
    container, stream = open_video(path)
    try:
        context = stream.codec_context
        context.options = {"skip_idct": "all", "skip_loop_filter": "all"}
        stream.thread_type = "AUTO"
        clock = FrameClock(container, stream)
        times: List[int] = []
        try:
            for packet in demux(container, stream):
                if packet.size == 0:
                    continue
                clock.packet(packet)
                times.extend(clock.frame(frame) for frame in context.decode(packet))
            times.extend(clock.frame(frame) for frame in context.decode(None))
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"corrupt or truncated after {len(times)} frames: {error}") from None
        if not times:
            raise VideoDecodeError(path, "the video stream has no decodable frames")
        return times, clock.last_duration
    finally:
        container.close()


def _marks(sorted_times: np.ndarray) -> Tuple[float, ...]:
    ranks = _mark_ranks(len(sorted_times))
    return tuple(round(float(sorted_times[r]), 6) for r in ranks)


def _mark_ranks(count: int) -> List[int]:
    return sorted({int(round(i * (count - 1) / (_MARKS - 1))) for i in range(_MARKS)})


def index_disagreement(info: VideoInfo, sorted_times: np.ndarray, *, tolerance: float) -> Optional[str]:
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
