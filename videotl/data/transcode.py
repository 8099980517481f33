"""Re-encode a dataset's videos for fast training reads (``datasets/transcode.py``).

Each output is H.264 at the sampling rate (``fps``): frame ``k`` is the source frame on screen at
``k / fps``, shown from ``k / fps`` (PTS ``k`` in units of ``1 / fps``), scaled to a short side,
with a keyframe every ``gop`` frames. Clip starts lie on the ``1 / fps`` grid
(:mod:`videotl.data.sampling`), so a clip read from an output holds the same source frames as the
same clip read from the original: annotations need no change. Fewer frames per second, fewer
pixels and short GOPs (a seek decodes at most ``gop`` frames) make reads cheaper.

Outputs are written under a temporary name, checked (duration against the source's) and only then
renamed into place, so an interrupted run leaves nothing that counts as done; a rerun skips the
outputs already there and checked.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .decoding import VideoDecodeError, iter_segments, output_size, probe
from .encoding import write_video
from .sampling import num_target_frames

__all__ = ["VIDEO_SUFFIXES", "TranscodeResult", "find_videos", "output_path", "transcode_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")
PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class TranscodeResult:
    """What happened to one source: ``status`` is ``"done"``, ``"skipped"`` (already converted)
    or ``"failed"`` (``reason`` says why)."""

    source: str
    output: str
    status: str
    reason: str = ""
    source_duration: float = 0.0
    output_duration: float = 0.0


def find_videos(root: PathLike) -> List[Path]:
    """Every video file under ``root`` (by suffix, hidden files skipped), sorted."""
    root = Path(root)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES:
                found.append(Path(folder) / name)
    return sorted(found)


def output_path(source: PathLike, src_root: PathLike, dst_root: PathLike) -> Path:
    """``dst_root / <source relative to src_root>``, with the suffix ``.mp4``."""
    relative = Path(source).relative_to(src_root)
    return Path(dst_root) / relative.with_suffix(".mp4")


def _even(value: int) -> int:
    # H.264 in yuv420p needs even sides.
    return max(2, value + (value % 2))


def _duration_mismatch(source_duration: float, output_duration: float, fps: float) -> Optional[str]:
    # The output covers the source to the next 1 / fps step.
    if abs(output_duration - source_duration) > 1.0 / fps + 1e-3:
        return f"output lasts {output_duration:.3f} s, the source {source_duration:.3f} s"
    return None


def transcode_video(
    source: PathLike,
    output: PathLike,
    *,
    fps: float = 12.0,
    short_side: int = 320,
    gop: int = 12,
    crf: int = 23,
    preset: str = "veryfast",
    threads: int = 1,
) -> TranscodeResult:
    """Convert one video (see the module docstring); never raises for a bad source.

    Args:
        fps: output frame rate = the sampling rate of the clips read from it.
        short_side: output short side in pixels (0 keeps the source size); never upscales.
        gop: frames between keyframes.
        crf / preset: x264's quality and speed settings.
        threads: x264 threads (1 when several files convert in parallel).
    """
    source, output = Path(source), Path(output)
    try:
        info = probe(source)
    except VideoDecodeError as error:
        return TranscodeResult(str(source), str(output), "failed", error.reason)
    if output.exists():
        try:
            mismatch = _duration_mismatch(info.duration, probe(output).duration, fps)
        except VideoDecodeError as error:
            mismatch = error.reason
        if mismatch is None:
            return TranscodeResult(str(source), str(output), "skipped", "", info.duration, probe(output).duration)
    height, width = info.height, info.width
    if short_side and min(height, width) > short_side:
        height, width = output_size(height, width, short_side)
    out_hw = (_even(height), _even(width))
    count = num_target_frames(info.duration, fps=fps)
    rate = Fraction(fps).limit_denominator(1001)
    partial = output.with_name(f".{output.name}.partial.mp4")
    try:
        write_video(
            partial,
            _frames(str(source), count, fps, out_hw),
            rate=rate,
            options={"crf": str(crf), "g": str(gop), "preset": preset, "threads": str(threads)},
            container_options={"movflags": "faststart"},
        )
        written = probe(partial).duration
        mismatch = _duration_mismatch(info.duration, written, fps)
        if mismatch:
            raise VideoDecodeError(partial, mismatch)
        os.replace(partial, output)
    except VideoDecodeError as error:
        return TranscodeResult(str(source), str(output), "failed", error.reason, info.duration)
    except (OSError, ValueError) as error:
        return TranscodeResult(str(source), str(output), "failed", f"cannot write the output: {error}", info.duration)
    finally:
        if partial.exists():
            partial.unlink()
    return TranscodeResult(str(source), str(output), "done", "", info.duration, written)


def _frames(path: str, count: int, fps: float, out_hw: Tuple[int, int]) -> Iterator[np.ndarray]:
    """The ``count`` frames on screen at ``k / fps``, read with PyAV in 64-frame segments (the
    last segment's padding is not written)."""
    segments = iter_segments(path, num_frames=64, fps=fps, backend="pyav", size=out_hw, num_threads=1)
    frames = (frame for _, segment in segments for frame in segment.numpy())
    yield from itertools.islice(frames, count)


def transcode_job(job: Tuple[str, str, Dict]) -> TranscodeResult:
    """``(source, output, options)`` -> :func:`transcode_video` (for a process pool)."""
    source, output, options = job
    return transcode_video(source, output, **options)


def plan(src_root: PathLike, dst_root: PathLike, sources: Optional[Sequence[PathLike]] = None) -> List[Tuple[str, str]]:
    """(source, output) of every video under ``src_root`` (or of ``sources``)."""
    sources = find_videos(src_root) if sources is None else [Path(s) for s in sources]
    pairs = [(str(s), str(output_path(s, src_root, dst_root))) for s in sources]
    outputs: Dict[str, str] = {}
    for source, output in pairs:
        if output in outputs:
            raise ValueError(f"{source} and {outputs[output]} would both be written to {output}")
        outputs[output] = source
    return pairs
