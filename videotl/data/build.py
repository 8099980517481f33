"""Config -> dataset. The only place in ``videotl.data`` that reads config keys."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .datasets.avid import load_avid
from .datasets.base import MODES, DatasetError, VideoDataset, VideoRecord
from .datasets.charades import load_charades
from .datasets.video_list import load_csv
from .image_folder import build_image_folder
from .transforms import EvalTransform, TrainTransform

__all__ = ["build_dataset", "build_transforms", "dataset_from_records", "load_records"]

logger = logging.getLogger("videotl.data")


def _dataset_name(cfg, mode: str) -> str:
    return cfg.TRAIN.DATASET if mode == "train" else cfg.TEST.DATASET


def load_records(cfg, split: str, dataset: str) -> Tuple[List[VideoRecord], List[str]]:
    """Parse the annotations of ``dataset`` (``"charades"``, ``"avid"``, ``"csv"``) for ``split``."""
    if not cfg.DATA.PATH_TO_DATA_DIR:
        raise DatasetError("DATA.PATH_TO_DATA_DIR is empty: give the dataset root (see datasets/DATASETS.md)")
    root = Path(cfg.DATA.PATH_TO_DATA_DIR)
    if dataset == "charades":
        return load_charades(root, split, video_dir=cfg.DATA.VIDEO_DIR)
    if dataset == "avid":
        records, names, _ = load_avid(
            root,
            split,
            video_dir=cfg.DATA.VIDEO_DIR,
            none_label=cfg.DATA.AVID_NONE_LABEL,
            unknown_label=cfg.DATA.AVID_UNKNOWN_LABEL,
        )
        return records, names
    if dataset == "csv":
        return load_csv(
            root,
            split,
            num_classes=cfg.MODEL.NUM_CLASSES,
            path_prefix=cfg.DATA.PATH_PREFIX,
            separator=cfg.DATA.PATH_LABEL_SEPARATOR,
        )
    raise DatasetError(f"unknown dataset {dataset!r}: expected 'charades', 'avid' or 'csv'")


def build_dataset(cfg, split: str, mode: str) -> VideoDataset:
    """Build the dataset of ``split`` for ``mode``.

    Args:
        cfg: the validated config. ``mode == "train"`` reads ``TRAIN.DATASET``, the evaluation
            modes read ``TEST.DATASET``.
        split: the annotation split (Charades ``"train"`` / ``"test"``, AViD ``"train"`` /
            ``"val"``, CSV: the ``<split>.csv`` file name).
        mode: ``"train"`` (one random clip per video), ``"views"`` (``TEST.NUM_ENSEMBLE_VIEWS x
            TEST.NUM_SPATIAL_CROPS`` clips per video) or ``"segments"`` (every ``DATA.NUM_FRAMES``
            segment of every video; probes all videos to count them).

    Returns:
        a :class:`~videotl.data.datasets.base.VideoDataset` (see there for the sample dict).

    Raises:
        DatasetError: missing root / annotation / class file, malformed row, class count that
            differs from ``MODEL.NUM_CLASSES``.
    """
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r}: must be one of {MODES}")
    dataset = _dataset_name(cfg, mode)
    if dataset == "image_folder":
        return build_image_folder(cfg, split, mode)
    records, class_names = load_records(cfg, split, dataset)
    if len(class_names) != cfg.MODEL.NUM_CLASSES:
        raise DatasetError(
            f"{dataset} lists {len(class_names)} classes but MODEL.NUM_CLASSES = {cfg.MODEL.NUM_CLASSES}; "
            "set MODEL.NUM_CLASSES to match"
        )
    built = dataset_from_records(cfg, records, class_names, mode=mode)
    logger.info("%s %s (%s mode): %d videos, %d samples", dataset, split, mode, built.num_videos, len(built))
    return built


def build_transforms(cfg) -> Tuple[TrainTransform, EvalTransform]:
    """The training and test clip transforms the config describes."""
    data = cfg.DATA
    train_transform = TrainTransform(
        jitter_scales=tuple(data.TRAIN_JITTER_SCALES),
        crop_size=data.TRAIN_CROP_SIZE,
        random_flip=data.RANDOM_FLIP,
        mean=data.MEAN,
        std=data.STD,
    )
    test_transform = EvalTransform(
        crop_size=data.TEST_CROP_SIZE, num_crops=cfg.TEST.NUM_SPATIAL_CROPS, mean=data.MEAN, std=data.STD
    )
    return train_transform, test_transform


def dataset_from_records(
    cfg, records: Sequence[VideoRecord], class_names: Sequence[str], *, mode: str, multi_label: Optional[bool] = None
) -> VideoDataset:
    """A :class:`VideoDataset` over given records with the config's sampling and transforms (what
    :func:`build_dataset` does after parsing annotations; prediction on arbitrary files uses it
    directly). ``multi_label`` defaults to ``DATA.MULTI_LABEL``."""
    data = cfg.DATA
    train_transform, test_transform = build_transforms(cfg)
    return VideoDataset(
        records,
        class_names,
        mode=mode,
        num_frames=data.NUM_FRAMES,
        fps=data.TARGET_FPS,
        multi_label=data.MULTI_LABEL if multi_label is None else multi_label,
        clip_labels=data.TRAIN_LABELS == "clip",
        clip_label_min_coverage=data.TRAIN_LABEL_MIN_COVERAGE,
        train_transform=train_transform,
        test_transform=test_transform,
        num_ensemble_views=cfg.TEST.NUM_ENSEMBLE_VIEWS,
        num_spatial_crops=cfg.TEST.NUM_SPATIAL_CROPS,
        backend=data.DECODING_BACKEND,
        decoder_threads=cfg.DATA_LOADER.DECODER_THREADS,
        seed=cfg.RNG_SEED,
        max_skip_attempts=data.MAX_SKIP_ATTEMPTS,
    )
