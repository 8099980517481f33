"""Inference on arbitrary video files: load a trained model and predict whole videos segment by
segment, through the same dataset, loader, model and aggregation code as evaluation."""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn

from ..config import config_from_text, get_default_config, load_config
from ..data import DatasetError, VideoRecord, build_loader, load_records
from ..data.build import dataset_from_records
from ..evaluation import ViewAggregator
from ..models import build_model, to_channels_last_3d
from ..utils.checkpoints import CheckpointError, model_state_from, read_checkpoint
from ..utils.fileio import atomic_write_text, json_safe
from .checkpoint import load_model_state
from .distributed import resolve_device
from .evaluator import score_batches

logger = logging.getLogger("videotl")


PathLike = Union[str, os.PathLike]


def load_model(
    checkpoint: PathLike,
    *,
    device: Union[None, str, torch.device] = None,
    cfg: Union[None, str, CfgNode] = None,
    overrides: Sequence[str] = (),
) -> nn.Module:
    """Rebuild a trained model from its checkpoint alone, in eval mode.

    The checkpoint carries the config it was trained with, the class names and the videotl
    version (``model.videotl_config``, ``model.class_names``, ``model.checkpoint_info``).
    ``cfg`` (a config, or a config file / packaged name) is needed only for a model-only file or a
    checkpoint written before checkpoints carried their config; ``overrides`` (``KEY VALUE`` pairs)
    change the stored or given config (data settings for inference, say). ``device`` defaults to
    CUDA when present, else the CPU. With ``TRAIN.CHANNELS_LAST`` the 3-D kernels are stored
    channels-last, as in training and testing.

    Raises:
        CheckpointError: the file cannot be read, has no config and none is given, or does not fit
            the configured model. ConfigError: the stored config does not validate.
    """
    state = read_checkpoint(checkpoint)
    if cfg is None:
        text = state.get("config")
        if not isinstance(text, str) or not text.strip():
            raise CheckpointError(
                f"{checkpoint} holds no config (a model-only file, or written by an older videotl): "
                "give the config it was trained with (cfg=... / --cfg)"
            )
        cfg = config_from_text(text, source=f"the config stored in {checkpoint}", overrides=overrides)
    elif not isinstance(cfg, CfgNode):
        cfg = load_config(str(cfg), overrides)
    elif overrides:
        cfg = config_from_text(cfg.dump(), source="the given config", overrides=overrides)
    model = build_model(cfg)
    try:
        load_model_state(model, model_state_from(state), strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{checkpoint} does not fit the configured model ({cfg.MODEL.ARCH}): {first}") from None
    names = state.get("class_names")
    if not (isinstance(names, list) and len(names) == cfg.MODEL.NUM_CLASSES):
        names = _dataset_class_names(cfg)
    model.videotl_config = cfg
    model.class_names = [str(n) for n in names]
    model.checkpoint_info = {
        "path": str(checkpoint),
        "epoch": state.get("epoch"),
        "iteration": state.get("iteration"),
        "videotl_version": state.get("videotl_version", ""),
    }
    target = resolve_device("auto") if device is None else torch.device(device)
    if cfg.TRAIN.CHANNELS_LAST:
        to_channels_last_3d(model)
    return model.to(target).eval()


def _dataset_class_names(cfg: CfgNode) -> List[str]:
    """Class names from the configured test set's annotations; numbered when they cannot be read."""
    try:
        _, names = load_records(cfg, cfg.TEST.SPLIT, cfg.TEST.DATASET)
    except (DatasetError, OSError):
        names = []
    if len(names) != cfg.MODEL.NUM_CLASSES:
        return [f"class {c}" for c in range(cfg.MODEL.NUM_CLASSES)]
    return list(names)


@dataclass
class VideoPrediction:
    """A whole video's prediction: merged scores and the per-segment scores behind them."""

    video: str
    scores: np.ndarray  # (num_classes,) merged over segments
    segment_scores: np.ndarray  # (num_segments, num_classes)
    segment_ranges: List[Tuple[float, float]] = field(default_factory=list)
    error: str = ""
    # The best classes with their merged scores, (name, score) in descending order.
    top: List[Tuple[str, float]] = field(default_factory=list)

    def top_k(self, k: int) -> List[int]:
        # A stable sort keeps ties in class order, as the official evaluation does.
        return [int(c) for c in np.argsort(-self.scores, kind="stable")[:k]]


def predict_videos(
    model: nn.Module,
    paths: Sequence[str],
    *,
    cfg: CfgNode,
    class_names: Sequence[str],
    device: torch.device,
    show_progress: bool = True,
    top_k: int = 5,
) -> List[VideoPrediction]:
    """Score every ``DATA.NUM_FRAMES`` segment of each video and merge them per video
    (``TEST.ENSEMBLE_METHOD``), exactly as ``TEST.MODE segments`` evaluation does.

    A file that cannot be read gets a prediction with ``error`` set (and -inf scores), and is not
    logged: the caller reports it; the other files are still predicted. When no file can be read,
    nothing is scored.
    """
    if len(class_names) != cfg.MODEL.NUM_CLASSES:
        raise ValueError(f"{len(class_names)} class names for MODEL.NUM_CLASSES = {cfg.MODEL.NUM_CLASSES}")
    records = [VideoRecord(video_id=str(p), path=Path(p), labels=()) for p in paths]
    unreadable_logger = logging.getLogger("videotl.data.unreadable")
    muted, unreadable_logger.disabled = unreadable_logger.disabled, True
    try:
        # Predictions need no labels; multi-label records accept the empty label set.
        dataset = dataset_from_records(cfg, records, class_names, mode="segments", multi_label=True)
        reasons = [dataset.unreadable_reason(record.path) for record in records]
        if all(reasons):
            empty = np.zeros((0, cfg.MODEL.NUM_CLASSES))
            return [
                VideoPrediction(str(r.path), np.full(cfg.MODEL.NUM_CLASSES, -np.inf), empty, error=reason)
                for r, reason in zip(records, reasons)
            ]
        return _score_videos(model, dataset, cfg=cfg, device=device, show_progress=show_progress, top_k=top_k)
    finally:
        unreadable_logger.disabled = muted


def _score_videos(
    model: nn.Module, dataset, *, cfg: CfgNode, device: torch.device, show_progress: bool, top_k: int
) -> List[VideoPrediction]:
    records, class_names = dataset.records, dataset.class_names
    loader = build_loader(cfg, cfg.TEST.SPLIT, "segments", dataset=dataset)
    parts = list(
        score_batches(
            model, loader, cfg=cfg, device=device, channels_last=cfg.TRAIN.CHANNELS_LAST, show_progress=show_progress
        )
    )
    video_index, view_index, valid, scores = (np.concatenate([part[i] for part in parts]) for i in range(4))
    aggregator = ViewAggregator(
        expected_views=[dataset.num_views(i) for i in range(len(records))],
        num_classes=cfg.MODEL.NUM_CLASSES,
        method=cfg.TEST.ENSEMBLE_METHOD,
    )
    aggregator.add(video_index=video_index, view_index=view_index, valid=valid, scores=scores)
    merged = aggregator.finalize()
    predictions = []
    for index, record in enumerate(records):
        rows = np.flatnonzero(video_index == index)
        rows = rows[np.argsort(view_index[rows], kind="stable")]
        error = dataset.unreadable_reason(record.path)
        if not error and not valid[rows].all():
            error = "could not be decoded"
        prediction = VideoPrediction(
            video=str(record.path),
            scores=merged[index],
            segment_scores=scores[rows],
            segment_ranges=dataset.segment_ranges(index),
            error=error,
        )
        if not error:
            prediction.top = [(class_names[c], float(prediction.scores[c])) for c in prediction.top_k(top_k)]
        predictions.append(prediction)
    return predictions


def inference_config(model: nn.Module) -> CfgNode:
    """The data and scoring settings to run ``model`` on videos: the config it was trained with
    (a model from :func:`load_model`), else the config its named entry describes
    (``model.default_cfg["config"]``), else the defaults with its clip settings; with the class
    count of the model and no DataLoader workers."""
    cfg = getattr(model, "videotl_config", None)
    default = getattr(model, "default_cfg", {}) or {}
    if cfg is None:
        cfg = load_config(default["config"]) if default.get("config") else get_default_config()
    cfg = cfg.clone()
    cfg.defrost()
    if not getattr(model, "videotl_config", None) and default:
        cfg.DATA.NUM_FRAMES = int(default.get("num_frames", cfg.DATA.NUM_FRAMES))
        cfg.DATA.TARGET_FPS = float(default.get("fps", cfg.DATA.TARGET_FPS))
        cfg.DATA.TEST_CROP_SIZE = int(default.get("test_crop_size", cfg.DATA.TEST_CROP_SIZE))
    if hasattr(model, "num_classes"):
        cfg.MODEL.NUM_CLASSES = int(model.num_classes)
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.freeze()
    return cfg


def predict(
    model_or_checkpoint: Union[nn.Module, PathLike],
    videos: Union[PathLike, Sequence[PathLike]],
    *,
    top_k: int = 5,
    device: Union[None, str, torch.device] = None,
    show_progress: bool = False,
) -> Union[VideoPrediction, List[VideoPrediction]]:
    """Predict whole videos: every segment scored and merged as evaluation does (same decode, same
    merge), in this process (no DataLoader workers).

    Args:
        model_or_checkpoint: a model (from :func:`load_model` or ``create_model``) or a checkpoint.
        videos: one video file, or several.
        top_k: how many classes ``prediction.top`` lists.
        device: default: the model's own device (CUDA when present for a checkpoint).

    Returns:
        a :class:`VideoPrediction` per video (a single one for a single path): ``top`` holds
        ``(class name, score)`` pairs, ``scores`` the merged scores of every class,
        ``segment_scores`` / ``segment_ranges`` the timeline. A file that cannot be read has
        ``error`` set.
    """
    if isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
        if device is not None:
            model = model.to(device)
    else:
        model = load_model(model_or_checkpoint, device=device)
    target = next(model.parameters()).device
    cfg = inference_config(model)
    names = list(getattr(model, "class_names", None) or [f"class {c}" for c in range(cfg.MODEL.NUM_CLASSES)])
    single = isinstance(videos, (str, os.PathLike))
    paths = [str(videos)] if single else [str(v) for v in videos]
    predictions = predict_videos(
        model, paths, cfg=cfg, class_names=names, device=target, show_progress=show_progress, top_k=top_k
    )
    return predictions[0] if single else predictions


def save_predictions(
    predictions: Sequence[VideoPrediction],
    *,
    class_names: Sequence[str],
    out_dir,
    top_k: int = 5,
    ground_truth: Optional[dict] = None,
) -> dict:
    """Write ``predictions.json`` (merged and per-segment scores with their time ranges) and one
    ``<video>_timeline.png`` per readable video (top-k classes over time, ground truth when given).

    Args:
        ground_truth: optional ``{video path: [(class, start_sec, end_sec), ...]}``.
    Returns:
        ``{"json": Path, "timelines": {video: Path}}``.
    """
    # matplotlib imports on use: loading it is a cost every videotl process would pay.
    from ..visualization import plot_timeline

    out_dir = Path(out_dir)
    ground_truth = ground_truth or {}
    payload, timelines = [], {}
    for prediction in predictions:
        entry = {"video": prediction.video, "error": prediction.error or None}
        if not prediction.error:
            top = prediction.top_k(top_k)
            entry["top_k"] = [{"class": c, "name": class_names[c], "score": float(prediction.scores[c])} for c in top]
            entry["scores"] = prediction.scores.tolist()
            entry["segments"] = [
                {"start_sec": start, "end_sec": end, "scores": row.tolist()}
                for (start, end), row in zip(prediction.segment_ranges, prediction.segment_scores)
            ]
            truth = ground_truth.get(prediction.video)
            if truth is not None:
                entry["ground_truth"] = [{"class": c, "start_sec": s, "end_sec": e} for c, s, e in truth]
            stem = Path(prediction.video).stem
            timelines[prediction.video] = plot_timeline(
                out_dir / f"{stem}_timeline.png",
                segment_ranges=prediction.segment_ranges,
                segment_scores=prediction.segment_scores,
                class_names=class_names,
                classes=top,
                title=f"{Path(prediction.video).name}: top-{len(top)} classes per {prediction.segment_ranges[0][1]:.2f} s segment",
                ground_truth=truth,
            )
        payload.append(entry)
    json_path = out_dir / "predictions.json"
    atomic_write_text(json_path, json.dumps(json_safe(payload), indent=1))
    return {"json": json_path, "timelines": timelines}
