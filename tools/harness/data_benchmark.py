"""Data pipeline throughput next to its ceiling on the same machine, in the same run.

Three comparisons (``tools/benchmark.py data``):

1. **random clips**: :func:`videotl.data.read_clip` (64 frames at 12 fps from a random start)
   against a bare decoder loop that decodes the same frames (seek to the preceding keyframe,
   decode, convert the frames needed). Target: within 15% of the bare loop.
2. **whole-video segments**: :func:`videotl.data.read_segments` against one sequential decode of
   the file that converts the same frames. Target: within 10%.
3. **DataLoader**: ``build_loader`` (workers, collate, pinned memory when CUDA) against the bare
   sampler (``dataset[i]`` in a loop, one process), per core. Target: within 10%.

Timings alternate between the two sides of a comparison clip by clip, so that load from other
processes on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import av
import numpy as np
import torch

from videotl.data.encoding import write_video
from videotl_tools.harness.reports import machine_info

__all__ = ["make_benchmark_video", "bare_clip", "bare_sequential", "run_data_benchmark"]


def make_benchmark_video(
    path, *, seconds: float = 30.0, width: int = 480, height: int = 360, fps: int = 30, gop: int = 250, seed: int = 0
) -> Path:
    """Write an H.264 (x264 defaults: keyframe every ``gop`` frames, B-frames) test video.

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


def _cfr_indices(times: Sequence[float], rate: float, count: int) -> List[int]:
    # The bare loop may assume a constant frame rate: the benchmark video has one.
    return [min(int(math.floor(t * rate + 1e-6)), count - 1) for t in times]


def bare_clip(path: str, times: Sequence[float], *, backend: str, rate: float, count: int) -> int:
    """The ceiling: decode the frames on screen at ``times`` with no bookkeeping. Returns bytes."""
    wanted = _cfr_indices(times, rate, count)
    if backend == "decord":
        import decord

        reader = decord.VideoReader(path, num_threads=1)
        return reader.get_batch(sorted(set(wanted))).asnumpy().nbytes
    container = av.open(path)
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    tick = float(stream.time_base)
    needed = set(wanted)
    last = max(wanted)
    start_pts = int(min(wanted) / rate / stream.time_base)
    container.seek(start_pts, stream=stream, backward=True, any_frame=False)
    total = 0
    for frame in container.decode(stream):
        index = int(round(frame.pts * tick * rate))
        if index in needed:
            total += frame.to_ndarray(format="rgb24").nbytes
        if index >= last:
            break
    container.close()
    return total


def bare_sequential(path: str, times: Sequence[float], *, backend: str, rate: float, count: int) -> int:
    """One sequential decode of the whole file, converting the frames at ``times``."""
    wanted = _cfr_indices(times, rate, count)
    if backend == "decord":
        return bare_clip(path, times, backend="decord", rate=rate, count=count)
    container = av.open(path)
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    tick = float(stream.time_base)
    needed = set(wanted)
    total = 0
    for frame in container.decode(stream):
        index = int(round(frame.pts * tick * rate))
        if index in needed:
            total += frame.to_ndarray(format="rgb24").nbytes
    container.close()
    return total


def _timed(fn: Callable[[], object]) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # Fields after the command name: state is [0]; utime and stime are [11] and [12].
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _compare(pairs: List[Tuple[Tuple[float, float], Tuple[float, float]]]) -> Dict[str, float]:
    """Pairs of ((wall, cpu) ours, (wall, cpu) bare) -> rates and ratios (1.0 = as fast as bare).

    Wall-clock rates suffer from whatever else runs on the machine; CPU seconds measure the work
    itself, so on a shared machine the CPU ratio is the one to trust.
    """
    n = len(pairs)
    ours_wall = sum(p[0][0] for p in pairs)
    bare_wall = sum(p[1][0] for p in pairs)
    ours_cpu = sum(p[0][1] for p in pairs)
    bare_cpu = sum(p[1][1] for p in pairs)
    return {
        "clips": n,
        "ours_per_second": n / ours_wall,
        "bare_per_second": n / bare_wall,
        "ratio_wall": bare_wall / ours_wall,
        "ours_per_cpu_second": n / ours_cpu,
        "bare_per_cpu_second": n / bare_cpu,
        "ratio_cpu": bare_cpu / ours_cpu,
        "ours_median_wall_ms": 1000 * statistics.median(p[0][0] for p in pairs),
        "bare_median_wall_ms": 1000 * statistics.median(p[1][0] for p in pairs),
    }


