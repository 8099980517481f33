"""How the PyAV reader picks the frames wanted times show, by the file's timing (``VideoInfo.timing``):

- ``"pts"`` (:class:`FramesByPts`): frames are chosen by PTS value rather than by position in the
  decoder's output, so frames that leave the decoder out of presentation order are placed where
  they belong, and the decoder skips the non-reference frames no wanted time shows (at 12 fps
  from a 30 fps source, most B-frames);
- ``"decoder"`` (:func:`frames_by_clock`): frames in output order, timed as they come
  (:class:`~videotl.data.decoding.container.FrameClock`);
- ``"none"`` (:func:`frames_by_index`): the k-th frame is shown from ``k / rate``.

Each yields ``(lo, hi, rgb)``: the frame on screen at ``sorted_times[lo:hi]``, converted by
``convert``; every index once. Only returned frames are converted.
"""

from __future__ import annotations

import bisect
import collections
import math
from fractions import Fraction
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .container import FrameClock, demux
from .errors import VideoDecodeError
from .video_info import TIME_EPS, VideoInfo

__all__ = ["FramesByPts", "SeekLandedLate", "frames_by_clock", "frames_by_index"]

# How far (in packets) decode order may run ahead of presentation order. H.264 / HEVC reorder at
# most 16 frames; a packet's successor in presentation order is known this many packets later.
REORDER_WINDOW = 33
# Decoders that apply skip_frame to the packet being sent, so that a packet sent as skippable is
# the frame skipped; libdav1d (AV1) applies it to whatever frame it decodes next, later.
_SKIPPING_DECODERS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4", "vp8", "vp9"})


class SeekLandedLate(Exception):
    """The first frame a seek leads to is shown after the first wanted time."""


def _seek(container, stream, info: VideoInfo, seek_to: float) -> None:
    # backward=True lands at or before the target (on a keyframe where the index allows).
    tick = float(Fraction(info.time_base))
    container.seek(info.start_pts + int(math.floor(seek_to / tick)), stream=stream, backward=True, any_frame=False)


