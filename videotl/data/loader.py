"""The loaders' shared pieces for the three modes, single process or DDP (assembled by
:func:`videotl.data.pipeline.build_loader`, and by the main-process decoder of
:mod:`videotl.data.device_decode`).

- train: shuffled each epoch (``loader.sampler.set_epoch(epoch)`` works with and without DDP;
  under DDP it is a ``DistributedSampler``).
- views: :class:`ShardSampler`, a contiguous, video-aligned share of the samples per rank,
  without padding or duplication: over all ranks every sample appears exactly once.
- segments: :class:`SegmentBatches`, an iterable that hands each DataLoader worker whole videos
  (the rank's share, as in views mode), decodes each video once, front to back, in one worker,
  and yields collated batches of ``TEST.BATCH_SIZE_PER_DEVICE`` segments as the segments are
  decoded (memory does not grow with the video's length). ``len(loader)`` is the exact number of
  batches.

Whatever the mode and the decode device, the loader handed out is a :class:`VideoLoader`.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, Sampler, get_worker_info
from torch.utils.data._utils.collate import default_collate

from .datasets.base import VideoDataset

__all__ = [
    "VideoLoader",
    "rank_and_world",
    "sample_loader",
    "segment_batches",
    "TrainSampler",
    "ShardSampler",
    "SegmentBatches",
    "rank_videos",
]


class VideoLoader:
    """The one loader type: batches of one structure whatever the mode and the decode device.

    Iterating gives one epoch of batches: dicts with the sample keys of
    :class:`~videotl.data.datasets.base.VideoDataset` (``"inputs"`` a float32 ``B x C x T x H x
    W`` tensor on ``device``, the other fields collated). ``len()`` is the number of batches.

    Attributes:
        dataset: the dataset the batches come from (``video_ids``, ``num_views``,
            ``video_labels``, ``class_names``, ``broken``).
        device: where the batches' inputs are (the decode device).
        sampler: the sampler told each epoch by :meth:`set_epoch`; None when the order does not
            depend on the epoch.
        num_workers / worker_init_fn: those of the DataLoader whose workers produce the
            samples or plans (0 / None without one); ``worker_init_fn`` may be replaced.
    """

    def __init__(self, batches, *, dataset, device="cpu", sampler=None, workers: Optional[DataLoader] = None):
        self.batches = batches
        self.dataset = dataset
        self.device = torch.device(device)
        self.sampler = sampler
        self.workers = workers

    @classmethod
    def of(cls, loader: DataLoader, *, dataset=None, sampler=None) -> VideoLoader:
        """A DataLoader whose workers make the batches on the CPU; ``dataset`` defaults to the
        DataLoader's and ``sampler`` to its sampler where that has ``set_epoch``."""
        if sampler is None and isinstance(loader.sampler, EPOCH_SAMPLERS):
            sampler = loader.sampler
        return cls(loader, dataset=loader.dataset if dataset is None else dataset, sampler=sampler, workers=loader)

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    @property
    def num_workers(self) -> int:
        return 0 if self.workers is None else self.workers.num_workers

    @property
    def worker_init_fn(self):
        return None if self.workers is None else self.workers.worker_init_fn

    @worker_init_fn.setter
    def worker_init_fn(self, fn) -> None:
        if self.workers is not None:
            self.workers.worker_init_fn = fn

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.batches)


class TrainSampler(Sampler[int]):
    """A random permutation per epoch, seeded by ``seed + epoch`` (single-process training).

    Has ``set_epoch`` like ``DistributedSampler``, so the trainer calls it the same way.
    """

    def __init__(self, num_samples: int, *, seed: int = 0):
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


