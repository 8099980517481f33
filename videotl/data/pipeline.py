"""Config -> loader: :func:`build_loader`, the one entry for the three modes and both decode
devices. It sits above the shared pieces (:mod:`videotl.data.loader`) and the main-process
decoder (:mod:`videotl.data.device_decode`), which depend on the shared pieces and never on it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DataLoader

from .build import build_dataset
from .datasets.base import VideoDataset
from .device_decode import build_main_process_loader, resolve_decode_device
from .loader import VideoLoader, rank_and_world, sample_loader, segment_batches

__all__ = ["build_loader"]


def build_loader(
    cfg, split: str, mode: str, *, distributed: bool = False, dataset: Optional[VideoDataset] = None
) -> VideoLoader:
    """The :class:`~videotl.data.loader.VideoLoader` of ``build_dataset(cfg, split, mode)``.

    Batch size: ``TRAIN.BATCH_SIZE_PER_DEVICE`` (train) or ``TEST.BATCH_SIZE_PER_DEVICE``;
    workers: ``DATA_LOADER.NUM_WORKERS``; pinned memory when ``DATA_LOADER.PIN_MEMORY`` and CUDA
    is available. ``loader.dataset`` is the dataset in every mode.

    With ``DATA.DECODE_DEVICE cuda`` the batches come from a
    :class:`~videotl.data.device_decode.MainProcessDecoder`: workers only plan the clips, the main
    process decodes them on its GPU (on the CPU, logged, where CUDA is absent). Its batches are
    the ones this function gives with ``cpu``, with ``"inputs"`` on the device.

    Args:
        distributed: torch.distributed is initialised and each rank loads its share (train:
            ``DistributedSampler``, padded as usual; evaluation: each sample exactly once).
        dataset: an already built dataset to wrap instead of building one.
    """
    if cfg.DATA.DECODE_DEVICE != "cpu":
        device = resolve_decode_device(cfg.DATA.DECODE_DEVICE)
        return build_main_process_loader(cfg, split, mode, device=device, distributed=distributed, dataset=dataset)
    rank, world_size = rank_and_world(distributed)
    if dataset is None:
        dataset = build_dataset(cfg, split, mode)
    workers = cfg.DATA_LOADER.NUM_WORKERS
    pin = bool(cfg.DATA_LOADER.PIN_MEMORY) and torch.cuda.is_available()
    if mode == "segments":
        batches = segment_batches(cfg, dataset, rank=rank, world_size=world_size)
        generator = torch.Generator().manual_seed(cfg.RNG_SEED)
        loader = DataLoader(batches, batch_size=None, num_workers=workers, pin_memory=pin, generator=generator)
        return VideoLoader.of(loader, dataset=dataset)
    return VideoLoader.of(
        sample_loader(
            cfg,
            dataset,
            mode,
            dataset=dataset,
            rank=rank,
            world_size=world_size,
            distributed=distributed,
            pin_memory=pin,
        )
    )
