"""The decord backend: decord's frame index, checked against the probe's, and its ``get_batch``.

decord reports garbage timestamps for MPEG-4 Part 2 AVI files and edit lists, crashes on huge
ones, and returns later frames than its index says on open GOPs and transport streams: those files
are read with PyAV (:meth:`DecordBackend.cannot_read_exactly`). It never touches
``decord.bridge``: a global bridge change (as pytorchvideo does) breaks ``.asnumpy()`` for every
other caller in the process. Whatever bridge is active, the reader accepts what ``get_batch``
returns.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np
import torch

from ..resize import resize_frames
from .backends import BACKENDS, BackendReader, DecodingBackend, first_line, frames_on_screen, oriented
from .errors import CannotReadExactly, VideoDecodeError
from .probing import index_disagreement
from .torchcodec_backend import PACKET_INDEX_REASON, torchcodec_unavailable_reason
from .video_info import VideoInfo

__all__ = ["DecordBackend", "load_torchcodec_before_decord"]

# decord may list a few frames past the last decodable one (it over-reports len()); a failure this close
# to the end is retried without them instead of failing the whole clip.
_DECORD_TAIL_RETRIES = 4
# decord reports float32 seconds: past this start time they no longer separate frames (and far
# past it decord aborts the process), so such files go to PyAV without asking decord.
_DECORD_MAX_START_SEC = 1e5


def load_torchcodec_before_decord() -> None:
    """decord loads its bundled FFmpeg with its symbols global (libdav1d's among them); the
    system libavcodec that torchcodec loads afterwards then binds to that libdav1d and crashes
    the process on the first AV1 frame. Loaded first, torchcodec's libraries bind to their own."""
    if "decord" not in sys.modules:
        torchcodec_unavailable_reason()


class DecordBackend(DecodingBackend):
    def cannot_read_exactly(self, info: VideoInfo) -> Optional[str]:
        if not info.has_timestamps:
            return "the stream has no timestamps"
        if abs(info.start_time) > _DECORD_MAX_START_SEC:
            return f"its first timestamp ({info.start_time:.3g} s) is beyond decord's float32 seconds"
        if info.hidden_frames:
            return "decord ignores the edit list that hides frames"
        if info.stored_out_of_order and not info.decoder_reorders:
            return "frames stored out of presentation order, which decord's index does not follow"
        if info.timing == "decoder":
            return PACKET_INDEX_REASON
        # Both checked against FFmpeg's own frame list: decord's index agrees, its frames do not.
        if info.leading_frames:
            return "an open GOP (frames shown before the keyframe they follow), where decord returns later frames"
        if info.container == "mpegts":
            return "an MPEG transport stream, where decord returns later frames"
        return None

    def prepare(self) -> None:
        load_torchcodec_before_decord()  # FFmpeg's log routing imports decord

    def open(self, path: str, info: VideoInfo, *, num_threads: int = 0, device="cpu", autorotate: bool = True):
        return DecordReader(path, info, num_threads=num_threads, autorotate=autorotate)


class DecordReader(BackendReader):
    """An open decord reader whose frame index agrees with the container's."""

    def __init__(self, path: str, info: VideoInfo, *, num_threads: int, autorotate: bool):
        load_torchcodec_before_decord()
        import decord

        self.path = path
        self.info = info
        self.autorotate = autorotate
        self._decord = decord
        try:
            # decord's own scaler fails on some output sizes (a buffer-size check on widths that
            # are not padded as it expects), so frames come at source size and are resized below.
            self.reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
        except (decord.DECORDError, RuntimeError) as error:
            # decord reports a file it cannot open as a bare RuntimeError("Error reading ...").
            raise VideoDecodeError(path, f"decord cannot open the file: {first_line(error)}") from None
        self.count = len(self.reader)
        if self.count == 0:
            raise VideoDecodeError(path, "the video stream has no frames")
        self._check_index()

    def _check_index(self) -> None:
        decord, info, count = self._decord, self.info, self.count
        try:
            stamps = self.reader.get_frame_timestamp(np.arange(count))[:, 0].astype(np.float64)
        except decord.DECORDError as error:
            raise VideoDecodeError(self.path, f"decord cannot read frame timestamps: {first_line(error)}") from None
        # decord lists frames in decode order for some files; present them in PTS order.
        self.order = np.argsort(stamps, kind="stable")
        self.sorted_stamps = stamps[self.order] - stamps.min()
        # decord may list a few phantom frames past the end (its issue #373).
        near = 0 <= count - info.num_frames <= _DECORD_TAIL_RETRIES
        self.usable = min(count, info.num_frames) if near else count
        # float32 seconds: about 1e-7 relative error, plus the usual timestamp slack.
        tolerance = 1e-3 + 2e-7 * abs(float(self.sorted_stamps[-1]) + info.start_time)
        disagreement = index_disagreement(info, self.sorted_stamps[: self.usable], tolerance=tolerance)
        if disagreement:
            raise CannotReadExactly(f"its frame index disagrees with the container's: {disagreement}")

    def frames_at(self, sorted_times: np.ndarray, out_hw) -> torch.Tensor:
        decord = self._decord
        for _ in range(_DECORD_TAIL_RETRIES + 1):
            positions = frames_on_screen(self.sorted_stamps[: self.usable], sorted_times)
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
                raise VideoDecodeError(self.path, f"decord cannot decode frames: {first_line(error)}") from None
            frames = batch if isinstance(batch, torch.Tensor) else _as_tensor(batch, decord)
            frames = oriented(frames, self.info, self.autorotate)
            if out_hw is not None:
                frames = resize_frames(frames, out_hw)
            return _expand(frames, inverse.reshape(-1))
        raise VideoDecodeError(self.path, f"decord cannot decode the last frames (lists {self.count}, fewer decodable)")

    def close(self) -> None:
        self.reader = None


def _as_tensor(batch, decord) -> torch.Tensor:
    """decord's batch as a tensor over its own buffer (DLPack): ``asnumpy`` would copy every frame
    once more (a tenth of the reader's CPU time on 480x360 clips)."""
    if isinstance(batch, decord.nd.NDArray):
        return torch.utils.dlpack.from_dlpack(batch.to_dlpack())
    return torch.from_numpy(batch.asnumpy())  # another bridge's array (MXNet's, say)


def _expand(frames: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    if positions.size == frames.shape[0] and np.array_equal(positions, np.arange(positions.size)):
        return frames
    return frames[torch.from_numpy(positions)]


BACKENDS.register("decord", DecordBackend())