def rank_videos(num_videos: int, *, rank: int, world_size: int) -> range:
    """The contiguous block of videos that ``rank`` evaluates (blocks differ in size by at most one)."""
    return range(rank * num_videos // world_size, (rank + 1) * num_videos // world_size)


class ShardSampler(Sampler[int]):
    """Evaluation sampler: this rank's videos' samples, in order, each exactly once overall.

    Videos are split into contiguous blocks (so all views of a video stay on one rank and its C
    crops can share one decode); nothing is padded, so ranks may get a few samples more or less.
    ``set_epoch`` exists and does nothing.
    """

    def __init__(self, dataset: VideoDataset, *, rank: int = 0, world_size: int = 1):
        self.indices: List[int] = []
        for video in rank_videos(dataset.num_videos, rank=rank, world_size=world_size):
            self.indices.extend(dataset.sample_range(video))

    def set_epoch(self, epoch: int) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# Samplers whose order depends on the epoch they are told.
EPOCH_SAMPLERS = (TrainSampler, ShardSampler, DistributedSampler)


class SegmentBatches(IterableDataset):
    """Collated batches of segment samples; each worker takes whole videos and decodes each once.

    Worker ``w`` of ``W`` takes every W-th of ``videos``; its last batch may be short. Batches
    are dicts as the default collate makes them from :class:`VideoDataset` samples.
    """

    def __init__(
        self, dataset: VideoDataset, *, videos: Sequence[int], batch_size: int, num_workers: int, device="cpu"
    ):
        if dataset.mode != "segments":
            raise ValueError("SegmentBatches needs a dataset in segments mode")
        self.dataset = dataset
        self.videos = list(videos)
        self.batch_size = int(batch_size)
        self.num_workers = max(1, int(num_workers))
        # Where frames are decoded; anything but the CPU belongs in the main process.
        self.device = torch.device(device)

    def _share(self, worker: int) -> List[int]:
        return self.videos[worker :: self.num_workers]

    def __iter__(self):
        info = get_worker_info()
        # Outside a worker, the shares are walked one after another: the same batches either way.
        workers = [info.id] if info is not None else range(self.num_workers)
        for worker in workers:
            yield from self._batches(self._share(worker))

    def interleaved(self) -> Iterator[dict]:
        """All batches in one process, in the order a DataLoader with ``num_workers`` workers
        yields them: one batch from each worker's share in turn, finished shares dropping out."""
        streams = [self._batches(self._share(w)) for w in range(self.num_workers)]
        while streams:
            for stream in list(streams):
                batch = next(stream, None)
                if batch is None:
                    streams.remove(stream)
                else:
                    yield batch

    def _batches(self, videos: Sequence[int]):
        # Each sample's inputs are written straight into its slot of the batch tensor, so that
        # batching is no extra copy of every clip; the other fields are collated as usual.
        remaining = sum(self.dataset.num_views(v) for v in videos)
        inputs: Optional[torch.Tensor] = None
        buffer: List[dict] = []
        spare = _SpareBatches() if self.device.type == "cpu" and get_worker_info() is None else None

        def slot() -> torch.Tensor:
            nonlocal inputs
            if not buffer:
                rows = max(1, min(self.batch_size, remaining))
                inputs = spare.take(self._batch_shape(rows)) if spare is not None else None
                if inputs is None:
                    inputs = self._batch_inputs(rows)
                    if spare is not None:
                        spare.keep(inputs)
            return inputs[len(buffer)]

        for video in videos:
            for sample in self.dataset.iter_segment_samples(video, device=self.device, into=slot):
                buffer.append(sample)
                remaining -= 1
                if len(buffer) == len(inputs):
                    # A view, not the tensor itself: while the consumer holds it, it counts as a
                    # user of the storage, and the spare is not handed out again.
                    yield _collate(buffer, inputs.view(inputs.shape))
                    buffer = []
            # Nothing of a finished video is needed again.
            self.dataset.release_cache()
        if buffer:
            yield _collate(buffer, inputs[: len(buffer)])

    def _batch_shape(self, rows: int) -> Tuple[int, ...]:
        size = self.dataset.strategy.transform.crop_size
        return (rows, 3, self.dataset.num_frames, size, size)

    def _batch_inputs(self, rows: int) -> torch.Tensor:
        shape = self._batch_shape(rows)
        # uint8 when the transform leaves normalising to the device (DATA.INPUT_DTYPE).
        dtype = torch.float32 if self.dataset.strategy.transform.normalise else torch.uint8
        if self.device.type == "cpu" and get_worker_info() is not None:
            # As default_collate does in a worker: the batch reaches the main process through
            # shared memory without another copy.
            storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
            return torch.empty(0, dtype=dtype).set_(storage).view(shape)
        return torch.empty(shape, dtype=dtype, device=self.device)

    def num_samples(self) -> int:
        return sum(self.dataset.num_views(v) for v in self.videos)

    def __len__(self) -> int:
        # Exact: every worker's batches, counted the way __iter__ forms them.
        shares = [self._share(w) for w in range(self.num_workers)]
        return sum(math.ceil(sum(self.dataset.num_views(v) for v in share) / self.batch_size) for share in shares)


class _SpareBatches:
    """Batch tensors made in this process, handed out again once nothing else holds them.

    A fresh batch tensor is fresh memory, and the first write to every page of it costs the
    kernel a page fault; a batch the consumer has dropped is reused instead. A tensor counts
    as dropped when no other tensor (a view, the consumer's batch) shares its storage.
    """

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self.tensors: List[torch.Tensor] = []

    def take(self, shape) -> Optional[torch.Tensor]:
        for tensor in self.tensors:
            if tuple(tensor.shape) == tuple(shape) and _storage_users(tensor) == 1:
                return tensor
        return None

    def keep(self, tensor: torch.Tensor) -> None:
        if len(self.tensors) < self.capacity and _storage_users(tensor) is not None:
            self.tensors.append(tensor)


def _storage_users(tensor: torch.Tensor) -> Optional[int]:
    """How many tensors share ``tensor``'s storage (None where PyTorch does not say)."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return None
    storage = tensor.untyped_storage()
    # The storage object made here for the question counts as one more user.
    return int(count(storage._cdata)) - 1


def _collate(samples: List[dict], inputs: torch.Tensor) -> dict:
    """``default_collate`` of the samples, with ``inputs`` (already holding their inputs, in
    order) in place of stacking them."""
    rest = default_collate([{k: v for k, v in sample.items() if k != "inputs"} for sample in samples])
    return {k: inputs if k == "inputs" else rest[k] for k in samples[0]}


def rank_and_world(distributed: bool) -> Tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless ``distributed``."""
    if not distributed:
        return 0, 1
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "build_loader(distributed=True) needs torch.distributed initialised (torchrun, init_process_group)"
        )
    return dist.get_rank(), dist.get_world_size()