def bench_random_clips(path: str, *, backend: str, num_clips: int, num_frames: int, fps: float, seed: int) -> Dict:
    from videotl.data import probe, read_clip
    from videotl.data.sampling import clip_times, random_clip_start

    info = probe(path)
    generator = torch.Generator().manual_seed(seed)
    starts = [
        random_clip_start(info.duration, num_frames=num_frames, fps=fps, generator=generator) for _ in range(num_clips)
    ]
    # One warm-up of each side: file cache, decoder libraries.
    read_clip(path, starts[0], num_frames, fps, backend=backend, num_threads=1)
    bare_clip(
        path,
        clip_times(starts[0], num_frames=num_frames, fps=fps),
        backend=backend,
        rate=info.fps,
        count=info.num_frames,
    )
    pairs = []
    for i, start in enumerate(starts):
        times = clip_times(start, num_frames=num_frames, fps=fps)
        ours = functools.partial(read_clip, path, start, num_frames, fps, backend=backend, num_threads=1)
        bare = functools.partial(bare_clip, path, times, backend=backend, rate=info.fps, count=info.num_frames)
        # Alternate which side runs first, so neither always gets the warmer cache.
        if i % 2:
            b, o = _timed(bare), _timed(ours)
        else:
            o, b = _timed(ours), _timed(bare)
        pairs.append((o, b))
    return _compare(pairs)


def bench_segments(path: str, *, backend: str, repeats: int, num_frames: int, fps: float) -> Dict:
    from videotl.data import probe, read_segments
    from videotl.data.sampling import segment_count

    info = probe(path)
    count = segment_count(info.duration, num_frames=num_frames, fps=fps)
    times = np.arange(count * num_frames) / fps
    pairs = []
    for i in range(repeats + 1):
        ours = lambda: read_segments(path, num_frames, fps, backend=backend, num_threads=1)  # noqa: E731
        bare = lambda: bare_sequential(path, times, backend=backend, rate=info.fps, count=info.num_frames)  # noqa: E731
        if i % 2:
            b, o = _timed(bare), _timed(ours)
        else:
            o, b = _timed(ours), _timed(bare)
        if i:  # the first round is a warm-up
            pairs.append((o, b))
    result = _compare(pairs)
    result.update(
        segments_per_video=count,
        ours_segments_per_second=count * result["ours_per_second"],
        bare_segments_per_second=count * result["bare_per_second"],
        ours_segments_per_cpu_second=count * result["ours_per_cpu_second"],
        bare_segments_per_cpu_second=count * result["bare_per_cpu_second"],
    )
    return result


def bench_loader(
    path: str, *, backend: str, num_clips: int, workers: int, batch_size: int, overrides: Sequence[str] = ()
) -> Dict:
    """Train-mode samples/s: bare ``dataset[i]`` loop in this process vs ``build_loader``."""
    from videotl.config import load_config
    from videotl.data import build_dataset, build_loader
    from videotl.data.loader import TrainSampler

    with tempfile.TemporaryDirectory() as root:
        Path(root, "train.csv").write_text("".join(f"{os.path.abspath(path)} 0\n" for _ in range(num_clips)))

        def config(num_workers: int):
            return load_config(
                "",
                [
                    "DATA.PATH_TO_DATA_DIR",
                    root,
                    "TRAIN.DATASET",
                    "csv",
                    "TEST.DATASET",
                    "csv",
                    "MODEL.NUM_CLASSES",
                    "2",
                    "DATA.DECODING_BACKEND",
                    backend,
                    "DATA_LOADER.NUM_WORKERS",
                    str(num_workers),
                    "DATA_LOADER.DECODER_THREADS",
                    "1",
                    "TRAIN.BATCH_SIZE_PER_DEVICE",
                    str(batch_size),
                ]
                + list(overrides),
            )

        dataset = build_dataset(config(0), "train", "train")
        dataset[0]  # warm-up (probe cache, libraries)
        wall, cpu = time.perf_counter(), time.process_time()
        for index in TrainSampler(len(dataset), seed=1):
            dataset[index]
        bare_wall, bare_cpu = time.perf_counter() - wall, time.process_time() - cpu

        loader = build_loader(config(workers), "train", "train")
        loader.sampler.set_epoch(0)
        # The whole epoch is timed, worker start-up included: timing from the first batch would
        # credit the loader with the batches its workers prefetched meanwhile.
        wall, cpu = time.perf_counter(), time.process_time()
        iterator = iter(loader)
        pids = [w.pid for w in getattr(iterator, "_workers", [])]
        seen, first = 0, None
        for batch in iterator:
            first = batch if first is None else first
            seen += batch["inputs"].shape[0]
        loader_wall = time.perf_counter() - wall
        # Forked workers start at zero CPU time and are still alive (persistent workers).
        loader_cpu = time.process_time() - cpu + sum(_process_cpu_seconds(pid) for pid in pids)
        del iterator
    cores = max(1, workers)
    bare_rate, loader_rate = num_clips / bare_wall, seen / loader_wall
    return {
        "clips_bare": num_clips,
        "clips_loader_timed": seen,
        "batch_size": batch_size,
        "workers": workers,
        "bare_sampler_per_second": bare_rate,
        "loader_per_second": loader_rate,
        "loader_per_second_per_core": loader_rate / cores,
        # 1.0 = every worker core delivers what the bare sampler does on one core.
        "ratio_per_core_wall": loader_rate / cores / bare_rate,
        "bare_sampler_per_cpu_second": num_clips / bare_cpu,
        "loader_per_cpu_second": seen / loader_cpu,
        # Clips per CPU second, all processes (main + workers) counted: the per-core cost.
        "ratio_per_core_cpu": (seen / loader_cpu) / (num_clips / bare_cpu),
        "first_batch_shape": list(first["inputs"].shape),
    }


