"""Reading clips from video files by time, with decord, PyAV or torchcodec.

Every reader here follows one contract: output frame ``k`` of a request for times ``t_k`` is the
source frame *on screen* at ``t_k``, as FFmpeg's player and command line show it: frames in the
decoder's output (display) order, each shown from its presentation time until the next frame's.
Times come from the container, never from ``index / average_fps``, so variable-frame-rate files
and 29.97 fps files land on the right frames. Times before the first frame give the first frame;
times past the last frame repeat the last frame. A stream with no timestamps at all (a raw
``.h264`` / ``.m4v`` elementary stream) shows frame ``k`` from ``k / rate``, the rate its header
declares.

A frame's presentation time follows FFmpeg's tools, not the packets alone (see
:class:`_FrameClock`): where every packet carries a PTS the frames take those (``timing =
"pts"``); where some do not (AVI, whose MPEG-4 Part 2 streams may pack two frames in one packet;
MPEG program streams, which time only some packets) or where a transport stream's timestamps
jump, each decoded frame takes libavcodec's best-effort timestamp, after the jumps are removed
as the command line removes them (``timing = "decoder"``; the probe decodes such a file once to
list its frame times). PyAV's default of making up missing packet timestamps (libavformat's
``genpts``) is turned off: FFmpeg's tools do not use it, and on those files it makes up the
wrong ones.

Time zero is the first frame's presentation time, so annotation times (Charades' action
intervals) count from the first picture the viewer sees. Frames an edit list hides are not part of
the video. A display matrix (phone videos shot upright) is applied: frames come back as a player
shows them and :func:`probe` reports the displayed size, unless ``autorotate=False`` asks for the
stored orientation (``DATA.AUTOROTATE``). Colour follows the frame's own tags (BT.601 / BT.709,
limited or full range) and converts as FFmpeg's ``scale`` filter does, 10-bit and odd sizes
included.

:func:`probe` demuxes every packet once (cached per process, and in a manifest on disk for whole
datasets, see :mod:`videotl.data.manifest`); the readers check their decoder against it. decord
and torchcodec keep their own frame index, which some real files break (decord reports garbage
timestamps for MPEG-4 Part 2 AVI files and edit lists, and crashes on huge ones; torchcodec's
index is off on the same AVI files), and decord returns later frames than its index says on open
GOPs and transport streams; where their timestamps disagree with the container's, their decoder
fails, or the file is of a kind they get wrong, the file is read with PyAV instead, logged once
per process.

On ``"pts"``-timed files the PyAV reader selects frames by PTS value rather than by position in
the decoder's output, so frames that leave the decoder out of presentation order are placed
where they belong, and it tells the decoder to skip the non-reference frames no requested time
shows (at 12 fps from a 30 fps source, most B-frames). On ``"decoder"``-timed files it takes the
frames in output order, timed as they come. Only returned frames are converted: scaled in YUV,
then converted once to RGB at the output size.

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
import sys
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
_GEN_PTS = av.container.Flags.gen_pts.value
_TS_DISCONT = av.format.Flags.ts_discont.value
_NO_TIMESTAMPS = av.format.Flags.no_timestamps.value
# FFmpeg's command line (dts_delta_threshold): in formats whose timestamps may jump (MPEG-TS /
# PS), a DTS more than this far from the expected one, or this much behind the previous one,
# starts a new timeline, joined to the old one.
_DISCONTINUITY_SEC = 10.0
_DISCONTINUITY_BACK_SEC = 0.1
# Decoders that apply skip_frame to the packet being sent, so that a packet sent as skippable is
# the frame skipped; libdav1d (AV1) applies it to whatever frame it decodes next, later.
_SKIPPING_DECODERS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4", "vp8", "vp9"})
# A seek that lands after the first wanted time (a transport stream lands on any packet, the
# keyframe may follow the target) is retried this many seconds earlier, then from the start.
_SEEK_BACKOFF_SEC = (1.0, 4.0, 16.0)
# Packets the probe sends to the decoder to read the display matrix from the first frame.
_ROTATION_PACKETS = 16

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
        width: displayed width in pixels (the stored height where ``rotation`` is 90 or 270).
        height: displayed height in pixels.
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
        timing: where frame times come from (see the module's docstring): ``"pts"`` (every
            packet's PTS), ``"decoder"`` (the decoder's best-effort timestamps: some packets
            lack a PTS, or the timestamps jump) or ``"none"`` (no timestamps: ``k / rate``).
        rotation: the display matrix's counter-clockwise rotation, 0, 90, 180 or 270 degrees;
            ``width`` / ``height`` are the displayed size (swapped from the stored one at 90 /
            270).
        discontinuities: timestamp jumps joined up as FFmpeg's command line does (MPEG-TS / PS).
        leading_frames: frames stored after a keyframe but shown before it (open GOPs: they
            may refer to the previous GOP).
        frames_before_keyframe: packets stored before the first keyframe (a stream cut
            mid-GOP): they cannot be decoded, and are not counted.
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
    timing: str = "pts"
    rotation: int = 0
    discontinuities: int = 0
    leading_frames: int = 0
    frames_before_keyframe: int = 0

    @property
    def start_time(self) -> float:
        """The first frame's PTS in seconds."""
        return float(self.start_pts * Fraction(self.time_base))

    def frame_size(self, autorotate: bool = True) -> Tuple[int, int]:
        """``(height, width)`` of the frames read: as displayed, or as stored (``autorotate=False``)."""
        if autorotate or self.rotation % 180 == 0:
            return self.height, self.width
        return self.width, self.height

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
        # Damaged files carry metadata that is not UTF-8: it is replaced, not an error.
        container = av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"cannot open as a video container: {error}") from None
    except OSError as error:
        raise VideoDecodeError(path, f"cannot open: {error}") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream in the container")
    if container.streams.video[0].codec_context is None:
        container.close()
        raise VideoDecodeError(path, "no decoder for the video stream's codec (unknown, or a damaged header)")
    # PyAV turns on libavformat's genpts, which makes up a PTS for packets without one by
    # guessing their reordering; FFmpeg's own tools leave those packets without, and the guesses
    # are wrong on AVI with packed B-frames and on MPEG program streams.
    container.flags = container.flags & ~_GEN_PTS
    return container, container.streams.video[0]


