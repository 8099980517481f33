"""Where videotl's decord reader spends its time on random clips (``tools/benchmark.py data
--decord-profile-clips N``).

Each clip is read the way :class:`~videotl.data.decoding.decord_backend.DecordReader` reads it,
stage by stage, with the CPU time of this process (all its threads) around each stage: opening
decord's ``VideoReader``, reading and checking its frame index, ``get_batch`` of the frames on
screen (seeks, decode, colour conversion, decord's copy into the batch), the copy into a torch
tensor, the resize to short side 256 and closing the reader. ``get_batch`` is split with two
PyAV references on the same frames: decoding every frame from the keyframe before the clip to
its last frame on one thread without conversion (what any reader that decodes every frame must
do) and converting the wanted frames to RGB (swscale, as decord's filter graph does); what is
left is decord's own (its seeks, its worker thread, its copies). Beside them: ``get_batch``
with the thread count FFmpeg picks (``num_threads=0``), decord scaling to 256 itself
(``width``/``height``), the CPU an open reader burns while idle, and torchcodec's exact reader
(open with its file scan, ``get_frames_played_at``) on the same clips.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List

import av
import numpy as np
import torch

from videotl.data.resize import output_size, resize_frames

__all__ = ["profile_decord", "profile_rows"]

# (key, what the row measures): the stages of videotl's decord reader, then the references.
STAGES = (
    ("open", "open `decord.VideoReader` (num_threads=1)"),
    ("index", "read its frame index, check it against the probe"),
    ("get_batch", "`get_batch` of the frames on screen (seek, decode, RGB, decord's copy)"),
    ("to_torch", "`asnumpy` + `torch.from_numpy` (second copy)"),
    ("resize", "resize to short side 256 (torchvision, antialiased)"),
    ("close", "close the reader (its worker thread)"),
)
REFERENCES = (
    ("ref_decode", "PyAV: decode keyframe..last frame, every frame, 1 thread, no RGB"),
    ("ref_rgb", "PyAV: convert the wanted frames to RGB (swscale)"),
    ("get_batch_threads0", "`get_batch` with num_threads=0 (FFmpeg picks; open included)"),
    ("get_batch_scaled", "`get_batch` scaled by decord to 256 (width/height; open included)"),
    ("idle_per_s", "an open reader, idle, per second"),
    ("torchcodec_open", "torchcodec exact: open (scans the file)"),
    ("torchcodec_frames", "torchcodec exact: `get_frames_played_at`"),
)


def _cpu(fn: Callable[[], object]):
    start = time.process_time()
    value = fn()
    return time.process_time() - start, value


def _decord_stages(path: str, info, times: np.ndarray, out_hw) -> Dict[str, float]:
    """One clip through the decord reader's stages; CPU seconds of each."""
    import decord

    from videotl.data.decoding.backends import frames_on_screen
    from videotl.data.decoding.decord_backend import DecordReader

    spent = {}
    spent["open"], reader = _cpu(lambda: decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1))
    del reader  # the index stage opens its own: DecordReader checks the index as it opens
    both, ours = _cpu(lambda: DecordReader(path, info, num_threads=1, autorotate=True))
    spent["index"] = max(0.0, both - spent["open"])
    unique = np.unique(ours.order[frames_on_screen(ours.sorted_stamps[: ours.usable], times)])
    spent["get_batch"], batch = _cpu(lambda: ours.reader.get_batch(unique.tolist()))
    spent["to_torch"], frames = _cpu(lambda: torch.from_numpy(batch.asnumpy()))
    spent["resize"], _ = _cpu(lambda: resize_frames(frames, out_hw))
    spent["close"], _ = _cpu(ours.close)
    spent["wanted"] = len(unique)
    return spent


def _pyav_references(path: str, first: int, wanted: set, last: int) -> Dict[str, float]:
    """Decode (no conversion) from the keyframe before frame ``first`` through frame ``last``;
    convert the ``wanted`` frames to RGB, timed apart."""
    decode = convert = 0.0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate, tick = float(stream.average_rate), float(stream.time_base)
        start = time.process_time()
        container.seek(int(first / rate / tick), stream=stream, backward=True)
        for frame in container.decode(stream):
            index = int(round(frame.pts * tick * rate))
            if index in wanted:
                spent, _ = _cpu(lambda f=frame: f.to_ndarray(format="rgb24"))
                convert += spent
            if index >= last:
                break
        decode = time.process_time() - start - convert
    return {"ref_decode": decode, "ref_rgb": convert}


