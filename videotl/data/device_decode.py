"""Decoding in the main process, on the GPU (``DATA.DECODE_DEVICE cuda``).

A CUDA context cannot be shared with forked DataLoader workers, and one per worker would waste
the GPU's memory and its few hardware decoders, so GPU decoding happens in the process that
trains. The work splits in two:

- DataLoader workers (or the main process with 0 workers) make only the *plan* of each sample
  (:meth:`VideoDataset.clip_plan`, a :class:`~videotl.data.strategies.ClipPlan`): the video,
  the clip's start, the random crop / scale / flip draws and the labels. They probe the videos
  but read no frame.
- :class:`MainProcessDecoder` turns each batch of plans into samples with
  :meth:`VideoDataset.decode_sample`, the call a CPU worker makes after planning, here with
  torchcodec on the device (the transforms run on the GPU tensors), and decodes the next batch on
  a background thread while the caller trains on the current one. On CUDA that thread issues its
  work on a side stream; the caller's stream waits for it before the batch is handed over, and
  the batch's memory is recorded as used by the caller's stream.

Segments mode has nothing to plan (the videos were probed when the dataset was indexed): the
background thread streams the segments itself, in the order the ordinary loader's workers give.

A clip that fails to decode is replaced in train mode (by a video and draws that depend only on
the seed and the failed video, so the main process's random state is untouched) and counted in
the batch's ``"skipped"``; in evaluation the sample is marked invalid and the evaluator names the
video: the same as in a worker.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Union

import torch
from torch.utils._pytree import tree_leaves
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from .build import build_dataset
from .datasets.base import VideoDataset
from .loader import VideoLoader, rank_and_world, sample_loader, segment_batches
from .strategies import ClipPlan

__all__ = ["ClipPlans", "MainProcessDecoder", "build_main_process_loader", "resolve_decode_device"]

logger = logging.getLogger("videotl.data")

_END = object()


def resolve_decode_device(requested: str) -> torch.device:
    """The device ``DATA.DECODE_DEVICE`` asks for: this process's current CUDA device for
    ``"cuda"``, or the CPU (with one logged line saying why) where CUDA is not available."""
    if requested == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        logger.warning(
            "DATA.DECODE_DEVICE = %r but CUDA is not available: decoding on the CPU in the main process", requested
        )
        return torch.device("cpu")
    device = torch.device(requested)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class ClipPlans(Dataset):
    """The plans of a train- or views-mode :class:`VideoDataset`, indexed like its samples."""

    def __init__(self, dataset: VideoDataset):
        if dataset.mode not in ("train", "views"):
            raise ValueError(f"clip plans are for train and views mode, not {dataset.mode!r}")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> ClipPlan:
        return self.dataset.clip_plan(index)


def _keep_plans(plans: List[ClipPlan]) -> List[ClipPlan]:
    # Plans stay a list: the decoder needs each one as the dataset made it.
    return plans


class MainProcessDecoder:
    """Batches decoded on ``device`` in this process, from a DataLoader of plans (train, views)
    or from a dataset's segments, with the next batch prefetched on a background thread (and,
    on CUDA, a side stream). Iterating gives one epoch; a :class:`VideoLoader` carries it."""

    def __init__(self, *, dataset: VideoDataset, device: Union[str, torch.device], plans=None, segments=None):
        if (plans is None) == (segments is None):
            raise ValueError("give plans (train, views) or segments, not both")
        self.video_dataset = dataset
        self.device = torch.device(device)
        self.plans = plans
        self.segments = segments

    def __len__(self) -> int:
        return len(self.plans) if self.plans is not None else len(self.segments)

    # ----------------------------------------------------------------- decoding

    def _decode(self, plans: List[ClipPlan]) -> dict:
        dataset = self.video_dataset
        samples = [dataset.decode_sample(plan, device=self.device) for plan in plans]
        # The C crops of the last view share its decode; nothing of it is needed after the batch.
        dataset.release_cache()
        return default_collate(samples)

    def _on_side_stream(self, stream: Optional[torch.cuda.Stream], fn, *args):
        if stream is None:
            return fn(*args)
        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            return fn(*args)

    def _hand_over(self, batch: dict, stream: Optional[torch.cuda.Stream]) -> dict:
        if stream is None:
            return batch
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(stream)
        # Every CUDA tensor of the batch, however deeply nested: the caching allocator must not
        # reuse its memory for the side stream's next batch until the caller's stream is done.
        for value in tree_leaves(batch):
            if isinstance(value, torch.Tensor) and value.is_cuda:
                value.record_stream(current)
        return batch

    def __iter__(self) -> Iterator[dict]:
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        if self.plans is not None:
            plan_batches = iter(self.plans)

            # Plans are fetched on this thread (with 0 workers they are drawn here, from torch's
            # random state in program order); only decoding runs in the background.
            def submit(executor):
                plans = next(plan_batches, _END)
                if plans is _END:
                    return None
                return executor.submit(self._on_side_stream, stream, self._decode, plans)

        else:
            segment_stream = self.segments.interleaved()

            def next_segments():
                return next(segment_stream, _END)

            def submit(executor):
                return executor.submit(self._on_side_stream, stream, next_segments)

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videotl-decode")
        pending = None
        try:
            pending = submit(executor)
            while pending is not None:
                batch = pending.result()
                if batch is _END:
                    break
                # The next batch decodes while the caller works on this one.
                pending = submit(executor)
                yield self._hand_over(batch, stream)
        finally:
            if pending is not None:
                pending.cancel()
            executor.shutdown(wait=True)


def build_main_process_loader(
    cfg,
    split: str,
    mode: str,
    *,
    device: Union[str, torch.device],
    distributed: bool = False,
    dataset: Optional[VideoDataset] = None,
) -> VideoLoader:
    """:func:`~videotl.data.pipeline.build_loader`'s loader with decoding in this process on
    ``device`` ("cpu" too: the same path without streams). Sampler, batching, seeds and worker
    count are ``build_loader``'s; the workers only plan."""
    rank, world_size = rank_and_world(distributed)
    if dataset is None:
        dataset = build_dataset(cfg, split, mode)
    device = torch.device(device)
    if not isinstance(dataset, VideoDataset):
        raise ValueError(f"decoding in the main process needs a video dataset, not {type(dataset).__name__}")
    if mode == "segments":
        batches = segment_batches(cfg, dataset, rank=rank, world_size=world_size, device=device)
        return VideoLoader(
            MainProcessDecoder(dataset=dataset, device=device, segments=batches), dataset=dataset, device=device
        )
    plans = sample_loader(
        cfg,
        ClipPlans(dataset),
        mode,
        dataset=dataset,
        rank=rank,
        world_size=world_size,
        distributed=distributed,
        pin_memory=False,
        collate_fn=_keep_plans,
    )
    decoder = MainProcessDecoder(dataset=dataset, device=device, plans=plans)
    return VideoLoader(decoder, dataset=dataset, device=device, sampler=plans.sampler, workers=plans)
