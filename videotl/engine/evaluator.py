"""Evaluation: run the model over every view or segment, gather across ranks, merge per video, score."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn
from tqdm import tqdm

from ..data.transforms import normalize_batch
from ..evaluation import (
    ViewAggregator,
    ViewCountError,
    plot_per_class,
    write_metrics_json,
    write_per_class_csv,
    write_submission,
)
from ..evaluation.metrics import metric_suite
from . import distributed as du
from .precision import autocast

__all__ = ["EvalResult", "evaluate", "head_activation", "prepare_inputs", "save_results", "score_batches"]

logger = logging.getLogger("videotl")


@dataclass
class EvalResult:
    """Per-video scores (float64, ``-inf`` where nothing could be scored) and the metrics."""

    video_ids: List[str]
    class_names: List[str]
    scores: np.ndarray
    labels: np.ndarray
    multi_label: bool
    metrics: Dict[str, Any]
    per_class: Dict[str, List[float]] = field(default_factory=dict)
    # Videos with at least one undecodable view, and those with none decodable (ranked last).
    failed_videos: List[str] = field(default_factory=list)
    unscored_videos: List[str] = field(default_factory=list)


def head_activation(name: str, logits: torch.Tensor) -> torch.Tensor:
    """Logits -> scores as ``MODEL.HEAD_ACT`` says; computed in float32 whatever AMP produced."""
    logits = logits.float()
    if name == "sigmoid":
        return torch.sigmoid(logits)
    if name == "softmax":
        return torch.softmax(logits, dim=1)
    if name == "none":
        return logits
    raise ValueError(f"MODEL.HEAD_ACT = {name!r}: must be 'sigmoid', 'softmax' or 'none'")


def video_dataset(loader):
    """The dataset with ``video_ids`` / ``num_views`` of a :class:`~videotl.data.loader.VideoLoader`."""
    dataset = loader.dataset
    for name in ("video_ids", "num_views", "video_labels"):
        if not hasattr(dataset, name):
            raise TypeError(f"{type(dataset).__name__} has no {name}: the evaluator needs the video dataset contract")
    return dataset


def prepare_inputs(
    inputs: torch.Tensor, device: torch.device, channels_last: bool, cfg: Optional[CfgNode] = None
) -> torch.Tensor:
    """A batch's clips on ``device``, normalised there when they cross as uint8
    (``DATA.INPUT_DTYPE``), channels-last under ``TRAIN.CHANNELS_LAST`` (training and evaluation
    alike), their batch size marked dynamic: a compiled model (``MODEL.COMPILE``) traces one graph
    for every batch size instead of one more for an epoch's or an evaluation's ragged last batch
    (past dynamo's recompile limit it would fall back to eager without a word)."""
    inputs = inputs.to(device, non_blocking=True)
    if inputs.dtype == torch.uint8:
        if cfg is None:
            raise ValueError("uint8 inputs need the config's DATA.MEAN and DATA.STD to be normalised")
        inputs = normalize_batch(inputs, mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
    torch._dynamo.maybe_mark_dynamic(inputs, 0)
    return inputs


def _forward_at_least_two(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's outputs for ``inputs``, a batch of one run as two copies: dynamo specialises a
    dimension of size 1, so a compiled model would trace one more graph for an evaluation's last
    batch of one clip (eval mode: each clip's output does not depend on the others)."""
    if len(inputs) != 1:
        return model(inputs)
    pair = torch.cat([inputs, inputs])
    torch._dynamo.maybe_mark_dynamic(pair, 0)
    return model(pair)[:1]


def score_batches(
    model: nn.Module,
    loader,
    *,
    cfg: CfgNode,
    device: torch.device,
    amp_dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
    show_progress: bool = True,
) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Run the model over ``loader`` and yield, per batch, ``(video_index, view_index, valid, scores)``
    as numpy arrays (scores float64 after ``MODEL.HEAD_ACT``). Evaluation and prediction both use it;
    the model is in eval mode meanwhile and back in its former mode afterwards. ``amp_dtype``: the
    autocast dtype (training's, so that a model is evaluated as it trains), None for full precision."""
    was_training = model.training
    model.eval()
    bar = tqdm(
        loader,
        desc="eval",
        dynamic_ncols=True,
        disable=not (show_progress and du.is_main_process()),
        unit="batch",
        mininterval=1.0,
    )
    try:
        for batch in bar:
            # Grad mode is entered per batch, not around the yield, so it never leaks to the caller.
            with torch.no_grad(), autocast(device, amp_dtype):
                logits = _forward_at_least_two(model, prepare_inputs(batch["inputs"], device, channels_last, cfg))
            scores = head_activation(cfg.MODEL.HEAD_ACT, logits).cpu().numpy().astype(np.float64)
            valid = torch.as_tensor(batch.get("valid", torch.ones(len(scores), dtype=torch.bool))).numpy()
            yield (
                torch.as_tensor(batch["video_index"]).numpy().reshape(-1),
                torch.as_tensor(batch["view_index"]).numpy().reshape(-1),
                valid.astype(bool).reshape(-1),
                scores,
            )
    finally:
        bar.close()
        model.train(was_training)


def evaluate(
    model: nn.Module,
    loader,
    *,
    cfg: CfgNode,
    device: torch.device,
    amp_dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
    show_progress: bool = True,
) -> EvalResult:
    """Score every sample of ``loader`` (this rank's shard), gather all ranks, merge per video.

    Every rank returns the same result. The dataset announces how many views (or segments) each
    video must receive; a video receiving another number stops the evaluation with an error rather
    than being dropped from the metric, and undecodable videos are listed by name.
    """
    dataset = video_dataset(loader)
    video_ids = list(dataset.video_ids)
    num_classes = cfg.MODEL.NUM_CLASSES
    expected = [dataset.num_views(i) for i in range(len(video_ids))]
    # Views are merged as they arrive: only per-video rows are kept and, under DDP, exchanged.
    local = ViewAggregator(expected_views=expected, num_classes=num_classes, method=cfg.TEST.ENSEMBLE_METHOD)
    nonfinite = 0
    # A view-count error on one rank is carried through the gather so that all ranks stop with it
    # instead of the others waiting for this one forever.
    error = ""
    batches = score_batches(
        model,
        loader,
        cfg=cfg,
        device=device,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        show_progress=show_progress,
    )
    for video_index, view_index, valid, scores in batches:
        nonfinite += int((~np.isfinite(scores[valid])).any(axis=1).sum())
        try:
            local.add(video_index=video_index, view_index=view_index, scores=scores, valid=valid)
        except ViewCountError as raised:
            error = f"rank {du.get_rank()}: {raised}"
            batches.close()
            break

    aggregator, nonfinite = _merge_ranks(
        local, error, nonfinite, expected=expected, num_classes=num_classes, method=cfg.TEST.ENSEMBLE_METHOD
    )
    video_scores = aggregator.finalize()
    labels = torch.as_tensor(dataset.video_labels()).numpy()
    class_names = list(getattr(dataset, "class_names", [f"class {c}" for c in range(num_classes)]))
    failed = [video_ids[i] for i in aggregator.failed_videos()]
    unscored = [video_ids[i] for i in aggregator.unscored_videos()]
    result = EvalResult(
        video_ids=video_ids,
        class_names=class_names,
        scores=video_scores,
        labels=labels,
        multi_label=labels.ndim == 2,
        metrics={},
        failed_videos=failed,
        unscored_videos=unscored,
    )
    _score(result, cfg.TEST.METRIC)
    result.metrics.update(
        num_videos=len(video_ids),
        num_views=int(aggregator.expected.sum()),
        num_failed_videos=len(failed),
        num_unscored_videos=len(unscored),
    )
    if nonfinite:
        result.metrics["num_nonfinite_views"] = nonfinite
    if du.is_main_process():
        _warn_about(result, nonfinite)
    return result


def _merge_ranks(
    local: ViewAggregator, error: str, nonfinite: int, *, expected: List[int], num_classes: int, method: str
) -> Tuple[ViewAggregator, int]:
    """Every rank's per-video rows merged (``local`` itself in one process) and the non-finite
    views counted over all ranks; a view-count error on any rank is raised on every rank."""
    if not du.is_distributed():
        if error:
            raise ViewCountError(error)
        return local, nonfinite
    parts = du.all_gather_objects((None if error else local.partial(), error, nonfinite))
    errors = [part[1] for part in parts if part[1]]
    if errors:
        raise ViewCountError("; ".join(errors))
    aggregator = ViewAggregator(expected_views=expected, num_classes=num_classes, method=method)
    for part in parts:
        aggregator.merge(part[0])
    return aggregator, sum(part[2] for part in parts)


def _warn_about(result: EvalResult, nonfinite: int) -> None:
    """Warnings for a diverged model (non-finite scores) and for videos with undecodable views."""
    if nonfinite:
        logger.warning(f"{nonfinite} decoded views got NaN or infinite scores: the model has diverged")
    failed, unscored = result.failed_videos, result.unscored_videos
    if failed:
        shown = ", ".join(failed[:20]) + (f" and {len(failed) - 20} more" if len(failed) > 20 else "")
        logger.warning(
            f"{len(failed)} videos had views that could not be decoded: {shown}. Their scores use only the "
            f"decoded views; {len(unscored)} with none decoded rank last in every class (counted as misses)."
        )


def _score(result: EvalResult, metric: str = "auto") -> None:
    metrics, per_class = metric_suite(metric, multi_label=result.multi_label)(result.scores, result.labels)
    result.metrics.update(metrics)
    result.per_class = per_class


def save_results(
    result: EvalResult, *, output_dir: str, submission_file: str, extra: Optional[Dict[str, Any]] = None
) -> Dict[str, Path]:
    """Write the score file, per-class CSV and PNG and ``test_metrics.json`` into ``output_dir``."""
    out = Path(output_dir)
    paths = {
        "scores": out / submission_file,
        "per_class_csv": out / "per_class_results.csv",
        "per_class_png": out / "per_class_results.png",
        "metrics": out / "test_metrics.json",
    }
    written = write_submission(paths["scores"], video_ids=result.video_ids, scores=result.scores)
    write_per_class_csv(paths["per_class_csv"], class_names=result.class_names, columns=result.per_class)
    key, label = ("ap", "AP") if result.multi_label else ("accuracy", "top-1 accuracy")
    if result.multi_label:
        m = result.metrics
        headline = f"mAP {m['map']:.4f}"
        if m["classes_without_positives"]:
            headline += (
                f"; {m['num_classes_evaluated']} of {m['num_classes']} classes have a positive, "
                f"their mean {m['map_classes_with_positives']:.4f}"
            )
    else:
        headline = f"top-1 {result.metrics['top1']:.4f}"
    plot_per_class(
        paths["per_class_png"],
        class_names=result.class_names,
        values=result.per_class[key],
        ylabel=label,
        title=f"{label} per class ({headline})",
    )
    payload = dict(result.metrics)
    payload.update(extra or {})
    payload["videos_in_score_file"] = written
    payload["failed_videos"] = result.failed_videos
    payload["unscored_videos"] = result.unscored_videos
    payload["per_class"] = {name: dict(zip(result.class_names, values)) for name, values in result.per_class.items()}
    write_metrics_json(paths["metrics"], payload)
    return paths
