"""The one video writer: frames -> an encoded file (H.264 MP4 by default), written atomically.

The synthetic dataset generator, the benchmarks' test videos and the test fixtures all encode
through :func:`write_video`, so every file videotl writes follows the same timestamp rules: frame
``i`` has PTS ``pts[i]`` in units of ``time_base`` (default: PTS ``i`` in units of ``1 / rate``, so a
30000/1001 fps stream really has that rate, not 29.97).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Union

import av
import numpy as np

from ..utils.fileio import atomic_path

__all__ = ["write_video"]

Rate = Union[int, float, Fraction]
# File suffixes whose muxer has another name.
_MUXERS = {"mkv": "matroska", "264": "h264", "ts": "mpegts", "mpg": "mpeg", "m2v": "mpeg2video"}


def write_video(
    path: Union[str, os.PathLike],
    frames: Iterable[np.ndarray],
    *,
    rate: Rate,
    width: Optional[int] = None,
    height: Optional[int] = None,
    input_format: str = "rgb24",
    codec: str = "libx264",
    container_format: Optional[str] = None,
    pts: Optional[Sequence[int]] = None,
    time_base: Optional[Fraction] = None,
    options: Optional[Dict[str, str]] = None,
    container_options: Optional[Dict[str, str]] = None,
    pix_fmt: str = "yuv420p",
    storage_order: Optional[Sequence[int]] = None,
) -> Path:
    """Encode ``frames`` into ``path`` (created atomically: a crash leaves no partial file).

    Args:
        frames: ``height x width x 3`` uint8 RGB arrays (``input_format="rgb24"``), or planar
            ``yuv420p`` arrays of ``height * 3 / 2 x width`` (``input_format="yuv420p"``), which
            skip the colour conversion.
        rate: the stream's frame rate (an exact ``Fraction`` for 29.97 fps).
        width / height: the picture size; default: the first frame's.
        codec: an FFmpeg encoder (``libx264``, ``mpeg4``, ...); the stream is yuv420p.
        container_format: the muxer (``mp4``, ``avi``, ...); default: from the file suffix.
        pts / time_base: per-frame presentation times in ``time_base`` units (default: frame
            ``i`` at ``i / rate``). Variable frame rates come from ``pts``.
        options: encoder options (``{"crf": "23", "g": "12", "bf": "2", "preset": "veryfast"}``).
        container_options: muxer options (``{"movflags": "faststart"}``).
        pix_fmt: the stream's pixel format (``yuvj420p`` for ``mjpeg``).
        storage_order: intra-only codecs (one packet per frame, e.g. ``mjpeg``): store frame
            ``storage_order[j]``'s packet ``j``-th in the file, keeping its PTS, so that storage
            order differs from presentation order (as in files some muxers write). All packets
            are held in memory until the end.

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    rate = Fraction(rate).limit_denominator(1_000_000) if isinstance(rate, float) else Fraction(rate)
    time_base = time_base or Fraction(1) / rate
    suffix = path.suffix.lstrip(".").lower()
    fmt = container_format or _MUXERS.get(suffix, suffix) or None
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError(f"{path}: no frames to encode")
    if input_format == "yuv420p":
        frame_height, frame_width = first.shape[0] * 2 // 3, first.shape[1]
    elif input_format == "rgb24":
        frame_height, frame_width = first.shape[:2]
    else:
        raise ValueError(f"input_format must be 'rgb24' or 'yuv420p', got {input_format!r}")
    with atomic_path(path) as tmp:
        # The temporary name does not end in the suffix: name the muxer explicitly.
        with av.open(str(tmp), mode="w", format=fmt, options=container_options or {}) as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = width or frame_width, height or frame_height
            stream.pix_fmt = pix_fmt
            stream.codec_context.time_base = time_base
            if options:
                stream.options = dict(options)
            held = []
            for index, array in enumerate(_chain(first, iterator)):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=input_format)
                frame.pts = int(pts[index]) if pts is not None else round(index / (rate * time_base))
                frame.time_base = time_base
                packets = stream.encode(frame)
                if storage_order is None:
                    container.mux(packets)
                else:
                    held.extend(packets)
            if storage_order is None:
                container.mux(stream.encode(None))
            else:
                held.extend(stream.encode(None))
                _mux_in_order(container, path, held, storage_order)
    return path


def _mux_in_order(container, path, packets, storage_order) -> None:
    if sorted(storage_order) != list(range(len(packets))):
        raise ValueError(f"{path}: storage_order must be a permutation of the {len(packets)} packets")
    ordered = [packets[i] for i in storage_order]
    # Decode timestamps must rise in storage order and stay at or below each PTS: the smallest
    # PTS still to come, less a step, satisfies both.
    remaining = [p.pts for p in ordered]
    for j in range(len(remaining) - 2, -1, -1):
        remaining[j] = min(remaining[j], remaining[j + 1])
    for j, packet in enumerate(ordered):
        packet.dts = remaining[j] - len(ordered) + j
        container.mux(packet)


def _chain(first, rest):
    yield first
    yield from rest