def _demux(container, stream) -> Iterator:
    """``container.demux(stream)``. When streams appear mid-file (a damaged transport stream),
    PyAV's demuxer ends in an IndexError while it makes its empty end-of-stream packets: every
    packet with data has been read by then, so that is the end."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, IndexError):
            return
        yield packet


class _FrameClock:
    """The presentation time FFmpeg's player and command line give each decoded frame.

    Feed it every packet before it is decoded (:meth:`packet`) and every frame the decoder
    returns, in order (:meth:`frame`), and it does what the command line does:

    - in formats whose timestamps may jump (MPEG-TS / PS), a packet whose DTS is more than
      ``_DISCONTINUITY_SEC`` away from the expected one (or ``_DISCONTINUITY_BACK_SEC`` behind the
      previous one) shifts it and every later packet onto the old timeline, right after the
      previous packet;
    - a frame's time is libavcodec's best-effort timestamp: its PTS, unless PTS values have gone
      backwards more often than DTS values so far, then its packet's DTS;
    - a frame with neither follows the previous one by the previous frame's duration;
    - times never go back: a time before the previous frame's is held at it (as FFmpeg's muxers
      hold a timestamp that goes back), so such a frame is replaced by the next at once.

    Times are in the stream's time base.
    """

    def __init__(self, container, stream):
        tick = Fraction(stream.time_base)
        self.joins_jumps = bool(container.format.flags & _TS_DISCONT)
        self.jump = int(_DISCONTINUITY_SEC / tick)
        self.back = int(_DISCONTINUITY_BACK_SEC / tick)
        rate = stream.codec_context.framerate or stream.guessed_rate or stream.average_rate
        self.rate_duration = max(1, round(1 / (Fraction(rate) * tick))) if rate else 0
        self.offset = 0
        self.next_dts: Optional[int] = None
        self.current_dts: Optional[int] = None
        self.discontinuities = 0
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = -math.inf
        self.last_time: Optional[int] = None  # the previous frame's time, before holding
        self.last_duration = 0
        self.shown: Optional[int] = None  # the previous frame's time as shown

    def packet(self, packet) -> None:
        """Join up timestamp jumps: shifts ``packet``'s PTS and DTS in place."""
        if not self.joins_jumps:
            return
        duration = packet.duration or self.rate_duration
        dts = packet.dts
        if dts is None:
            if self.next_dts is not None:
                self.current_dts = self.next_dts
                self.next_dts += duration
            return
        shift = self.offset
        if self.next_dts is not None:
            delta = dts + shift - self.next_dts
            if abs(delta) > self.jump or dts + shift + self.back < self.current_dts:
                self.offset -= delta
                shift -= delta
                self.discontinuities += 1
        if shift:
            packet.dts = dts + shift
            if packet.pts is not None:
                packet.pts = packet.pts + shift
        self.current_dts = dts + shift
        self.next_dts = self.current_dts + duration

    def frame(self, frame) -> int:
        """The frame's presentation time."""
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self.faulty_dts += dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            time = pts
        elif dts is not None:
            time = dts
        else:
            time = 0 if self.last_time is None else self.last_time + self.last_duration
        # The command line's estimate of this frame's duration, used for a successor without time.
        if frame.duration and frame.duration > 0:
            self.last_duration = int(frame.duration)
        elif self.last_time is not None and time > self.last_time:
            self.last_duration = time - self.last_time
        elif self.rate_duration:
            self.last_duration = self.rate_duration
        else:
            self.last_duration = max(self.last_duration, 1)
        self.last_time = time
        self.shown = time if self.shown is None else max(time, self.shown)
        return self.shown


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
        count = missing = dts_missing = hidden = out_of_order = leading = 0
        latest = key_pts = None
        clock = _FrameClock(container, stream)
        rotation = _RotationReader(stream)
        # Packets before the first keyframe (a transport stream cut mid-GOP) cannot be decoded:
        # no player shows them. They count only if no packet is a keyframe.
        head: Optional[list] = []
        before_keyframe = 0

        def add(pts, dts, duration, keyframe, discard):
            nonlocal count, missing, dts_missing, hidden, out_of_order, leading, latest, key_pts
            if discard:
                hidden += 1
                return
            count += 1
            dts_missing += dts is None
            if pts is None:
                missing += 1
                return
            pts_list.append(pts)
            if keyframe:
                key_pts = pts
            elif key_pts is not None and pts < key_pts:
                leading += 1
            if latest is not None and pts < latest:
                out_of_order += 1
            latest = pts if latest is None else max(latest, pts)
            if duration:
                durations.append(duration)

        try:
            for packet in _demux(container, stream):
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
                    before_keyframe, head = len(head), None
                add(*fields)
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"corrupt or truncated after {count} packets: {error}") from None
        for fields in head or ():
            add(*fields)
        if count == 0:
            raise VideoDecodeError(path, "the video stream has no frames")
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate
        rate = float(rate) if rate else 0.0
        degrees = rotation.degrees()
        width, height = stream.codec_context.width, stream.codec_context.height
        if degrees % 180:
            width, height = height, width
        common = dict(
            width=width,
            height=height,
            header_frames=int(stream.frames or 0),
            rate=rate,
            hidden_frames=hidden,
            stored_out_of_order=out_of_order,
            decoder_reorders=bool(stream.codec_context.has_b_frames),
            codec=stream.codec_context.name or "",
            container=container.format.name or "",
            rotation=degrees,
            leading_frames=leading,
            frames_before_keyframe=before_keyframe,
        )
        time_base = stream.time_base
        no_timestamps = container.format.flags & _NO_TIMESTAMPS or (missing == count and dts_missing == count)
        if no_timestamps:
            # No timestamps: frame k is shown from k / rate.
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
                timing="none",
                **common,
            )
        if missing or clock.discontinuities:
            # Packets without a PTS, or jumps: the frames' times are the decoder's.
            times, last_duration = _decoded_times(path)
            pts = np.asarray(times, dtype=np.int64)
            timing = "decoder"
        else:
            pts = np.sort(np.asarray(pts_list, dtype=np.int64))
            last_duration = int(np.median(durations)) if durations else 0
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
    finally:
        container.close()


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
    """Every frame's presentation time as the decoder returns them (see :class:`_FrameClock`),
    and the last frame's duration; one decode of the whole stream, skipping what only the
    pixels need (inverse DCT, loop filter)."""
    container, stream = _open_pyav(path)
    try:
        context = stream.codec_context
        context.options = {"skip_idct": "all", "skip_loop_filter": "all"}
        stream.thread_type = "AUTO"
        clock = _FrameClock(container, stream)
        times: List[int] = []
        try:
            for packet in _demux(container, stream):
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
    missing timestamps, frames timed by the decoder, timestamp jumps, a display matrix, hidden
    frames, duplicate or huge timestamps, and whether decord's and torchcodec's frame indexes agree
    with the container's. ``tools/check_videos.py`` prints these."""
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
    autorotate: bool = True,
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
        autorotate: apply the file's display matrix (a phone video shot upright comes upright,
            as players show it); False keeps the stored orientation. ``size`` refers to the
            orientation returned.

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
    out_hw = None if size is None else output_size(*info.frame_size(autorotate), size)
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    if backend == "decord":
        _load_torchcodec_before_decord()  # reporting() imports decord
    with ffmpeg_log.reporting(key[0], backend):
        frames = _read_sorted(key[0], info, sorted_times, out_hw, backend, num_threads, device, autorotate)
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
    backend: str = "decord",
    size: Size = None,
    *,
    num_threads: int = 0,
    device: Union[str, torch.device] = "cpu",
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
    _check_backend(backend)
    key = _file_key(path)
    info = probe(path)
    out_hw = None if size is None else output_size(*info.frame_size(autorotate), size)
    count = segment_count(info.duration, num_frames=num_frames, fps=fps)
    if not 0 <= start_segment < count:
        raise ValueError(f"start_segment = {start_segment}: {key[0]} has {count} segments")
    times = np.arange(start_segment * num_frames, count * num_frames, dtype=np.float64) / fps
    span = num_frames / fps
    if backend == "pyav":
        chunks = _pyav_chunks(key[0], info, times, out_hw, num_threads, num_frames, autorotate=autorotate)
    else:
        chunks = _chunked_reads(key[0], info, times, out_hw, backend, num_threads, device, num_frames, autorotate)
    segments = enumerate(chunks, start=start_segment)
    if backend == "decord":
        _load_torchcodec_before_decord()  # reporting() imports decord
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
    autorotate: bool = True,
) -> List[Tuple[float, torch.Tensor]]:
    """Every segment of :func:`iter_segments` in a list (the whole video in memory at once:
    prefer :func:`iter_segments` for long videos)."""
    return list(
        iter_segments(
            path, num_frames, fps, backend, size, num_threads=num_threads, device=device, autorotate=autorotate
        )
    )