def run_data_benchmark(
    video: Optional[str] = None,
    *,
    workdir: Optional[str] = None,
    backends: Sequence[str] = ("decord", "pyav"),
    num_clips: int = 40,
    segment_repeats: int = 6,
    loader_clips: int = 48,
    workers: int = 2,
    batch_size: int = 4,
    num_frames: int = 64,
    fps: float = 12.0,
    seed: int = 0,
    loader_overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> Dict:
    """Run the three comparisons for each backend; return a JSON-ready dict.

    Args:
        video: an H.264 file; None writes a 30 s 480x360 30 fps one into ``workdir``.
    """
    from videotl.data import probe

    if video is None:
        workdir = workdir or tempfile.mkdtemp(prefix="videotl_bench_")
        video = str(Path(workdir) / "bench_30s_480x360_30fps.mp4")
        if not Path(video).exists():
            log(f"writing {video}")
            make_benchmark_video(video)
    info = probe(video)
    result: Dict[str, object] = {
        "machine": machine_info(),
        "video": {
            "path": str(video),
            "bytes": os.path.getsize(video),
            "duration": info.duration,
            "fps": info.fps,
            "frames": info.num_frames,
            "size": [info.width, info.height],
        },
        "clip": {"num_frames": num_frames, "fps": fps},
        "backends": {},
    }
    for backend in backends:
        log(f"[{backend}] random clips ({num_clips})")
        clips = bench_random_clips(
            video, backend=backend, num_clips=num_clips, num_frames=num_frames, fps=fps, seed=seed
        )
        log(
            f"[{backend}]   {clips['ours_per_second']:.2f} clips/s vs bare {clips['bare_per_second']:.2f}: "
            f"ratio {clips['ratio_wall']:.3f} wall, {clips['ratio_cpu']:.3f} CPU"
        )
        log(f"[{backend}] whole-video segments ({segment_repeats} decodes)")
        segments = bench_segments(video, backend=backend, repeats=segment_repeats, num_frames=num_frames, fps=fps)
        log(
            f"[{backend}]   {segments['ours_segments_per_second']:.2f} segments/s vs one sequential decode "
            f"{segments['bare_segments_per_second']:.2f}: ratio {segments['ratio_wall']:.3f} wall, {segments['ratio_cpu']:.3f} CPU"
        )
        log(f"[{backend}] DataLoader ({workers} workers) vs bare sampler ({loader_clips} clips)")
        loader = bench_loader(
            video,
            backend=backend,
            num_clips=loader_clips,
            workers=workers,
            batch_size=batch_size,
            overrides=loader_overrides,
        )
        log(
            f"[{backend}]   loader {loader['loader_per_second']:.2f} clips/s ({loader['loader_per_second_per_core']:.2f}"
            f" per core) vs bare sampler {loader['bare_sampler_per_second']:.2f}: ratio per core "
            f"{loader['ratio_per_core_wall']:.3f} wall, {loader['ratio_per_core_cpu']:.3f} CPU"
        )
        result["backends"][backend] = {"random_clips": clips, "segments": segments, "loader": loader}
    result["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


# ---------------------------------------------------------------------------------------------
# tools/benchmark.py ``data`` subcommand.


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", default=None, help="H.264 video to read (default: write a 30 s 480x360 30 fps one)")
    parser.add_argument("--workdir", default=None, help="where the generated video goes (kept for reruns)")
    parser.add_argument("--backend", nargs="+", default=["decord", "pyav"], choices=["decord", "pyav"])
    parser.add_argument("--clips", type=int, default=40, help="random 64-frame clips timed per side")
    parser.add_argument("--segment-repeats", type=int, default=6, help="whole-video decodes timed per side")
    parser.add_argument("--loader-clips", type=int, default=48, help="training samples for the DataLoader comparison")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (= cores used)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-frames", type=int, default=64)
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--output", default="benchmark_data.json")


def run_data(args: argparse.Namespace) -> Dict:
    return run_data_benchmark(
        args.video,
        workdir=args.workdir,
        backends=args.backend,
        num_clips=args.clips,
        segment_repeats=args.segment_repeats,
        loader_clips=args.loader_clips,
        workers=args.workers,
        batch_size=args.batch_size,
        num_frames=args.num_frames,
        fps=args.fps,
    )
