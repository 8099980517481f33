"""Config -> dataset: the registry of datasets and the functions that read ``DATA`` / ``TRAIN`` /
``TEST`` keys for them (with ``image_folder.build_image_folder``, the only readers of config in
``videotl.data``; decoding, sampling and transforms take plain arguments).

A dataset is registered as a :class:`DatasetEntry`. A video dataset gives ``load_records(cfg,
split) -> (records, class_names)`` and gets videotl's sampling, decoding and transforms; any other
gives ``build(cfg, split, mode) -> Dataset`` following the sample contract of
:class:`~videotl.data.datasets.base.VideoDataset`::

    DATASETS.register("my_videos", DatasetEntry(load_records=read_my_annotations))
    # read_my_annotations(cfg, split) -> (records, class_names); then TRAIN.DATASET my_videos
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..registry import Registry
from .clip_reader import ClipReader
from .datasets.avid import load_avid
from .datasets.base import MODES, DatasetError, VideoDataset, VideoRecord
from .datasets.charades import load_charades
from .datasets.kinetics import load_kinetics
from .datasets.mmaction import load_mmaction_list
from .datasets.video_list import load_csv
from .decoding import read_clip
from .image_folder import build_image_folder
from .strategies import MultiViewClips, RandomClip, Strategy, WholeVideoSegments
from .transforms import EvalTransform, TrainTransform

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "build_dataset",
    "build_strategy",
    "build_transforms",
    "inputs_cross_as_uint8",
    "check_annotations",
    "dataset_from_records",
    "load_records",
    "read_test_clip",
]

logger = logging.getLogger("videotl.data")


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: video records to sample from (``load_records``), or a whole dataset (``build``)."""

    load_records: Optional[Callable[..., Tuple[List[VideoRecord], List[str]]]] = None
    build: Optional[Callable[..., object]] = None


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def _root(cfg) -> Path:
    if not cfg.DATA.PATH_TO_DATA_DIR:
        raise DatasetError("DATA.PATH_TO_DATA_DIR is empty: give the dataset root (see datasets/DATASETS.md)")
    return Path(cfg.DATA.PATH_TO_DATA_DIR)


def _charades_records(cfg, split: str):
    return load_charades(_root(cfg), split, video_dir=cfg.DATA.VIDEO_DIR)


def _avid_records(cfg, split: str):
    records, names, _ = load_avid(
        _root(cfg),
        split,
        video_dir=cfg.DATA.VIDEO_DIR,
        none_label=cfg.DATA.AVID_NONE_LABEL,
        unknown_label=cfg.DATA.AVID_UNKNOWN_LABEL,
    )
    return records, names


def _csv_records(cfg, split: str):
    return load_csv(
        _root(cfg),
        split,
        num_classes=cfg.MODEL.NUM_CLASSES,
        path_prefix=cfg.DATA.PATH_PREFIX,
        separator=cfg.DATA.PATH_LABEL_SEPARATOR,
    )


def _mmaction_records(cfg, split: str):
    return load_mmaction_list(_root(cfg), split, num_classes=cfg.MODEL.NUM_CLASSES, path_prefix=cfg.DATA.PATH_PREFIX)


def _kinetics_records(cfg, split: str):
    records, names, _ = load_kinetics(_root(cfg), split, video_dir=cfg.DATA.VIDEO_DIR)
    return records, names


DATASETS.register("charades", DatasetEntry(load_records=_charades_records))
DATASETS.register("avid", DatasetEntry(load_records=_avid_records))
DATASETS.register("csv", DatasetEntry(load_records=_csv_records))
DATASETS.register("mmaction2", DatasetEntry(load_records=_mmaction_records))
DATASETS.register("kinetics", DatasetEntry(load_records=_kinetics_records))
DATASETS.register("image_folder", DatasetEntry(build=build_image_folder))


def _dataset_name(cfg, mode: str) -> str:
    return cfg.TRAIN.DATASET if mode == "train" else cfg.TEST.DATASET