# ------------------------------------------------------------------------------- backend choice


def _read_sorted(path, info, sorted_times, out_hw, backend, num_threads, device, autorotate) -> torch.Tensor:
    pyav = functools.partial(_pyav_read, autorotate=autorotate)
    if backend == "pyav":
        return pyav(path, info, sorted_times, out_hw, num_threads)
    reader = _decord_read if backend == "decord" else functools.partial(_torchcodec_read, device=device)
    try:
        return reader(path, info, sorted_times, out_hw, num_threads, autorotate=autorotate)
    except _Untrusted as untrusted:
        _note_fallback(backend, path, untrusted.reason)
        return pyav(path, info, sorted_times, out_hw, num_threads)
    except VideoDecodeError as error:
        # decord fails on files PyAV reads (some frame widths, e.g. 96 or 144 pixels: "Check
        # failed: from_size == to_size"); every backend follows the same contract, so fall back.
        try:
            result = pyav(path, info, sorted_times, out_hw, num_threads)
        except VideoDecodeError as pyav_error:
            raise VideoDecodeError(path, f"{error.reason}; PyAV: {pyav_error.reason}") from None
        _note_fallback(backend, path, error.reason)
        return result


def _chunked_reads(path, info, times, out_hw, backend, num_threads, device, chunk, autorotate):
    """decord / torchcodec segments: one open reader asked for one segment's frames at a time,
    which both serve by decoding forward from where the previous request stopped."""
    try:
        if backend == "decord":
            session = _DecordSession(path, info, num_threads)
        else:
            session = _TorchcodecSession(path, info, num_threads, device)
    except _Untrusted as untrusted:
        _note_fallback(backend, path, untrusted.reason)
        yield from _pyav_chunks(path, info, times, out_hw, num_threads, chunk, autorotate=autorotate)
        return
    except VideoDecodeError as error:
        _note_fallback(backend, path, error.reason)
        yield from _pyav_chunks(path, info, times, out_hw, num_threads, chunk, autorotate=autorotate)
        return
    done = 0
    try:
        for start in range(0, len(times), chunk):
            yield session.read(times[start : start + chunk], out_hw, autorotate)
            done = start + chunk
    except (_Untrusted, VideoDecodeError) as error:
        # Segments already handed out were exact; the rest come from PyAV.
        _note_fallback(backend, path, getattr(error, "reason", str(error)))
        yield from _pyav_chunks(path, info, times[done:], out_hw, num_threads, chunk, autorotate=autorotate)


