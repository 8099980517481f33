"""PyAV's side of every read and of the probe: opening a file as FFmpeg's tools do, demuxing it,
and the presentation time FFmpeg's player gives each decoded frame (:class:`FrameClock`)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterator, Optional, Tuple

import av

from .errors import PathLike, VideoDecodeError

__all__ = ["FrameClock", "demux", "open_video"]

_GEN_PTS = av.container.Flags.gen_pts.value
TS_DISCONT = av.format.Flags.ts_discont.value
NO_TIMESTAMPS = av.format.Flags.no_timestamps.value
# FFmpeg's command line (dts_delta_threshold): in formats whose timestamps may jump (MPEG-TS /
# PS), a DTS more than this far from the expected one, or this much behind the previous one,
# starts a new timeline, joined to the old one.
_DISCONTINUITY_SEC = 10.0
_DISCONTINUITY_BACK_SEC = 0.1


def open_video(path: PathLike) -> Tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """The file opened with PyAV and its first video stream, without made-up timestamps.

    Raises:
        VideoDecodeError: not a container, no video stream, or no decoder for its codec.
    """
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


def demux(container, stream) -> Iterator:
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


class FrameClock:
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
        self.joins_jumps = bool(container.format.flags & TS_DISCONT)
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
        time = self._best_effort(frame.pts, frame.dts)
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

    def _best_effort(self, pts: Optional[int], dts: Optional[int]) -> int:
        # libavcodec's guess_correct_pts: trust whichever of PTS and DTS went backwards less often.
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
            return pts
        if dts is not None:
            return dts
        return 0 if self.last_time is None else self.last_time + self.last_duration