class FramesByPts:
    """Decode forward and hand out each frame a wanted time shows, chosen by its PTS.

    A packet is sent to the decoder once ``REORDER_WINDOW`` more have been demuxed, when its
    successor in presentation order is known: the times in ``[pts, successor)`` are the ones it
    shows. A packet that shows none is sent with ``skip_frame = NONREF``, so a non-reference
    frame is not decoded at all (a reference frame still is: later frames need it). After a seek,
    decoding starts at the first keyframe, which must be shown at or before the first wanted time.
    Iterating it yields ``(lo, hi, rgb)``.
    """

    def __init__(self, container, stream, info: VideoInfo, sorted_times: np.ndarray, convert, *, seek_to):
        self.container, self.stream, self.info, self.convert = container, stream, info, convert
        self.seek_to: Optional[float] = seek_to
        self.context = stream.codec_context
        self.zero = info.start_pts
        self.tick = float(Fraction(info.time_base))
        self.targets = (sorted_times + TIME_EPS).tolist()
        self.count = len(self.targets)
        self.may_skip = self.context.name in _SKIPPING_DECODERS
        self.window: List[float] = []  # sorted times of the packets around the one being decided
        self.recent: collections.deque = collections.deque()  # the same times, in decode order
        self.pending: collections.deque = collections.deque()  # (packet, time) demuxed, not yet sent
        self.slots: Dict[int, Tuple[int, int]] = {}  # PTS of a sent packet -> the wanted times it shows
        self.claimed: set = set()  # every PTS ever put in slots (a duplicate PTS shows nothing new)
        self.assigned = self.handed = 0
        self.skipping = False
        self.started = seek_to is None
        # From the start: the packets before the first keyframe cannot be decoded (nor counted).
        self.head = info.frames_before_keyframe if seek_to is None else 0
        self.sent_latest = -math.inf  # the latest frame time among the packets sent so far

    def __iter__(self) -> Iterator[Tuple[int, int, np.ndarray]]:
        if self.seek_to is not None:
            _seek(self.container, self.stream, self.info, self.seek_to)
        pending = self.pending
        for packet in demux(self.container, self.stream):
            if not self._admit(packet):
                continue
            pending.append((packet, self._window_time(packet)))
            if len(pending) > REORDER_WINDOW:
                yield from self._deliver(self._send(*pending.popleft()))
                if self.assigned == self.count:
                    break
        else:
            if not self.started:
                raise SeekLandedLate()  # no keyframe after the seek (a seek past a timestamp wrap)
            while pending and self.assigned < self.count:
                yield from self._deliver(self._send(*pending.popleft()))
        yield from self._deliver(self.context.decode(None))
        if self.handed < self.count:
            raise VideoDecodeError(
                self.container.name,
                f"the decoder returned no frame for {len(self.slots)} of the timestamps the container lists "
                "(decoded frames' timestamps do not match the packets')"
                if self.slots
                else "the video stream has no decodable frames",
            )

    def _admit(self, packet) -> bool:
        """Whether the packet goes to the decoder at all (not empty, not before the first keyframe)."""
        if packet.size == 0:
            return False
        if self.head:
            self.head -= 1
            return False
        if not self.started:
            # A seek may land on any packet (transport streams do): decoding starts at a keyframe.
            if not packet.is_keyframe:
                return False
            if packet.pts is None or (packet.pts - self.zero) * self.tick > self.targets[0]:
                raise SeekLandedLate()
            self.started = True
        return True

    def _window_time(self, packet) -> Optional[float]:
        """The packet's frame time (None for a packet that shows nothing), added to the window."""
        if packet.pts is None or packet.is_discard:
            return None
        time = (packet.pts - self.zero) * self.tick
        if time < self.sent_latest:
            # Decisions already made assumed no packet this far back in presentation order.
            raise VideoDecodeError(
                self.container.name,
                f"frames are stored more than {REORDER_WINDOW} packets away from their presentation order",
            )
        bisect.insort(self.window, time)
        self.recent.append(time)
        if len(self.recent) > 2 * REORDER_WINDOW + 2:
            old = self.recent.popleft()
            del self.window[bisect.bisect_left(self.window, old)]
        return time

    def _decide(self, time: float) -> Tuple[int, int]:
        """The wanted times (a range of indices) a frame at ``time`` shows."""
        position = bisect.bisect_right(self.window, time)
        successor = self.window[position] if position < len(self.window) else math.inf
        return bisect.bisect_left(self.targets, time), bisect.bisect_left(self.targets, successor)

    def _send(self, packet, time: Optional[float]):
        if time is not None:
            self.sent_latest = max(self.sent_latest, time)
        lo, hi = self._decide(time) if time is not None else (0, 0)
        wanted = hi > lo and packet.pts not in self.claimed
        if wanted:
            self.slots[packet.pts] = (lo, hi)
            self.claimed.add(packet.pts)
            self.assigned += hi - lo
        if self.may_skip and self.skipping == wanted:
            self.skipping = not wanted
            self.context.skip_frame = "NONREF" if self.skipping else "DEFAULT"
        return self.context.decode(packet)

    def _deliver(self, frames) -> Iterator[Tuple[int, int, np.ndarray]]:
        for frame in frames:
            span = self.slots.pop(frame.pts, None) if frame.pts is not None else None
            if span is not None:
                self.handed += span[1] - span[0]
                yield span[0], span[1], self.convert(frame)


def frames_by_clock(container, stream, info: VideoInfo, sorted_times, convert, *, seek_to: Optional[float]):
    """Decode forward and time each frame the decoder returns by :class:`FrameClock`: frame
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
        _seek(container, stream, info, seek_to)
    clock = FrameClock(container, stream)
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
                        raise SeekLandedLate()
                lo = 0  # times before the first frame show the first frame
            elif lo > held_lo:
                yield held_lo, lo, convert(held)
            held, held_lo = frame, lo
            if lo >= count:
                return

    for packet in demux(container, stream):
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
            raise SeekLandedLate()
        yield from place(context.decode(None))
    if held is None:
        raise VideoDecodeError(container.name, "the video stream has no decodable frames")
    if held_lo < count:
        yield held_lo, count, convert(held)


def frames_by_index(container, stream, info: VideoInfo, sorted_times, convert):
    """Streams without timestamps: the k-th decoded frame is shown from ``k / rate``."""
    targets = (sorted_times + TIME_EPS).tolist()
    count = len(targets)
    rate = info.rate
    previous, previous_lo, k = None, 0, 0
    for frame in (frame for packet in demux(container, stream) for frame in packet.decode()):
        lo = bisect.bisect_left(targets, k / rate)
        if previous is not None and lo > previous_lo:
            yield previous_lo, lo, convert(previous)
        if lo >= count:
            return
        previous, previous_lo, k = frame, lo, k + 1
    if previous is None:
        raise VideoDecodeError(container.name, "the video stream has no decodable frames")
    yield previous_lo, count, convert(previous)