# --------------------------------------------------------------------------------------- decord


# decord's and torchcodec's frame indexes time frames by their packets.
_PACKET_INDEX_REASON = "its index times frames by their packets, whose timestamps here are missing or jump"


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
    if info.timing == "decoder":
        return _PACKET_INDEX_REASON
    # Both checked against FFmpeg's own frame list: decord's index agrees, its frames do not.
    if info.leading_frames:
        return "an open GOP (frames shown before the keyframe they follow), where decord returns later frames"
    if info.container == "mpegts":
        return "an MPEG transport stream, where decord returns later frames"
    return None


class _DecordSession:
    """An open decord reader whose frame index agrees with the container's."""

    def __init__(self, path: str, info: VideoInfo, num_threads: int):
        reason = _decord_untrusted(path, info)
        if reason:
            raise _Untrusted(reason)
        _load_torchcodec_before_decord()
        import decord

        self.path = path
        self.info = info
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

    def read(self, sorted_times: np.ndarray, out_hw, autorotate: bool = True) -> torch.Tensor:
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
            frames = _oriented(frames, self.info, autorotate)
            if out_hw is not None:
                frames = resize_frames(frames, out_hw)
            return _expand(frames, inverse.reshape(-1))
        raise VideoDecodeError(self.path, f"decord cannot decode the last frames (lists {self.count}, fewer decodable)")


