"""What :func:`~videotl.data.decoding.probe` measures about a video, and what it is keyed by."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Tuple

from .errors import PathLike, VideoDecodeError

__all__ = ["TIME_EPS", "VideoInfo", "file_key"]

# A frame counts as on screen at time t when its PTS <= t + TIME_EPS: decord reports float32
# timestamps (about 2 microseconds of error at 30 s), and k / fps in float64 may fall a hair short
# of a PTS it equals exactly. 0.1 ms is far below any frame interval.
TIME_EPS = 1e-4


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`~videotl.data.decoding.probe` measured about a video.

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
        timing: where frame times come from (see :mod:`videotl.data.decoding`): ``"pts"`` (every
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


def file_key(path: PathLike) -> Tuple[str, int, int]:
    """``(absolute path, size, mtime_ns)``: what probe results are keyed by.

    Raises:
        VideoDecodeError: missing, empty or not a regular file.
    """
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