def segment_batches(cfg, dataset: VideoDataset, *, rank: int, world_size: int, device="cpu") -> SegmentBatches:
    """The :class:`SegmentBatches` of this rank's videos, as :func:`~videotl.data.pipeline.build_loader` makes them."""
    return SegmentBatches(
        dataset,
        videos=rank_videos(dataset.num_videos, rank=rank, world_size=world_size),
        batch_size=cfg.TEST.BATCH_SIZE_PER_DEVICE,
        num_workers=cfg.DATA_LOADER.NUM_WORKERS,
        device=device,
    )


def sample_loader(
    cfg,
    items,
    mode: str,
    *,
    dataset: VideoDataset,
    rank: int,
    world_size: int,
    distributed: bool,
    pin_memory: bool,
    collate_fn=None,
) -> DataLoader:
    """The train / views DataLoader of :func:`~videotl.data.pipeline.build_loader` over ``items`` (the samples of
    ``dataset``, or anything indexed like them: the clip plans of GPU decoding), with the same
    sampler, batching and seeds either way."""
    workers = cfg.DATA_LOADER.NUM_WORKERS
    generator = torch.Generator().manual_seed(cfg.RNG_SEED)
    if mode == "train":
        batch_size = cfg.TRAIN.BATCH_SIZE_PER_DEVICE
        if distributed:
            sampler = DistributedSampler(items, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.RNG_SEED)
        else:
            sampler = TrainSampler(len(items), seed=cfg.RNG_SEED)
        return DataLoader(
            items,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=pin_memory,
            # A ragged last batch is dropped, unless it would be the only one (tiny datasets).
            drop_last=len(sampler) >= 2 * batch_size,
            persistent_workers=workers > 0,
            generator=generator,
            collate_fn=collate_fn,
        )
    if mode != "views":
        raise ValueError(f"mode = {mode!r}: sample loaders are for 'train' and 'views'")
    return DataLoader(
        items,
        batch_size=cfg.TEST.BATCH_SIZE_PER_DEVICE,
        sampler=ShardSampler(dataset, rank=rank, world_size=world_size),
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=False,
        generator=generator,
        collate_fn=collate_fn,
    )