def _decord_read(path: str, info: VideoInfo, sorted_times: np.ndarray, out_hw, num_threads: int, *, autorotate=True):
    return _DecordSession(path, info, num_threads).read(sorted_times, out_hw, autorotate)


def _load_torchcodec_before_decord() -> None:
    """decord loads its bundled FFmpeg with its symbols global (libdav1d's among them); the
    system libavcodec that torchcodec loads afterwards then binds to that libdav1d and crashes
    the process on the first AV1 frame. Loaded first, torchcodec's libraries bind to their own."""
    if "decord" not in sys.modules:
        torchcodec_unavailable_reason()


def _oriented(frames: torch.Tensor, info: VideoInfo, autorotate: bool) -> torch.Tensor:
    """decord's and torchcodec's frames (``N x H x W x 3``, turned as displayed) in the
    orientation asked for."""
    if tuple(frames.shape[1:3]) != (info.height, info.width):
        raise _Untrusted(
            f"it returns {frames.shape[2]}x{frames.shape[1]} frames, the display size is {info.width}x{info.height}"
        )
    turns = info.rotation // 90
    if autorotate or not turns:
        return frames
    return torch.rot90(frames, -turns, dims=(1, 2))


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
        if info.timing == "decoder":
            raise _Untrusted(_PACKET_INDEX_REASON)
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

    def read(self, sorted_times: np.ndarray, out_hw, autorotate: bool = True) -> torch.Tensor:
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
        frames = _oriented(batch.data.permute(0, 2, 3, 1), self.info, autorotate)  # N x H x W x C
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


