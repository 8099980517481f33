"""Inference on arbitrary video files: load a trained model and predict whole videos segment by
segment, through the same dataset, loader, model and aggregation code as evaluation."""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn

from ..data import VideoRecord, build_loader
from ..data.build import dataset_from_records
from ..evaluation import ViewAggregator
from ..evaluation.results import json_safe
from ..models import build_model
from ..utils.fileio import atomic_write_text
from ..visualization import plot_timeline
from .checkpoint import load_weights
from .distributed import resolve_device
from .evaluator import score_batches

logger = logging.getLogger("videotl")


def load_trained_model(cfg: CfgNode, checkpoint: str, *, device: Optional[torch.device] = None) -> nn.Module:
    """Build ``cfg``'s model, load ``checkpoint`` (a training checkpoint or a model-only file) and
    return it in eval mode on ``device`` (default: ``cfg.DEVICE``)."""
    device = device or resolve_device(cfg.DEVICE)
    model = build_model(cfg)
    load_weights(model, checkpoint)
    return model.to(device).eval()


@dataclass
class VideoPrediction:
    """A whole video's prediction: merged scores and the per-segment scores behind them."""

    video: str
    scores: np.ndarray  # (num_classes,) merged over segments
    segment_scores: np.ndarray  # (num_segments, num_classes)
    segment_ranges: List[Tuple[float, float]] = field(default_factory=list)
    error: str = ""

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
) -> List[VideoPrediction]:
    """Score every ``DATA.NUM_FRAMES`` segment of each video and merge them per video
    (``TEST.ENSEMBLE_METHOD``), exactly as ``TEST.MODE segments`` evaluation does.

    A file that cannot be read gets a prediction with ``error`` set (and -inf scores); the other
    files are still predicted.
    """
    if len(class_names) != cfg.MODEL.NUM_CLASSES:
        raise ValueError(f"{len(class_names)} class names for MODEL.NUM_CLASSES = {cfg.MODEL.NUM_CLASSES}")
    records = [VideoRecord(video_id=str(p), path=Path(p), labels=()) for p in paths]
    # Predictions need no labels; multi-label records accept the empty label set.
    dataset = dataset_from_records(cfg, records, class_names, mode="segments", multi_label=True)
    loader = build_loader(cfg, cfg.TEST.SPLIT, "segments", dataset=dataset)
    parts = list(score_batches(model, loader, cfg=cfg, device=device, show_progress=show_progress))
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
        error = dataset.broken.get(str(record.path), "")
        if not error and not valid[rows].all():
            error = "could not be decoded"
        predictions.append(
            VideoPrediction(
                video=str(record.path),
                scores=merged[index],
                segment_scores=scores[rows],
                segment_ranges=dataset.segment_ranges(index),
                error=error,
            )
        )
    return predictions


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
