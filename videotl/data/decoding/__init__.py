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
:class:`~videotl.data.decoding.container.FrameClock`): where every packet carries a PTS the frames take those (``timing =
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

from ..resize import output_size
from .backends import BACKENDS, DEFAULT_BACKEND, BackendReader, DecodingBackend, frames_on_screen, oriented
from .decord_backend import DecordBackend
from .errors import CannotReadExactly, DecodeTimeout, VideoDecodeError
from .probing import probe, remember_probe
from .pyav_backend import PyAVBackend
from .reading import decoder_notes, iter_segments, read_clip, read_frames_at, read_segments
from .timeout import call_with_timeout
from .torchcodec_backend import TorchcodecBackend, torchcodec_unavailable_reason
from .video_info import TIME_EPS, VideoInfo, file_key

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "TIME_EPS",
    "BackendReader",
    "CannotReadExactly",
    "DecodeTimeout",
    "DecodingBackend",
    "DecordBackend",
    "PyAVBackend",
    "TorchcodecBackend",
    "VideoDecodeError",
    "VideoInfo",
    "call_with_timeout",
    "decoder_notes",
    "file_key",
    "frames_on_screen",
    "iter_segments",
    "oriented",
    "output_size",
    "probe",
    "read_clip",
    "read_frames_at",
    "read_segments",
    "remember_probe",
    "torchcodec_unavailable_reason",
]