def _torchcodec_read(path, info, sorted_times, out_hw, num_threads, *, device="cpu", autorotate=True) -> torch.Tensor:
    return _TorchcodecSession(path, info, num_threads, device).read(sorted_times, out_hw, autorotate)


# ----------------------------------------------------------------------------------------- PyAV


class _SeekLandedLate(Exception):
    """The first frame a seek leads to is shown after the first wanted time."""


def _pyav_read(path: str, info: VideoInfo, sorted_times: np.ndarray, out_hw, num_threads: int, *, autorotate=True):
    buffer: Optional[np.ndarray] = None
    for lo, hi, array in _pyav_frames(path, info, sorted_times, out_hw, num_threads, autorotate):
        if buffer is None:
            buffer = np.empty((len(sorted_times),) + array.shape, dtype=np.uint8)
        buffer[lo:hi] = array
    return torch.from_numpy(buffer)


def _pyav_chunks(path, info, times, out_hw, num_threads, chunk, *, autorotate=True) -> Iterator[torch.Tensor]:
    """Consecutive ``chunk``-frame clips of ``times`` (sorted), each yielded once complete."""
    pending: Dict[int, List] = {}  # chunk index -> [buffer, frames filled]
    next_chunk = 0
    total = math.ceil(len(times) / chunk)
    for lo, hi, array in _pyav_frames(path, info, times, out_hw, num_threads, autorotate):
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


def _pyav_frames(path, info, sorted_times, out_hw, num_threads, autorotate) -> Iterator[Tuple[int, int, np.ndarray]]:
    """``(lo, hi, rgb)``: the frame on screen at ``sorted_times[lo:hi]``; every index once."""
    first = float(sorted_times[0])
    # Where timestamps jump, a seek target names no single place: decode from the start.
    if info.has_timestamps and not info.discontinuities:
        for back in (0.0,) + _SEEK_BACKOFF_SEC:
            if first - back <= TIME_EPS:
                break
            try:
                yield from _pyav_decode(path, info, sorted_times, out_hw, num_threads, autorotate, seek_to=first - back)
                return
            except _SeekLandedLate:
                # The keyframe before the target lies further back (the index timestamps are
                # DTS, an open GOP, a transport stream): seek earlier.
                continue
    yield from _pyav_decode(path, info, sorted_times, out_hw, num_threads, autorotate, seek_to=None)


def _pyav_decode(path, info, sorted_times, out_hw, num_threads, autorotate, *, seek_to: Optional[float]):
    container, stream = _open_pyav(path)
    try:
        context = stream.codec_context
        if num_threads > 1:
            stream.thread_type = "AUTO"
        if num_threads > 0:
            context.thread_count = num_threads
        convert = _converter(out_hw, info.rotation if autorotate else 0, info.frame_size(autorotate))
        try:
            if info.timing == "none":
                yield from _frames_by_index(container, stream, info, sorted_times, convert)
            elif info.timing == "decoder":
                yield from _frames_by_clock(container, stream, info, sorted_times, convert, seek_to=seek_to)
            else:
                yield from _frames_by_pts(container, stream, info, sorted_times, convert, seek_to=seek_to)
        except av.error.FFmpegError as error:
            raise VideoDecodeError(path, f"decoding failed: {error}") from None
    finally:
        container.close()


# Pixel formats swscale converts to RGB as FFmpeg's scale filter does (its unscaled 8-bit 4:2:0
# path, and the same filter at odd sizes); others (10-bit, 4:2:2, 4:4:4, ...) go through the
# scale filter itself, whose high-bit-depth path differs from a plain swscale call.
_SWSCALE_FORMATS = frozenset({"yuv420p", "yuvj420p"})


