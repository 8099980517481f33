"""The torchcodec backend: torchcodec's exact-seek decoder, on the CPU or a CUDA device (NVDEC).

Its frame index is checked against the probe's (it is off on MPEG-4 Part 2 AVI files, which go to
PyAV). A GPU decoder that cannot be built, or that fails mid-read, sends that read and every later
one of the process to the CPU, logged once (:class:`TorchcodecBackend` keeps that state).
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Optional, Set

import numpy as np
import torch

from ...utils.packages import package_version
from ..resize import resize_frames
from .backends import BACKENDS, BackendReader, DecodingBackend, first_line, oriented
from .errors import CannotReadExactly, VideoDecodeError
from .video_info import TIME_EPS, VideoInfo

__all__ = ["PACKET_INDEX_REASON", "TorchcodecBackend", "torchcodec_unavailable_reason"]

logger = logging.getLogger("videotl.data")

# decord's and torchcodec's frame indexes time frames by their packets.
PACKET_INDEX_REASON = "its index times frames by their packets, whose timestamps here are missing or jump"

_TORCHCODEC_HELP = (
    "install FFmpeg's shared libraries (Debian/Ubuntu: apt-get install ffmpeg, or only "
    "libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8; "
    "conda: conda install ffmpeg); the decord and PyAV backends work without them"
)
_DECODE_ERRORS = (RuntimeError, IndexError, ValueError)


@functools.lru_cache(maxsize=1)
def torchcodec_unavailable_reason() -> Optional[str]:
    """None when the torchcodec backend can decode here, else one line saying what is missing."""
    try:
        import torchcodec  # noqa: F401
    except ImportError as error:
        return f"torchcodec is not installed ({error}); pip install torchcodec"
    except (OSError, RuntimeError) as error:
        # Installed, but built for another torch (or for CUDA libraries this torch lacks).
        return (
            f"torchcodec {package_version('torchcodec') or ''} cannot load its libraries with torch {torch.__version__} "
            f"({first_line(error)}): install the torchcodec release made for this torch"
        )
    try:
        from torchcodec._internally_replaced_utils import load_core_libraries
    except ImportError:
        return None
    try:
        load_core_libraries()
    except (RuntimeError, OSError):
        return f"torchcodec cannot load FFmpeg's shared libraries (libavcodec etc.): {_TORCHCODEC_HELP}"
    return None


class TorchcodecBackend(DecodingBackend):
    """torchcodec's decoder. ``cuda_available`` says whether a CUDA device may be asked for
    (a test stands in for a machine with CUDA); ``cpu_only_devices`` are the devices whose decoder
    failed, whose reads go to the CPU from then on."""

    def __init__(self, *, cuda_available: Callable[[], bool] = torch.cuda.is_available):
        self.cuda_available = cuda_available
        self.cpu_only_devices: Set[str] = set()
        self._warned: Set[str] = set()

    def unavailable_reason(self) -> Optional[str]:
        return torchcodec_unavailable_reason()

    def prepare(self) -> None:
        torchcodec_unavailable_reason()  # loads FFmpeg's libraries and torchcodec's operators

    def cannot_read_exactly(self, info: VideoInfo) -> Optional[str]:
        if not info.has_timestamps:
            return "the stream has no timestamps"
        if info.timing == "decoder":
            return PACKET_INDEX_REASON
        return None

    def open(self, path: str, info: VideoInfo, *, num_threads: int = 0, device="cpu", autorotate: bool = True):
        return TorchcodecReader(self, path, info, num_threads=num_threads, device=device, autorotate=autorotate)

    def device_for(self, device) -> str:
        """Where a read asked for on ``device`` decodes."""
        device = str(device or "cpu")
        if device == "cpu" or device in self.cpu_only_devices:
            return "cpu"
        if device.startswith("cuda") and not self.cuda_available():
            self.warn_once(f"torchcodec device {device!r} asked for but CUDA is not available: decoding on the CPU")
            return "cpu"
        return device

    def decoder(self, path: str, num_threads: int, device):
        """torchcodec's VideoDecoder (exact seek mode) on ``device``, or on the CPU where that fails."""
        reason = self.unavailable_reason()
        if reason:
            raise VideoDecodeError(path, reason)
        from torchcodec.decoders import VideoDecoder

        device = self.device_for(device)
        threads = max(0, int(num_threads))
        try:
            return VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=threads, device=device)
        except (RuntimeError, ValueError) as error:
            if str(device) != "cpu":
                why = f"torchcodec cannot decode on {device} ({first_line(error)}): decoding on the CPU"
                self.decode_on_cpu(device, why)
                return VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=threads, device="cpu")
            raise VideoDecodeError(path, f"torchcodec cannot open the file: {first_line(error)}") from None

    def decode_on_cpu(self, device: str, why: str) -> None:
        """Send ``device``'s reads to the CPU from now on, saying ``why`` once."""
        self.warn_once(why)
        self.cpu_only_devices.add(device)

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)