def load_records(cfg, split: str, dataset: str) -> Tuple[List[VideoRecord], List[str]]:
    """Parse the annotations of ``dataset`` (a registered video dataset: ``"charades"``, ``"avid"``,
    ``"csv"``, ``"mmaction2"``, ``"kinetics"``) for ``split``."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}: registered are {', '.join(DATASETS.names())}")
    entry = DATASETS.get(dataset)
    if entry.load_records is None:
        raise DatasetError(f"dataset {dataset!r} has no video records (it builds its own dataset)")
    return entry.load_records(cfg, split)


def check_annotations(cfg, split: str, mode: str) -> None:
    """Read the annotations that :func:`build_dataset` would read for ``split`` and ``mode``, without
    opening a video: a missing file, a malformed row or a video id the score file cannot hold
    raises its :class:`DatasetError` now. A dataset that builds itself is not checked."""
    dataset = _dataset_name(cfg, mode)
    if dataset in DATASETS and DATASETS.get(dataset).build is not None:
        return
    # The check only reads: what reading reports (clips missing, labels dropped) the build logs.
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        load_records(cfg, split, dataset)
    finally:
        logger.setLevel(previous)


def build_dataset(cfg, split: str, mode: str):
    """Build the dataset of ``split`` for ``mode``.

    Args:
        cfg: the validated config. ``mode == "train"`` reads ``TRAIN.DATASET``, the evaluation
            modes read ``TEST.DATASET``.
        split: the annotation split (Charades ``"train"`` / ``"test"``, AViD ``"train"`` /
            ``"val"``, CSV: the ``<split>.csv`` file name, MMAction2: the list's file name,
            Kinetics: ``"train"`` / ``"val"`` / the CSV's name).
        mode: ``"train"`` (one random clip per video), ``"views"`` (``TEST.NUM_ENSEMBLE_VIEWS x
            TEST.NUM_SPATIAL_CROPS`` clips per video) or ``"segments"`` (every ``DATA.NUM_FRAMES``
            segment of every video; probes all videos to count them).

    Returns:
        a :class:`~videotl.data.datasets.base.VideoDataset` (see there for the sample dict), or
        what a registered ``build`` returns.

    Raises:
        DatasetError: missing root / annotation / class file, malformed row, class count that
            differs from ``MODEL.NUM_CLASSES``.
    """
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r}: must be one of {MODES}")
    dataset = _dataset_name(cfg, mode)
    entry = DATASETS.get(dataset)
    if entry.build is not None:
        return entry.build(cfg, split, mode)
    records, class_names = load_records(cfg, split, dataset)
    if len(class_names) != cfg.MODEL.NUM_CLASSES:
        raise DatasetError(
            f"{dataset} lists {len(class_names)} classes but MODEL.NUM_CLASSES = {cfg.MODEL.NUM_CLASSES}; "
            "set MODEL.NUM_CLASSES to match"
        )
    built = dataset_from_records(cfg, records, class_names, mode=mode)
    logger.info("%s %s (%s mode): %d videos, %d samples", dataset, split, mode, built.num_videos, len(built))
    return built


def inputs_cross_as_uint8(cfg) -> bool:
    """``DATA.INPUT_DTYPE``: whether the loader leaves clips uint8 for the device to normalise
    ("auto": when ``DEVICE`` is CUDA, or "auto" on a machine with CUDA, as the run resolves it)."""
    choice = cfg.DATA.INPUT_DTYPE
    if choice != "auto":
        return choice == "uint8"
    return cfg.DEVICE.startswith("cuda") or (cfg.DEVICE == "auto" and torch.cuda.is_available())


def build_transforms(cfg, *, normalise: Optional[bool] = None) -> Tuple[TrainTransform, EvalTransform]:
    """The training and test clip transforms the config describes; ``normalise`` None follows
    ``DATA.INPUT_DTYPE``."""
    data = cfg.DATA
    normalise = not inputs_cross_as_uint8(cfg) if normalise is None else normalise
    train_transform = TrainTransform(
        jitter_scales=tuple(data.TRAIN_JITTER_SCALES),
        crop_size=data.TRAIN_CROP_SIZE,
        random_flip=data.RANDOM_FLIP,
        mean=data.MEAN,
        std=data.STD,
        normalise=normalise,
    )
    test_transform = EvalTransform(
        crop_size=data.TEST_CROP_SIZE,
        num_crops=cfg.TEST.NUM_SPATIAL_CROPS,
        mean=data.MEAN,
        std=data.STD,
        normalise=normalise,
    )
    return train_transform, test_transform


def read_test_clip(cfg, path, start_sec: float):
    """The centre-crop test clip of ``path`` from ``start_sec``, normalised as the model receives it
    (C, T, H, W): decoded at the test crop's short side, then the test transform."""
    _, transform = build_transforms(cfg, normalise=True)
    clip = read_clip(
        path,
        start_sec,
        num_frames=cfg.DATA.NUM_FRAMES,
        fps=cfg.DATA.TARGET_FPS,
        backend=cfg.DATA.DECODING_BACKEND,
        size=transform.short_side,
        autorotate=cfg.DATA.AUTOROTATE,
    )
    return transform(clip)


def dataset_from_records(
    cfg, records: Sequence[VideoRecord], class_names: Sequence[str], *, mode: str, multi_label: Optional[bool] = None
) -> VideoDataset:
    """A :class:`VideoDataset` over given records with the config's sampling and transforms (what
    :func:`build_dataset` does after parsing annotations; prediction on arbitrary files uses it
    directly). ``multi_label`` defaults to ``DATA.MULTI_LABEL``."""
    data = cfg.DATA
    reader = ClipReader(
        backend=data.DECODING_BACKEND,
        threads=cfg.DATA_LOADER.DECODER_THREADS,
        autorotate=data.AUTOROTATE,
        timeout=data.DECODE_TIMEOUT_SEC,
        probe_cache=data.PROBE_CACHE,
    )
    return VideoDataset(
        records,
        class_names,
        strategy=build_strategy(cfg, mode),
        reader=reader,
        multi_label=data.MULTI_LABEL if multi_label is None else multi_label,
        seed=cfg.RNG_SEED,
        max_skip_attempts=data.MAX_SKIP_ATTEMPTS,
    )


def build_strategy(cfg, mode: str) -> Strategy:
    """The sampling strategy of ``mode`` the config describes (see :mod:`videotl.data.strategies`)."""
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r}: must be one of {MODES}")
    data = cfg.DATA
    train_transform, test_transform = build_transforms(cfg)
    if mode == "train":
        return RandomClip(
            data.NUM_FRAMES,
            data.TARGET_FPS,
            train_transform,
            clip_labels=data.TRAIN_LABELS == "clip",
            min_coverage=data.TRAIN_LABEL_MIN_COVERAGE,
        )
    if mode == "views":
        return MultiViewClips(
            data.NUM_FRAMES,
            data.TARGET_FPS,
            test_transform,
            num_views=cfg.TEST.NUM_ENSEMBLE_VIEWS,
            num_crops=cfg.TEST.NUM_SPATIAL_CROPS,
        )
    return WholeVideoSegments(data.NUM_FRAMES, data.TARGET_FPS, test_transform)