def _variants(path: str, unique: List[int], out_hw) -> Dict[str, float]:
    import decord

    def read(**kwargs):
        reader = decord.VideoReader(path, ctx=decord.cpu(0), **kwargs)
        reader.get_batch(unique).asnumpy()

    spent = {}
    spent["get_batch_threads0"], _ = _cpu(lambda: read(num_threads=0))
    spent["get_batch_scaled"], _ = _cpu(lambda: read(num_threads=1, height=out_hw[0], width=out_hw[1]))
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    reader.get_batch(unique[:1]).asnumpy()
    wall = time.perf_counter()
    spent["idle_per_s"], _ = _cpu(lambda: time.sleep(0.5))
    spent["idle_per_s"] /= time.perf_counter() - wall
    del reader
    return spent


def _torchcodec(path: str, times: np.ndarray) -> Dict[str, float]:
    from torchcodec.decoders import VideoDecoder

    spent = {}
    spent["torchcodec_open"], decoder = _cpu(lambda: VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=1))
    meta = decoder.metadata
    asked = [min(meta.begin_stream_seconds + t, meta.end_stream_seconds - 1e-6) for t in times]
    spent["torchcodec_frames"], _ = _cpu(lambda: decoder.get_frames_played_at(asked))
    return spent


def profile_decord(video: str, *, clips: int, num_frames: int, fps: float, seed: int) -> Dict:
    """Median CPU milliseconds per clip of each stage and reference (keys of :data:`STAGES` and
    :data:`REFERENCES`), over ``clips`` random clips after one untimed clip."""
    from videotl.data import probe
    from videotl.data.decoding.decord_backend import load_torchcodec_before_decord
    from videotl.data.sampling import clip_times, random_clip_start

    load_torchcodec_before_decord()
    info = probe(video)
    out_hw = output_size(info.height, info.width, 256)
    generator = torch.Generator().manual_seed(seed)
    samples: Dict[str, List[float]] = {}
    for k in range(clips + 1):
        start = random_clip_start(info.duration, num_frames=num_frames, fps=fps, generator=generator)
        times = clip_times(start, num_frames=num_frames, fps=fps)
        spent = _decord_stages(video, info, times, out_hw)
        # The benchmark video has a constant frame rate: index = floor(time * rate).
        unique = sorted({min(int(t * info.fps + 1e-6), info.num_frames - 1) for t in times})
        spent.update(_pyav_references(video, unique[0], set(unique), unique[-1]))
        spent.update(_variants(video, unique, out_hw))
        spent.update(_torchcodec(video, times))
        if k:  # the first clip warms the libraries up
            for key, value in spent.items():
                samples.setdefault(key, []).append(value)
    medians = {key: statistics.median(values) * (1 if key == "wanted" else 1000.0) for key, values in samples.items()}
    medians["idle_per_s"] /= 1000.0  # a fraction of a core, not milliseconds
    return {"clips": clips, "median_ms": medians}


def profile_rows(profile: Dict) -> List[Dict]:
    """Rows of the ``decord_profile`` table: each stage with its share of the reader's total
    (source size: every stage but the resize), then the references."""
    ms = profile["median_ms"]
    total = sum(ms[key] for key, _ in STAGES if key != "resize")
    rows = [
        {"table": "decord_profile", "stage": what, "cpu_ms": ms[key], "share": ms[key] / total} for key, what in STAGES
    ]
    rows.append({"table": "decord_profile", "stage": "videotl decord reader, source size (sum)", "cpu_ms": total})
    for key, what in REFERENCES:
        if key == "idle_per_s":
            rows.append({"table": "decord_profile", "stage": what, "cpu_ms": None, "cores": ms[key]})
        else:
            rows.append({"table": "decord_profile", "stage": what, "cpu_ms": ms[key]})
    return rows