class TorchcodecReader(BackendReader):
    """An open torchcodec decoder whose frame index agrees with the container's."""

    def __init__(self, backend: TorchcodecBackend, path: str, info: VideoInfo, *, num_threads, device, autorotate):
        self.backend = backend
        self.path = path
        self.info = info
        self.num_threads = num_threads
        self.autorotate = autorotate
        self.decoder = backend.decoder(path, num_threads, device)
        # "cpu" too when the GPU decoder could not be built and this one decodes on the CPU.
        self.device = backend.device_for(device)
        meta = self.decoder.metadata
        begin = meta.begin_stream_seconds_from_content
        end = meta.end_stream_seconds_from_content
        frames = meta.num_frames_from_content
        if frames is not None and frames != info.num_frames:
            raise CannotReadExactly(f"it counts {frames} frames, the container holds {info.num_frames}")
        if begin is None or end is None or abs(begin - info.start_time) > 1e-3:
            raise CannotReadExactly(f"its first frame is at {begin} s, the container's at {info.start_time:.6g} s")
        self.begin = float(begin)
        self.last_frame = info.frame_time_marks[-1]
        # torchcodec refuses times at or past its end of stream.
        self.limit = float(end) - 1e-6

    def frames_at(self, sorted_times: np.ndarray, out_hw) -> torch.Tensor:
        wanted = np.minimum(self.begin + sorted_times + TIME_EPS, self.limit)
        try:
            batch = self.decoder.get_frames_played_at(wanted.tolist())
        except _DECODE_ERRORS as error:
            if self.device == "cpu":
                raise VideoDecodeError(self.path, f"torchcodec cannot decode frames: {first_line(error)}") from None
            batch = self._read_on_cpu(wanted, error)
        shown = batch.pts_seconds.cpu().numpy() - self.begin
        # The frame returned for t must start at or before t (torchcodec's index can be off), and
        # be the last frame for times past it.
        wrong = (shown > sorted_times + 2 * TIME_EPS) | (
            (sorted_times >= self.last_frame) & (shown < self.last_frame - 2 * TIME_EPS)
        )
        if np.any(wrong):
            k = int(np.argmax(wrong))
            raise CannotReadExactly(f"it returns the frame at {shown[k]:.6g} s for time {sorted_times[k]:.6g} s")
        frames = oriented(batch.data.permute(0, 2, 3, 1), self.info, self.autorotate)  # N x H x W x C
        if out_hw is not None:
            frames = resize_frames(frames, out_hw)
        return frames

    def _read_on_cpu(self, wanted: np.ndarray, error: BaseException):
        # A GPU decoder that fails mid-stream says nothing about the file: read it on the CPU
        # before calling it broken, and keep later reads there too.
        why = f"torchcodec cannot decode on {self.device} ({first_line(error)}): decoding on the CPU from now on"
        self.backend.decode_on_cpu(self.device, why)
        self.device = "cpu"
        self.decoder = self.backend.decoder(self.path, self.num_threads, "cpu")
        try:
            return self.decoder.get_frames_played_at(wanted.tolist())
        except _DECODE_ERRORS as cpu_error:
            raise VideoDecodeError(self.path, f"torchcodec cannot decode frames: {first_line(cpu_error)}") from None


BACKENDS.register("torchcodec", TorchcodecBackend())
