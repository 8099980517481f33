"""PyAV's decoded frames to RGB arrays, as FFmpeg's ``scale`` filter converts them: scaled in YUV,
then converted once to RGB at the output size; colour follows each frame's own tags (BT.601 /
BT.709, limited or full range), 10-bit and odd sizes included."""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Optional, Tuple

import av
import numpy as np

__all__ = ["rgb_converter"]

# Pixel formats swscale converts to RGB as FFmpeg's scale filter does (its unscaled 8-bit 4:2:0
# path, and the same filter at odd sizes); others (10-bit, 4:2:2, 4:4:4, ...) go through the
# scale filter itself, whose high-bit-depth path differs from a plain swscale call.
_SWSCALE_FORMATS = frozenset({"yuv420p", "yuvj420p"})


def rgb_converter(
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
