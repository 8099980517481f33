"""Data path throughput against the best exact peers, long-video memory, transcoding and indexing
(``tools/benchmark.py data``).

1. **Peers** (random 64-frame clips at 12 fps, whole-video segments, clips resized to short side
   256): videotl's readers (each backend) against the bare readers people use for the same
   frames: torchcodec's exact ``VideoDecoder.get_frames_played_at`` (+ torchvision's resize), the
   decord index API (``get_batch`` of the frames a constant frame rate puts at those times) and a
   plain PyAV seek-and-decode loop. All readers take turns clip by clip (the order rotates each
   clip), so load from other work on a shared machine hits them alike; rates are reported per
   wall second and per CPU second of this process (all its threads), the CPU figure being the one
   to trust on a shared machine. One decoder thread everywhere, one torch thread.
2. **Long videos**: scoring a 30 s, a 10 min and a 60 min video in segments mode (the dataset and
   loader ``tools/predict.py`` uses, short side 256), each in a fresh process: peak RSS and speed
   next to one sequential decode of the same file.
3. **Transcoded**: random clips from the benchmark video and from its ``datasets/transcode.py``
   output (12 fps, short side 320, keyframe every 12 frames), clips per CPU second.
4. **Index**: constructing a segments-mode dataset over N small videos with no probe manifest
   (cold) and with the manifest the cold run wrote (warm), each in a fresh process.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import av
import numpy as np
import torch

from videotl.data.encoding import write_video
from videotl.data.resize import output_size, resize_frames
from videotl_tools._cli import non_negative_int, positive_float, positive_int
from videotl_tools.harness.decord_profile import profile_decord, profile_rows
from videotl_tools.harness.reports import Column, machine_info, markdown_table, table, yes_no

__all__ = ["make_benchmark_video", "make_long_video", "run_data_benchmark", "data_rows", "render_markdown"]

TARGET = 1.2  # the peer targets: videotl at least this many times torchcodec's rate
BACKENDS = ("decord", "pyav", "torchcodec")


def make_benchmark_video(
    path, *, seconds: float = 30.0, width: int = 480, height: int = 360, fps: int = 30, gop: int = 250, seed: int = 0
) -> Path:
    """Write an H.264 (x264 ``veryfast``: keyframe every ``gop`` frames, B-frames) test video.

    The picture is a slowly scrolling low-frequency texture with moving blocks and mild noise,
    so the bitrate is in the range of Charades' 480p files rather than of pure noise.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 8 + 8, width // 8 + 8, 3), dtype=np.uint8)
    texture = texture.repeat(8, axis=0).repeat(8, axis=1)

    def frames():
        for i in range(int(round(seconds * fps))):
            dy, dx = (i // 4) % 64, (i // 2) % 64
            image = texture[dy : dy + height, dx : dx + width].copy()
            for k in range(4):
                top = int((height - 60) * (0.5 + 0.5 * math.sin(i / (20 + 7 * k) + k)))
                left = int((width - 80) * (0.5 + 0.5 * math.cos(i / (25 + 5 * k) + 2 * k)))
                image[top : top + 60, left : left + 80] = (60 * k + 30, 200 - 40 * k, 90 + 30 * k)
            noise = rng.integers(0, 12, image.shape, dtype=np.uint8)
            yield np.clip(image.astype(np.int16) + noise - 6, 0, 255).astype(np.uint8)

    return write_video(path, frames(), rate=fps, options={"preset": "veryfast", "crf": "23", "g": str(gop)})


def make_long_video(path, *, seconds: float, width: int = 480, height: int = 360, fps: int = 30) -> Path:
    """A long H.264 video written quickly (x264 ``superfast``, B-frames, keyframe every 250
    frames): 64 precomputed YUV pictures of a scrolling texture, in a loop."""
    path = Path(path)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height // 8 + 8, width // 8 + 8), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    pictures = []
    for i in range(64):
        luma = texture[(i // 2) % 64 : (i // 2) % 64 + height, i % 64 : i % 64 + width]
        chroma = np.full((height // 2, width // 2), 128, np.uint8)
        tint = np.full((height // 2, width // 2), 96 + 2 * i, np.uint8)
        pictures.append(np.concatenate([luma, chroma.reshape(height // 4, width), tint.reshape(height // 4, width)]))
    count = int(round(seconds * fps))
    return write_video(
        path,
        (pictures[i % 64] for i in range(count)),
        rate=fps,
        input_format="yuv420p",
        options={"preset": "superfast", "crf": "28", "g": "250"},
    )


# ---------------------------------------------------------------------------------- the readers


class Peers:
    """Bare readers of one file, each asked for the frames on screen at given times."""

    def __init__(self, path: str):
        from videotl.data import probe

        self.path = path
        info = probe(path)
        self.rate, self.count = info.fps, info.num_frames
        self.height, self.width = info.height, info.width

    def _hw(self, size):
        return output_size(self.height, self.width, size)

    def _cfr(self, times) -> np.ndarray:
        # The decord and PyAV loops may assume a constant frame rate: the benchmark videos have one.
        return np.minimum(np.floor(np.asarray(times) * self.rate + 1e-6).astype(np.int64), self.count - 1)

    def torchcodec(self, times, size=None):
        from torchcodec.decoders import VideoDecoder

        decoder = VideoDecoder(self.path, seek_mode="exact", num_ffmpeg_threads=1)
        meta = decoder.metadata
        begin, end = meta.begin_stream_seconds, meta.end_stream_seconds
        # torchcodec refuses times at or past the end of the stream.
        frames = decoder.get_frames_played_at([min(begin + t, end - 1e-6) for t in times]).data
        return resize_frames(frames.permute(0, 2, 3, 1), self._hw(size)) if size else frames

    def decord(self, times, size=None):
        import decord

        reader = decord.VideoReader(self.path, num_threads=1)
        unique, inverse = np.unique(self._cfr(times), return_inverse=True)
        frames = torch.from_numpy(reader.get_batch(unique.tolist()).asnumpy())[torch.from_numpy(inverse)]
        return resize_frames(frames, self._hw(size)) if size else frames

    def pyav(self, times, size=None):
        wanted = self._cfr(times)
        needed, last = set(wanted.tolist()), int(wanted.max())
        height, width = self._hw(size) if size else (None, None)
        container = av.open(self.path)
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        tick = float(stream.time_base)
        if wanted.min() > 0:
            container.seek(int(wanted.min() / self.rate / stream.time_base), stream=stream, backward=True)
        frames = {}
        for frame in container.decode(stream):
            index = int(round(frame.pts * tick * self.rate))
            if index in needed:
                frames[index] = frame.to_ndarray(format="rgb24", width=width, height=height)
            if index >= last:
                break
        container.close()
        return np.stack([frames[i] for i in wanted.tolist()])


def _ours(backend: str, *, segments: bool = False) -> Callable:
    from videotl.data import read_frames_at
    from videotl.data.decoding import iter_segments

    if segments:
        return lambda path, times, size=None, num_frames=64, fps=12.0: [
            clip for _, clip in iter_segments(path, num_frames, fps, backend=backend, size=size, num_threads=1)
        ]
    return lambda path, times, size=None: read_frames_at(path, times, backend=backend, size=size, num_threads=1)


def _call(reader: Callable, path: str, times, **kwargs):
    return reader(path, times, **kwargs)


def _timed(fn: Callable[[], object]) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _interleaved(readers: Dict[str, Callable[[], object]], rounds: int, jobs: Sequence) -> Dict[str, Dict]:
    """Run every reader on every job, rotating their order job by job; one untimed warm-up job."""
    names = list(readers)
    for name in names:
        readers[name](jobs[0])
    times = {name: [] for name in names}
    for i, job in enumerate(jobs[1 : rounds + 1]):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_timed(functools.partial(readers[name], job)))
    out = {}
    for name, pairs in times.items():
        wall, cpu = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        out[name] = {
            "count": len(pairs),
            "wall_s": wall,
            "cpu_s": cpu,
            "per_second": len(pairs) / wall,
            "per_cpu_second": len(pairs) / cpu,
            "times": pairs,
        }
    return out


def _with_ratios(rates: Dict[str, Dict], reference: str = "torchcodec") -> Dict[str, Dict]:
    """Ratios to the reference reader: of the totals, and the median over jobs of the ratio
    within one job (the readers ran back to back on it, so a load spike hits both; the median
    leaves out the jobs a spike hit unevenly)."""
    base = rates[reference]
    for entry in rates.values():
        entry["vs_torchcodec_cpu"] = entry["per_cpu_second"] / base["per_cpu_second"]
        entry["vs_torchcodec_wall"] = entry["per_second"] / base["per_second"]
        entry["median_vs_torchcodec_cpu"] = statistics.median(
            b[1] / o[1] for o, b in zip(entry["times"], base["times"])
        )
        entry["median_vs_torchcodec_wall"] = statistics.median(
            b[0] / o[0] for o, b in zip(entry["times"], base["times"])
        )
    return rates


def bench_peers(
    video: str, *, backends: Sequence[str], clips: int, segment_rounds: int, num_frames: int, fps: float, seed: int
) -> Dict[str, Dict]:
    """The three peer comparisons; keys ``videotl <backend>`` and ``torchcodec`` / ``decord`` /
    ``pyav`` (the bare readers)."""
    from videotl.data import probe
    from videotl.data.sampling import clip_times, random_clip_start, segment_count

    info = probe(video)
    peers = Peers(video)
    generator = torch.Generator().manual_seed(seed)
    starts = [
        random_clip_start(info.duration, num_frames=num_frames, fps=fps, generator=generator) for _ in range(clips + 1)
    ]
    clip_jobs = [clip_times(s, num_frames=num_frames, fps=fps) for s in starts]
    count = segment_count(info.duration, num_frames=num_frames, fps=fps)
    all_times = np.arange(count * num_frames, dtype=np.float64) / fps
    results = {}
    for kind, size in (("random_clips", None), ("resized_clips", 256)):
        readers = {f"videotl {b}": functools.partial(_call, _ours(b), video, size=size) for b in backends}
        readers.update(
            {
                "torchcodec": lambda t, s=size: peers.torchcodec(t, s),
                "decord": lambda t, s=size: peers.decord(t, s),
                "pyav": lambda t, s=size: peers.pyav(t, s),
            }
        )
        results[kind] = _with_ratios(_interleaved(readers, clips, clip_jobs))
    readers = {
        f"videotl {b}": functools.partial(_call, _ours(b, segments=True), video, num_frames=num_frames, fps=fps)
        for b in backends
    }
    readers.update(
        {
            "torchcodec": lambda t: peers.torchcodec(t),
            "decord": lambda t: peers.decord(t),
            "pyav": lambda t: peers.pyav(t),
        }
    )
    segments = _with_ratios(_interleaved(readers, segment_rounds, [all_times] * (segment_rounds + 1)))
    for entry in segments.values():
        entry["segments_per_cpu_second"] = entry["per_cpu_second"] * count
        entry["segments_per_second"] = entry["per_second"] * count
    results["segments"] = segments
    results["segments_per_video"] = count
    return results


# --------------------------------------------------------------------------------- long videos


def _peak_rss_mb() -> float:
    # VmHWM starts afresh at exec; getrusage's ru_maxrss would carry the parent's peak over.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu_with_children() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def long_video_worker(mode: str, path: str, backend: str) -> Dict:
    """One measurement in this (fresh) process: ``score`` (segments dataset + loader, short side
    256, crop 256, batches of 4), ``segments`` (:func:`iter_segments` alone), ``list``
    (:func:`read_segments`, every segment held at once), or a PyAV baseline: ``sequential`` (a
    decode of every frame, no conversion), ``references`` (only the reference frames decoded: the
    least an exact reader at a lower rate must decode) or ``sequential_rgb`` (every frame decoded,
    the ones on screen at 12 fps scaled and converted to RGB). ``cpu_s`` is the CPU time of every
    thread of this process plus that of any child process it waited for (none today: ``score``
    iterates :class:`SegmentBatches` in this process, the decode thread included; DataLoader
    workers would be children)."""
    # Imports come before the clock: they are the same for every mode and no part of decoding.
    from videotl.data import VideoDataset, VideoRecord, read_segments
    from videotl.data.clip_reader import ClipReader
    from videotl.data.decoding import iter_segments
    from videotl.data.decoding.backends import backend_named
    from videotl.data.loader import SegmentBatches
    from videotl.data.strategies import WholeVideoSegments
    from videotl.data.transforms import EvalTransform

    # So are the backend's libraries (torchcodec's FFmpeg and operators: 1.3 s of CPU to load).
    backend_named(backend).prepare()
    torch.set_num_threads(1)
    wall, cpu = time.perf_counter(), _cpu_with_children()
    produced = 0
    if mode in ("sequential", "references"):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            if mode == "references":
                stream.codec_context.skip_frame = "NONREF"
            for _ in container.decode(stream):
                produced += 1
    elif mode == "sequential_rgb":
        produced = _sequential_rgb(path, fps=12.0, short_side=256)
    elif mode == "segments":
        for _ in iter_segments(path, 64, 12.0, backend=backend, size=256, num_threads=1):
            produced += 1
    elif mode == "list":
        produced = len(read_segments(path, 64, 12.0, backend=backend, size=256, num_threads=1))
    elif mode == "score":
        dataset = VideoDataset(
            [VideoRecord(video_id="v", path=Path(path), labels=())],
            ["c"],
            strategy=WholeVideoSegments(
                64, 12.0, EvalTransform(crop_size=256, num_crops=1, mean=(0.45,) * 3, std=(0.225,) * 3)
            ),
            reader=ClipReader(backend=backend, threads=1, timeout=60.0, probe_cache=False),
            multi_label=True,
            show_progress=False,
        )
        for batch in SegmentBatches(dataset, videos=[0], batch_size=4, num_workers=1):
            produced += int(batch["valid"].sum())
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return {
        "mode": mode,
        "backend": backend,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": _cpu_with_children() - cpu,
        "items": produced,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _sequential_rgb(path: str, *, fps: float, short_side: int) -> int:
    """One plain sequential PyAV decode producing the frames of the segments: every frame decoded,
    each frame on screen at a ``k / fps`` time scaled to the short side and converted to RGB by
    videotl's PyAV reader's own conversion. Returns the number of RGB frames."""
    # The reader's conversion itself, so the baseline differs from videotl only in what it decodes.
    from videotl.data.decoding.rgb import rgb_converter

    produced, target, previous = 0, 0.0, None
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        convert = rgb_converter(output_size(stream.height, stream.width, short_side))
        for frame in container.decode(stream):
            # The previous frame is on screen at every target time before this frame's time.
            while previous is not None and target < frame.time - 1e-6:
                convert(previous)
                produced, target = produced + 1, target + 1.0 / fps
            previous = frame
        # The last frame is on screen for one frame duration.
        end = previous.time + 1.0 / float(stream.average_rate) if previous is not None else 0.0
        while target < end - 1e-6:
            convert(previous)
            produced, target = produced + 1, target + 1.0 / fps
    return produced


def _median_run(runs: Sequence[Dict], key: str) -> Dict:
    """The run whose ``key`` is the median (the lower middle one of an even number)."""
    return sorted(runs, key=lambda run: run[key])[(len(runs) - 1) // 2]


def _in_fresh_process(args: List[str], env: Optional[Dict[str, str]] = None) -> Dict:
    return _in_fresh_processes([args], env=env)[0]


def _in_fresh_processes(arg_lists: List[List[str]], env: Optional[Dict[str, str]] = None) -> List[Dict]:
    """Run measurements in fresh processes at the same time (so that the load of the moment hits
    them alike); the JSON each prints last."""
    commands = [[sys.executable, "-m", "videotl_tools.harness.data_benchmark"] + args for args in arg_lists]
    environment = {**os.environ, **(env or {})}
    running = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        for c in commands
    ]
    results = []
    for command, process in zip(commands, running):
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def bench_long_videos(
    workdir: Path, *, lengths: Sequence[float], backends: Sequence[str], rounds: int = 3, log
) -> List[Dict]:
    """Per length: ``score`` and ``segments`` of each backend and the two PyAV baselines
    (``references``, ``sequential_rgb``), each measured ``rounds`` times in a fresh process beside
    its own sequential decode; the figure kept is the round with the median CPU-time ratio
    (``vs_sequential_cpu_rounds`` lists them all)."""
    rows = []
    for seconds in lengths:
        path = workdir / f"long_{int(seconds)}s_480x360_30fps.mp4"
        if not path.exists():
            log(f"writing {path} ({seconds / 60:g} min)")
            make_long_video(path, seconds=seconds)
        row = {"seconds": seconds, "path": str(path), "bytes": path.stat().st_size}
        jobs = [(f"{mode} {backend}", mode, backend) for backend in backends for mode in ("score", "segments")]
        jobs += [("references", "references", "pyav"), ("sequential_rgb", "sequential_rgb", "pyav")]
        runs: Dict[str, List[Dict]] = {key: [] for key, _, _ in jobs}
        sequential_runs = []
        for _ in range(rounds):
            for key, mode, backend in jobs:
                # Each beside its own sequential decode, both running at once on the two cores.
                measured, sequential = _in_fresh_processes(
                    [["--worker", mode, str(path), backend], ["--worker", "sequential", str(path), "pyav"]]
                )
                measured["vs_sequential_cpu"] = sequential["cpu_s"] / measured["cpu_s"]
                measured["vs_sequential_wall"] = sequential["wall_s"] / measured["wall_s"]
                measured["sequential"] = sequential
                runs[key].append(measured)
                sequential_runs.append(sequential)
        for key, measured in runs.items():
            row[key] = dict(_median_run(measured, "vs_sequential_cpu"))
            row[key]["vs_sequential_cpu_rounds"] = [r["vs_sequential_cpu"] for r in measured]
        row["sequential"] = _median_run(sequential_runs, "cpu_s")
        if seconds <= 600:
            row["list pyav"] = _in_fresh_process(["--worker", "list", str(path), "pyav"])
        log(
            f"{seconds / 60:g} min: "
            + ", ".join(
                f"{k} {v['peak_rss_mb']:.0f} MB {v.get('vs_sequential_cpu', 1):.2f}x"
                for k, v in row.items()
                if isinstance(v, dict)
            )
        )
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------- transcoded


def bench_transcoded(video: str, workdir: Path, *, backends: Sequence[str], clips: int, seed: int) -> Dict:
    from videotl.data import probe, read_clip
    from videotl.data.sampling import random_clip_start
    from videotl.data.transcode import transcode_video

    output = workdir / "transcoded" / "bench_12fps_320.mp4"
    started = time.perf_counter()
    result = transcode_video(video, output, fps=12.0, short_side=320, gop=12)
    if result.status == "failed":
        raise RuntimeError(f"transcoding {video} failed: {result.reason}")
    seconds = time.perf_counter() - started
    info = probe(video)
    generator = torch.Generator().manual_seed(seed + 1)
    starts = [random_clip_start(info.duration, num_frames=64, fps=12.0, generator=generator) for _ in range(clips + 1)]
    report = {"output": str(output), "bytes": output.stat().st_size, "transcode_seconds": seconds, "rows": {}}
    for size in (None, 256):
        readers = {}
        for backend in backends:
            for label, path in (("original", video), ("transcoded", str(output))):
                readers[f"{backend} {label}"] = lambda s, p=path, b=backend, z=size: read_clip(
                    p, s, 64, 12.0, backend=b, size=z, num_threads=1
                )
        rates = _interleaved(readers, clips, starts)
        for backend in backends:
            original, transcoded = rates[f"{backend} original"], rates[f"{backend} transcoded"]
            report["rows"][f"{backend} size {size or 'source'}"] = {
                "original_per_cpu_second": original["per_cpu_second"],
                "transcoded_per_cpu_second": transcoded["per_cpu_second"],
                "gain_cpu": transcoded["per_cpu_second"] / original["per_cpu_second"],
                "gain_wall": transcoded["per_second"] / original["per_second"],
            }
    return report


# --------------------------------------------------------------------------------------- index


def index_worker(folder: str) -> Dict:
    from videotl.data import VideoDataset, VideoRecord
    from videotl.data.clip_reader import ClipReader
    from videotl.data.strategies import WholeVideoSegments
    from videotl.data.transforms import EvalTransform

    paths = sorted(Path(folder).glob("*.mp4"))
    records = [VideoRecord(video_id=p.name, path=p, labels=()) for p in paths]
    wall, cpu = time.perf_counter(), time.process_time()
    dataset = VideoDataset(
        records,
        ["c"],
        strategy=WholeVideoSegments(
            64, 12.0, EvalTransform(crop_size=32, num_crops=1, mean=(0.45,) * 3, std=(0.225,) * 3)
        ),
        reader=ClipReader(),
        multi_label=True,
        show_progress=False,
    )
    return {
        "videos": len(records),
        "samples": len(dataset),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
    }


def bench_index(workdir: Path, *, count: int, log) -> Dict:
    folder = workdir / f"index_{count}"
    if not folder.exists() or len(list(folder.glob("*.mp4"))) != count:
        log(f"writing {count} small videos to {folder}")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        distinct = []
        for i in range(20):
            frames = (np.full((48, 64, 3), (i * 12 + k) % 256, np.uint8) for k in range(30 + i))
            distinct.append(write_video(folder / f"v{i:06d}.mp4", frames, rate=30, options={"preset": "ultrafast"}))
        for i in range(20, count):
            shutil.copyfile(distinct[i % 20], folder / f"v{i:06d}.mp4")
    cache = Path(tempfile.mkdtemp(prefix="videotl_index_cache_"))
    try:
        cold = _in_fresh_process(["--index-worker", str(folder)], env={"VIDEOTL_CACHE_DIR": str(cache)})
        warm = _in_fresh_process(["--index-worker", str(folder)], env={"VIDEOTL_CACHE_DIR": str(cache)})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    log(f"index of {count} videos: cold {cold['wall_s']:.1f} s, warm {warm['wall_s']:.2f} s")
    return {"videos": count, "cold": cold, "warm": warm, "speedup_wall": cold["wall_s"] / warm["wall_s"]}


# ----------------------------------------------------------------------------------------- run


def run_data_benchmark(
    video: Optional[str] = None,
    *,
    workdir: Optional[str] = None,
    backends: Sequence[str] = BACKENDS,
    clips: int = 30,
    segment_rounds: int = 8,
    num_frames: int = 64,
    fps: float = 12.0,
    long_lengths: Sequence[float] = (30.0, 600.0, 3600.0),
    long_backends: Sequence[str] = ("pyav",),
    long_rounds: int = 3,
    transcode_clips: int = 20,
    index_videos: int = 10000,
    decord_profile_clips: int = 10,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Dict:
    """Run the comparisons; return a JSON-ready dict. Empty ``long_lengths`` or zero
    ``transcode_clips`` / ``index_videos`` leave those parts out.

    Args:
        video: an H.264 file; None writes a 30 s 480x360 30 fps one into ``workdir``.
    """
    from videotl.data import probe
    from videotl.data.decoding import torchcodec_unavailable_reason

    torch.set_num_threads(1)
    reason = torchcodec_unavailable_reason()
    if reason:
        raise RuntimeError(f"the data benchmark compares against torchcodec: {reason}")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="videotl_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if video is None:
        video = str(workdir / "bench_30s_480x360_30fps.mp4")
        if not Path(video).exists():
            log(f"writing {video}")
            make_benchmark_video(video)
    info = probe(video)
    result: Dict[str, object] = {
        "machine": machine_info(),
        "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": _versions(),
        "video": {
            "path": str(video),
            "bytes": os.path.getsize(video),
            "duration": info.duration,
            "fps": info.fps,
            "frames": info.num_frames,
            "size": [info.width, info.height],
        },
        "clip": {"num_frames": num_frames, "fps": fps},
    }
    log(f"peers: {clips} random clips, {clips} resized clips, {segment_rounds} whole videos per reader")
    result["peers"] = bench_peers(
        video,
        backends=backends,
        clips=clips,
        segment_rounds=segment_rounds,
        num_frames=num_frames,
        fps=fps,
        seed=seed,
    )
    for kind in ("random_clips", "resized_clips", "segments"):
        rates = result["peers"][kind]
        log(
            f"  {kind}: "
            + ", ".join(
                f"{n} {r['per_cpu_second']:.2f}/CPU-s ({r['vs_torchcodec_cpu']:.2f}x)" for n, r in rates.items()
            )
        )
    if long_lengths:
        result["long_videos"] = bench_long_videos(
            workdir, lengths=long_lengths, backends=long_backends, rounds=long_rounds, log=log
        )
    if transcode_clips:
        log(f"transcoded: {transcode_clips} random clips per file and backend")
        result["transcoded"] = bench_transcoded(
            video, workdir, backends=[b for b in backends if b != "torchcodec"], clips=transcode_clips, seed=seed
        )
    if index_videos:
        result["index"] = bench_index(workdir, count=index_videos, log=log)
    if decord_profile_clips and "decord" in backends:
        log(f"decord profile: {decord_profile_clips} random clips")
        result["decord_profile"] = profile_decord(
            video, clips=decord_profile_clips, num_frames=num_frames, fps=fps, seed=seed
        )
    result["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["targets"] = targets(result)
    return result


def _versions() -> Dict[str, str]:
    import decord
    import torchcodec
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchcodec": torchcodec.__version__,
        "decord": decord.__version__,
        "av": av.__version__,
        "ffmpeg_for_torchcodec": _torchcodec_ffmpeg(),
    }


def _torchcodec_ffmpeg() -> str:
    try:
        from torchcodec._internally_replaced_utils import load_core_libraries

        return str(load_core_libraries()[0])
    except (ImportError, RuntimeError):
        return "?"


def _default_videotl(rates: Dict[str, Dict]) -> Tuple[str, Dict]:
    """videotl's default reader (the configuration a user who changes nothing gets), or where a
    run left it out, its fastest reader."""
    from videotl.data.decoding import DEFAULT_BACKEND

    name = f"videotl {DEFAULT_BACKEND}"
    if name not in rates:
        name = max((n for n in rates if n.startswith("videotl ")), key=lambda n: rates[n]["median_vs_torchcodec_cpu"])
    return name, rates[name]


def targets(result: Dict) -> List[Dict]:
    """Each target of the data path with what was measured and whether it is met."""
    rows = []
    peers = result.get("peers", {})
    for kind, label in (
        ("random_clips", "random 64 x 12 fps clips"),
        ("segments", "whole-video segments"),
        ("resized_clips", "clips resized to short side 256"),
    ):
        if kind not in peers:
            continue
        name, best = _default_videotl(peers[kind])
        rows.append(
            {
                "target": f"{label}: >= {TARGET}x torchcodec exact (CPU time, median over clips)",
                "measured": f"{name}: {best['median_vs_torchcodec_cpu']:.2f}x CPU "
                f"(totals {best['vs_torchcodec_cpu']:.2f}x CPU, {best['vs_torchcodec_wall']:.2f}x wall)",
                "met": best["median_vs_torchcodec_cpu"] >= TARGET,
            }
        )
    long_rows = result.get("long_videos") or []
    rows += _long_video_peer_targets(long_rows)
    if len(long_rows) >= 2:
        short, longest = long_rows[0], long_rows[-1]
        for key in [k for k in longest if k.startswith("score ")]:
            growth = longest[key]["peak_rss_mb"] / short[key]["peak_rss_mb"]
            rows.append(
                {
                    "target": f"{key}: peak RSS at {longest['seconds'] / 60:g} min <= 1.5x at {short['seconds']:g} s",
                    "measured": f"{longest[key]['peak_rss_mb']:.0f} MB vs {short[key]['peak_rss_mb']:.0f} MB: {growth:.2f}x",
                    "met": growth <= 1.5,
                }
            )
            speed = longest[key]["vs_sequential_cpu"]
            measured = f"{speed:.2f}x CPU, {longest[key]['vs_sequential_wall']:.2f}x wall"
            if "sequential_rgb" in longest:
                # The same ratio against a sequential decode that also produces the RGB frames.
                rgb = speed / longest["sequential_rgb"]["vs_sequential_cpu"]
                measured += f" (against a sequential decode producing the same RGB frames: {rgb:.2f}x CPU)"
            rows.append(
                {
                    "target": f"{key}: >= 0.9x the speed of one sequential decode ({longest['seconds'] / 60:g} min, CPU time)",
                    "measured": measured,
                    "met": speed >= 0.9,
                }
            )
    return rows


def _long_video_peer_targets(long_rows: List[Dict]) -> List[Dict]:
    """Per long video measured with torchcodec too: videotl's default ``segments`` against
    torchcodec's, each as its ratio to the sequential decode run beside it (so the load of the
    moment cancels)."""
    from videotl.data.decoding import DEFAULT_BACKEND

    rows = []
    for video in long_rows:
        ours, peer = video.get(f"segments {DEFAULT_BACKEND}"), video.get("segments torchcodec")
        if ours is None or peer is None or DEFAULT_BACKEND == "torchcodec":
            continue
        ratio = ours["vs_sequential_cpu"] / peer["vs_sequential_cpu"]
        length = f"{video['seconds'] / 60:g} min" if video["seconds"] >= 60 else f"{video['seconds']:g} s"
        rows.append(
            {
                "target": f"long video {length}: segments {DEFAULT_BACKEND} (default) >= 1.0x segments torchcodec (CPU)",
                "measured": f"{ratio:.2f}x CPU",
                "met": ratio >= 1.0,
            }
        )
    return rows


# ---------------------------------------------------------------------------- rows and markdown

# (table, title, what one read of the table is): the peer comparisons.
PEER_TABLES = (
    ("random_clips", "Random clips", "clips"),
    ("segments", "Whole-video segments ({segments_per_video} per video)", "videos"),
    ("resized_clips", "Clips resized to short side 256", "clips"),
)


def data_rows(result: Dict) -> List[Dict]:
    """The rows of a run's tables (:mod:`videotl_tools.harness.reports`): ``random_clips``,
    ``segments`` and ``resized_clips`` (one per reader), ``long_videos`` (one per video and reader,
    the sequential decode first), ``transcoded`` (one per backend and output size, ``short_side``
    None for the source size) and ``targets``."""
    rows = []
    peers = result.get("peers") or {}
    for kind, _, unit in PEER_TABLES:
        for name, rate in peers.get(kind, {}).items():
            rows.append(
                {
                    "table": kind,
                    "reader": name,
                    f"{unit}_per_cpu_s": rate["per_cpu_second"],
                    f"{unit}_per_s": rate["per_second"],
                    "median_vs_torchcodec_cpu": rate["median_vs_torchcodec_cpu"],
                    "totals_vs_torchcodec_cpu": rate["vs_torchcodec_cpu"],
                    "median_vs_torchcodec_wall": rate["median_vs_torchcodec_wall"],
                    "totals_vs_torchcodec_wall": rate["vs_torchcodec_wall"],
                }
            )
    for video in result.get("long_videos") or []:
        rows += _long_video_rows(video)
    for name, gains in (result.get("transcoded") or {}).get("rows", {}).items():
        backend, size = name.split(" size ")
        short_side = None if size == "source" else int(size)
        rows.append(
            {
                "table": "transcoded",
                "backend": backend,
                "short_side": short_side,
                "original_clips_per_cpu_s": gains["original_per_cpu_second"],
                "transcoded_clips_per_cpu_s": gains["transcoded_per_cpu_second"],
                "gain_cpu": gains["gain_cpu"],
                "gain_wall": gains["gain_wall"],
            }
        )
    if result.get("decord_profile"):
        rows += profile_rows(result["decord_profile"])
    rows += [{"table": "targets", **target} for target in result.get("targets") or []]
    return rows


def _long_video_rows(video: Dict) -> List[Dict]:
    sequential = video["sequential"]
    first = {"reader": "sequential decode", "peak_rss_mb": sequential["peak_rss_mb"]}
    rows = [
        {
            "table": "long_videos",
            "video_s": video["seconds"],
            **first,
            "vs_sequential_cpu": 1.0,
            "vs_sequential_wall": 1.0,
        }
    ]
    for key, value in video.items():
        if not isinstance(value, dict) or key == "sequential":
            continue
        segments = key.split()[0] in ("score", "segments", "list") and value["wall_s"]
        rows.append(
            {
                "table": "long_videos",
                "video_s": video["seconds"],
                "reader": key,
                "peak_rss_mb": value["peak_rss_mb"],
                "segments_per_s": value["items"] / value["wall_s"] if segments else None,
                "vs_sequential_cpu": value.get("vs_sequential_cpu"),
                "vs_sequential_cpu_rounds": value.get("vs_sequential_cpu_rounds", []),
                "vs_sequential_wall": value.get("vs_sequential_wall"),
            }
        )
    return rows


def _peer_columns(unit: str) -> List[Column]:
    return [
        Column(
            "reader",
            lambda row: f"**{row['reader']}**" if row["reader"].startswith("videotl") else row["reader"],
            "left",
        ),
        Column(f"{unit} / CPU-s", f"{{{unit}_per_cpu_s:.2f}}"),
        Column(f"{unit} / s", f"{{{unit}_per_s:.2f}}"),
        Column(
            "vs torchcodec, CPU: median (totals)", "{median_vs_torchcodec_cpu:.2f} ({totals_vs_torchcodec_cpu:.2f})"
        ),
        Column(
            "vs torchcodec, wall: median (totals)", "{median_vs_torchcodec_wall:.2f} ({totals_vs_torchcodec_wall:.2f})"
        ),
    ]


def _ratio_and_rounds(row: Dict) -> str:
    if row.get("vs_sequential_cpu") is None:
        return ""
    rounds = row.get("vs_sequential_cpu_rounds") or []
    text = f"{row['vs_sequential_cpu']:.2f}"
    return text + (" (" + ", ".join(f"{r:.2f}" for r in rounds) + ")" if len(rounds) > 1 else "")


LONG_VIDEO_COLUMNS = [
    Column(
        "video", lambda row: f"{row['video_s'] / 60:g} min" if row["video_s"] >= 60 else f"{row['video_s']:g} s", "left"
    ),
    Column("reader", "{reader}", "left"),
    Column("peak RSS (MB)", "{peak_rss_mb:.0f}"),
    Column("segments / s", "{segments_per_s:.2f}"),
    Column("vs sequential decode, CPU (rounds)", _ratio_and_rounds),
    Column("vs sequential (wall)", "{vs_sequential_wall:.2f}"),
]
TRANSCODED_COLUMNS = [
    Column("backend, output size", lambda row: f"{row['backend']} size {row['short_side'] or 'source'}", "left"),
    Column("original clips / CPU-s", "{original_clips_per_cpu_s:.2f}"),
    Column("transcoded clips / CPU-s", "{transcoded_clips_per_cpu_s:.2f}"),
    Column("gain (CPU)", "{gain_cpu:.2f}"),
    Column("gain (wall)", "{gain_wall:.2f}"),
]
PROFILE_COLUMNS = [
    Column("stage", "{stage}", "left"),
    Column("CPU ms per clip (median)", "{cpu_ms:.1f}"),
    Column("share of the reader", "{share:.0%}"),
    Column("cores", "{cores:.2f}"),
]
TARGET_COLUMNS = [
    Column("target", "{target}", "left"),
    Column("measured", "{measured}", "left"),
    Column("met", yes_no("met", no="**no**"), "left"),
]

BARE_READERS = (
    "The default reader (`DATA.DECODING_BACKEND`, `backend=`) is `pyav`; the targets read its row. "
    "Every reader, videotl's and the bare ones, opens the file afresh for each clip (none keeps an "
    "open reader between clips) and decodes on one thread (decord `num_threads=1`, torchcodec "
    "`num_ffmpeg_threads=1`, PyAV `thread_count=1`). "
    'Bare readers: `torchcodec` = `VideoDecoder(seek_mode="exact")` per clip, '
    "`get_frames_played_at` (+ torchvision v2 antialiased resize); `decord` = `VideoReader` + "
    "`get_batch` of the indices a constant frame rate gives (not exact on variable-rate or odd "
    "files); `pyav` = seek, decode, `to_ndarray` of the needed frames (its resize is swscale's, "
    "with its default threads). videotl's PyAV reader skips the non-reference frames no asked "
    "time shows and scales in YUV before its one RGB conversion; its decord and torchcodec "
    "readers check the decoder's frame index against the container's first."
)
LONG_VIDEOS = (
    "**Long videos** (480x360 30 fps H.264, x264 superfast; segments of 64 frames at 12 fps, "
    "short side 256; each figure from a fresh process). `score` is the segments-mode dataset and "
    "loader behind `tools/predict.py` and `TEST.MODE segments` (probe, decode, resize, centre crop "
    "256, normalise, batches of 4); `segments` is `iter_segments` alone; `list` is `read_segments` "
    "(every segment held at once). Speed is relative to one sequential PyAV decode of every frame "
    "of the file (no conversion), run at the same time as each measurement in a second fresh "
    "process, so both see the same load; each row is measured in several rounds and shows the "
    "round with the median ratio (all rounds in brackets). Two more PyAV baselines bound what an "
    "exact reader can do: `references` decodes only the reference frames (the least any exact "
    "reader of a lower frame rate must decode, with no conversion), `sequential_rgb` decodes "
    "every frame and scales and converts the ones on screen at 12 fps, as one plain sequential "
    "decode producing the segments' frames would."
)


def _run_description(result: Dict) -> List[str]:
    """The section's title and its two paragraphs on the machine, the video and the clips."""
    video, machine = result["video"], result["machine"]
    loads = [
        ", ".join(f"{x:.2f}" for x in result.get(key) or []) for key in ("load_average_before", "load_average_after")
    ]
    return [
        "## Data pipeline",
        "",
        f"Produced by `{result.get('command', 'python tools/benchmark.py data')}` "
        "(`tools/harness/data_benchmark.py`; the JSON is `docs/benchmarks/data_pipeline.json`). "
        f"Machine: {machine.get('cpu_count', '?')} cores ({machine.get('platform', '')}), "
        f"load average {loads[0]} before and {loads[1]} after: shared with other work, "
        "so the CPU-time ratios are the ones to read. "
        + ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items())
        + ".",
        "",
        f"Video: {video['duration']:.0f} s, {video['size'][0]}x{video['size'][1]}, {video['fps']:.0f} fps H.264 "
        f"(x264 veryfast, CRF 23, keyframe every 250 frames, B-frames; {video['bytes'] / 1e6:.1f} MB). Clips of "
        f"{result['clip']['num_frames']} frames at {result['clip']['fps']:g} fps; one decoder thread and one torch "
        "thread everywhere; every reader returns the same frames (the frames on screen at the asked times). "
        "Readers take turns clip by clip, the order rotating.",
        "",
    ]


def render_markdown(result: Dict) -> str:
    """The ``## Data pipeline`` section of docs/benchmarks.md for one run: its tables are
    :func:`data_rows` through :func:`~videotl_tools.harness.reports.markdown_table`."""
    rows = data_rows(result)
    lines = _run_description(result)
    peers = result.get("peers")
    if peers:
        for kind, title, unit in PEER_TABLES:
            heading = title.format(segments_per_video=peers["segments_per_video"])
            lines += [f"**{heading}**", "", markdown_table(table(rows, kind), _peer_columns(unit)), ""]
        lines += [BARE_READERS, ""]
    if result.get("long_videos"):
        lines += [LONG_VIDEOS, "", markdown_table(table(rows, "long_videos"), LONG_VIDEO_COLUMNS), ""]
    transcoded = result.get("transcoded")
    if transcoded:
        lines += [
            f"**Transcoded** (`datasets/transcode.py --fps 12 --short-side 320 --gop 12`: "
            f"{result['video']['bytes'] / 1e6:.1f} MB -> {transcoded['bytes'] / 1e6:.1f} MB in "
            f"{transcoded['transcode_seconds']:.1f} s): random 64-frame clips at 12 fps.",
            "",
            markdown_table(table(rows, "transcoded"), TRANSCODED_COLUMNS),
            "",
        ]
    index = result.get("index")
    if index:
        lines += [
            f"**Index** (a segments-mode dataset over {index['videos']} small videos, fresh process each): "
            f"cold (probing every file, writing the manifest) {index['cold']['wall_s']:.1f} s wall / "
            f"{index['cold']['cpu_s']:.1f} s CPU; warm (the manifest) {index['warm']['wall_s']:.2f} s wall / "
            f"{index['warm']['cpu_s']:.2f} s CPU: {index['speedup_wall']:.0f}x faster.",
            "",
        ]
    profile = result.get("decord_profile")
    if profile:
        lines += [
            f"**Where videotl's decord reader spends its time** (median CPU ms per random clip over "
            f"{profile['clips']} clips, `tools/harness/decord_profile.py`)",
            "",
            markdown_table(table(rows, "decord_profile"), PROFILE_COLUMNS),
            "",
        ]
    if result.get("targets"):
        lines += ["**Targets** (this run)", "", markdown_table(table(rows, "targets"), TARGET_COLUMNS), ""]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- tools/benchmark.py data


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", default=None, help="H.264 video to read (default: write a 30 s 480x360 30 fps one)")
    parser.add_argument("--workdir", default="runs/data_benchmark", help="where generated videos go (kept for reruns)")
    parser.add_argument("--backend", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--clips", type=positive_int, default=30, help="random clips (and resized clips) per reader")
    parser.add_argument("--segment-rounds", type=positive_int, default=8, help="whole-video reads per reader")
    parser.add_argument("--num-frames", type=positive_int, default=64)
    parser.add_argument("--fps", type=positive_float, default=12.0)
    parser.add_argument(
        "--long", type=positive_float, nargs="*", default=[30.0, 600.0, 3600.0], help="long-video lengths in seconds"
    )
    parser.add_argument(
        "--long-backend",
        nargs="+",
        default=["pyav"],
        choices=list(BACKENDS),
        help="backends of the long-video table (decord streams at a fraction of PyAV's speed, so "
        "adding it adds most of the run's time)",
    )
    parser.add_argument(
        "--long-rounds", type=positive_int, default=3, help="fresh-process measurements of each long-video row"
    )
    parser.add_argument(
        "--transcode-clips", type=non_negative_int, default=20, help="clips per file for the transcoded table (0: skip)"
    )
    parser.add_argument(
        "--index-videos", type=non_negative_int, default=10000, help="videos for the index timing (0: skip)"
    )
    parser.add_argument(
        "--decord-profile-clips",
        type=non_negative_int,
        default=10,
        help="random clips for the stage-by-stage profile of the decord reader (0 or no decord backend: skip)",
    )
    parser.add_argument("--output", default="docs/benchmarks/data_pipeline.json")


def run_data(args: argparse.Namespace) -> Dict:
    return run_data_benchmark(
        args.video,
        workdir=args.workdir,
        backends=args.backend,
        clips=args.clips,
        segment_rounds=args.segment_rounds,
        num_frames=args.num_frames,
        fps=args.fps,
        long_lengths=args.long,
        long_backends=args.long_backend,
        long_rounds=args.long_rounds,
        transcode_clips=args.transcode_clips,
        index_videos=args.index_videos,
        decord_profile_clips=args.decord_profile_clips,
    )


def _main(argv: List[str]) -> int:
    # Fresh-process measurements for the long-video and index tables.
    if argv[:1] == ["--worker"]:
        print(json.dumps(long_video_worker(argv[1], argv[2], argv[3])))
        return 0
    if argv[:1] == ["--index-worker"]:
        print(json.dumps(index_worker(argv[1])))
        return 0
    raise SystemExit(
        "usage: python -m videotl_tools.harness.data_benchmark --worker MODE PATH BACKEND | --index-worker FOLDER"
    )


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