def _converter(
    out_hw: Optional[Tuple[int, int]], rotation: int = 0, source_hw: Optional[Tuple[int, int]] = None
) -> Callable:
    """A callable converting decoded frames to ``H x W x 3`` RGB arrays of size ``out_hw`` (or
    ``source_hw``, the video's size, where the stream changes size midway; or each frame's own),
    turned by ``rotation`` degrees counter-clockwise (the display matrix's); both sizes in the
    orientation returned."""
    return _Converter(out_hw, rotation, source_hw)


class _Converter:
    def __init__(self, out_hw: Optional[Tuple[int, int]], rotation: int, source_hw: Optional[Tuple[int, int]]):
        from av.video.reformatter import VideoReformatter

        self.turns = (rotation // 90) % 4
        # The scaler works in the stored orientation: the frame turns after conversion.
        if out_hw is not None and self.turns % 2:
            out_hw = (out_hw[1], out_hw[0])
        if source_hw is not None and self.turns % 2:
            source_hw = (source_hw[1], source_hw[0])
        self.out_hw = out_hw
        self.source_hw = source_hw
        # Each reformatter keeps its scaler context for the whole read; one thread, because the
        # caller parallelises across clips (and several threads cost more CPU time in all).
        self.to_rgb = VideoReformatter()
        self.scaler = VideoReformatter()
        self.graph = None
        self.graph_key = None

    def __call__(self, frame) -> np.ndarray:
        if self.out_hw is None and self.source_hw is not None and (frame.height, frame.width) != self.source_hw:
            # A damaged or spliced stream changes size midway: every frame comes at the video's.
            self.out_hw = self.source_hw
        if frame.format.name in _SWSCALE_FORMATS:
            if self.out_hw is not None:
                # Scaling the planar YUV picture first, then converting the small one, is
                # cheaper than swscale's combined scale-and-convert (several times so for odd
                # output widths).
                height, width = self.out_hw
                frame = self.scaler.reformat(frame, width=width, height=height, interpolation="BILINEAR", threads=1)
            # Bicubic, as FFmpeg's command line converts: it matters at odd sizes only.
            rgb = self.to_rgb.reformat(frame, format="rgb24", interpolation="BICUBIC", threads=1).to_ndarray()
        else:
            rgb = self._through_scale_filter(frame)
        return np.rot90(rgb, self.turns) if self.turns else rgb

    def _through_scale_filter(self, frame) -> np.ndarray:
        key = (frame.format.name, frame.width, frame.height)
        if key != self.graph_key:
            graph = av.filter.Graph()
            source = graph.add_buffer(
                width=frame.width, height=frame.height, format=frame.format, time_base=frame.time_base or Fraction(1)
            )
            size = "" if self.out_hw is None else f"w={self.out_hw[1]}:h={self.out_hw[0]}:"
            scale = graph.add("scale", size + ("flags=bicubic" if self.out_hw is None else "flags=bilinear"))
            rgb = graph.add("format", "rgb24")
            sink = graph.add("buffersink")
            source.link_to(scale)
            scale.link_to(rgb)
            rgb.link_to(sink)
            graph.configure()
            self.graph, self.graph_key = graph, key
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()


def _frames_by_pts(container, stream, info: VideoInfo, sorted_times, convert, *, seek_to: Optional[float]):
    """Decode forward and hand out each frame a wanted time shows, chosen by its PTS.

    A packet is sent to the decoder once ``_REORDER_WINDOW`` more have been demuxed, when its
    successor in presentation order is known: the times in ``[pts, successor)`` are the ones it
    shows. A packet that shows none is sent with ``skip_frame = NONREF``, so a non-reference
    frame is not decoded at all (a reference frame still is: later frames need it). After a seek,
    decoding starts at the first keyframe, which must be shown at or before the first wanted time.
    """
    context = stream.codec_context
    zero = info.start_pts
    tick = float(Fraction(info.time_base))
    targets = (sorted_times + TIME_EPS).tolist()
    count = len(targets)
    may_skip = context.name in _SKIPPING_DECODERS
    if seek_to is not None:
        # backward=True lands at or before the target (on a keyframe where the index allows).
        container.seek(zero + int(math.floor(seek_to / tick)), stream=stream, backward=True, any_frame=False)
    window: List[float] = []  # sorted times of the packets around the one being decided
    recent: collections.deque = collections.deque()  # the same times, in decode order
    pending: collections.deque = collections.deque()  # (packet, time) demuxed, not yet sent
    slots: Dict[int, Tuple[int, int]] = {}  # PTS of a sent packet -> the wanted times it shows
    claimed: set = set()  # every PTS ever put in slots (a duplicate PTS shows nothing new)
    assigned = handed = 0
    skipping = False
    started = seek_to is None
    # From the start: the packets before the first keyframe cannot be decoded (nor counted).
    head = info.frames_before_keyframe if seek_to is None else 0
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
        if may_skip and skipping == wanted:
            skipping = not wanted
            context.skip_frame = "NONREF" if skipping else "DEFAULT"
        return context.decode(packet)

    for packet in _demux(container, stream):
        if packet.size == 0:
            continue
        if head:
            head -= 1
            continue
        if not started:
            # A seek may land on any packet (transport streams do): decoding starts at a keyframe.
            if not packet.is_keyframe:
                continue
            if packet.pts is None or (packet.pts - zero) * tick > targets[0]:
                raise _SeekLandedLate()
            started = True
        time = None
        if packet.pts is not None and not packet.is_discard:
            time = (packet.pts - zero) * tick
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
        pending.append((packet, time))
        if len(pending) > _REORDER_WINDOW:
            yield from deliver(send(*pending.popleft()))
            if assigned == count:
                break
    else:
        if not started:
            raise _SeekLandedLate()  # no keyframe after the seek (a seek past a timestamp wrap)
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


def _frames_by_clock(container, stream, info: VideoInfo, sorted_times, convert, *, seek_to: Optional[float]):
    """Decode forward and time each frame the decoder returns by :class:`_FrameClock`: frame
    ``i`` is on screen from its time until frame ``i + 1``'s. Each frame is converted only if
    it shows a wanted time. After a seek, decoding starts at the first keyframe packet, frames
    count from the first keyframe returned, and that one must be shown at or before the first
    wanted time."""
    context = stream.codec_context
    zero = info.start_pts
    tick = float(Fraction(info.time_base))
    targets = (sorted_times + TIME_EPS).tolist()
    count = len(targets)
    if seek_to is not None:
        container.seek(zero + int(math.floor(seek_to / tick)), stream=stream, backward=True, any_frame=False)
    clock = _FrameClock(container, stream)
    started = seek_to is None
    held = None  # the latest frame returned, not yet handed out
    held_lo = 0  # the first wanted time it shows

    def place(frames):
        nonlocal held, held_lo
        for frame in frames:
            time = (clock.frame(frame) - zero) * tick
            lo = bisect.bisect_left(targets, time)
            if held is None:
                if seek_to is not None:
                    if not frame.key_frame:
                        continue  # an open GOP's leading frames may lack their references
                    if lo > 0:
                        raise _SeekLandedLate()
                lo = 0  # times before the first frame show the first frame
            elif lo > held_lo:
                yield held_lo, lo, convert(held)
            held, held_lo = frame, lo
            if lo >= count:
                return

    for packet in _demux(container, stream):
        if packet.size == 0:
            continue
        if not started:
            if not packet.is_keyframe:
                continue
            started = True
        clock.packet(packet)
        yield from place(context.decode(packet))
        if held is not None and held_lo >= count:
            break
    else:
        if not started:
            raise _SeekLandedLate()
        yield from place(context.decode(None))
    if held is None:
        raise VideoDecodeError(container.name, "the video stream has no decodable frames")
    if held_lo < count:
        yield held_lo, count, convert(held)


def _frames_by_index(container, stream, info: VideoInfo, sorted_times, convert):
    """Streams without timestamps: the k-th decoded frame is shown from ``k / rate``."""
    targets = (sorted_times + TIME_EPS).tolist()
    count = len(targets)
    rate = info.rate
    previous, previous_lo, k = None, 0, 0
    for frame in (frame for packet in _demux(container, stream) for frame in packet.decode()):
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
