"""The end-to-end demo behind ``tools/run_demo.py``: synthetic Charades -> train -> test -> mAP vs chance.

Everything a newcomer needs runs from one call, with no dataset on disk:

1. :func:`videotl_tools.harness.synthetic_charades.generate_synthetic_charades` writes the synthetic set
   to ``DATA.PATH_TO_DATA_DIR`` unless that folder already holds it (a rerun reuses it; an
   interrupted generation resumes).
2. :func:`videotl.engine.train` trains ``cfg`` (``configs/demo/synthetic_charades.yaml``); with
   ``TRAIN.AUTO_RESUME`` a rerun continues from the last checkpoint in ``OUTPUT_DIR``.
3. :func:`videotl.engine.test` scores every segment of each test video, merged per video, with the
   official Charades mAP.
4. The mAP is printed next to chance: the mean positive rate of the test labels, which is the
   expected mAP of scores that ignore the video, and the normalised gain
   ``(mAP - chance) / (1 - chance)``: 0 at chance, 1 for a perfect ranking.
5. :func:`draw_pictures` shows what the model learned, next to ``demo_result.json``: AP per class
   (time-reversed pairs side by side, chance marked), the training curves, the TokenLearner
   attention maps of one test clip (the paper's Figure 10) and the prediction timeline of two test
   videos with their ground truth.

The result also goes to ``OUTPUT_DIR/demo_result.json``.
"""

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode

from videotl.data import VideoRecord, load_records, probe
from videotl.data.build import read_test_clip
from videotl.data.sampling import clip_span
from videotl.engine.checkpoint import last_checkpoint
from videotl.engine.distributed import resolve_device
from videotl.engine.evaluator import EvalResult
from videotl.engine.inference import load_model, predict_videos
from videotl.engine.testing import test
from videotl.engine.trainer import train
from videotl.evaluation import plot_per_class
from videotl.utils.fileio import atomic_write_text
from videotl.visualization import (
    TokenMapMeasures,
    measure_token_maps,
    plot_timeline,
    plot_training_curves,
    render_token_attention,
)
from videotl_tools.harness.synthetic_charades import (
    MANIFEST_FILE,
    SPLIT_FILES,
    generate_synthetic_charades,
    is_generated,
    plan_synthetic_charades,
)

__all__ = [
    "DemoResult",
    "DEMO_CONFIG",
    "DEMO_DATASET",
    "draw_pictures",
    "ensure_synthetic_charades",
    "headline_map",
    "measure_test_tokens",
    "normalised_gain",
    "pair_partner",
    "pair_separation",
    "pick_timeline_videos",
    "process_cpu_seconds",
    "run_demo",
]

logger = logging.getLogger("videotl")

# The demo's config (a packaged name, found from any folder) and dataset: 200 training and 60 test videos of 15-40 s (about 2 hours of video).
DEMO_CONFIG = "configs/demo/synthetic_charades.yaml"
DEMO_DATASET: Dict[str, object] = {
    "seed": 0,
    "num_train": 200,
    "num_test": 60,
    "min_seconds": 15.0,
    "max_seconds": 40.0,
}
# Test videos whose token maps the demo measures (one clip each): enough for a stable median.
TOKEN_MEASURE_CLIPS = 25


def normalised_gain(mean_ap: float, chance: float) -> float:
    """``(mAP - chance) / (1 - chance)``: the fraction of the way from chance (0) to perfect (1)."""
    return (mean_ap - chance) / (1.0 - chance) if chance < 1.0 else float("nan")


def process_cpu_seconds() -> float:
    """CPU time of this process and of its finished children (loader workers, generator pool)."""
    try:
        import resource
    except ImportError:  # not on POSIX: this process only
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class DemoResult:
    """What the demo measured.

    Attributes:
        mean_ap: official Charades mAP of the test split (segments merged per video); if a class has
            no test positive, the mean over the classes that have one (``metric`` says which).
        metric: what ``mean_ap`` is.
        chance: mean positive rate of the test labels (the mAP of uninformed scores), over the
            same classes.
        normalised_gain: ``(mean_ap - chance) / (1 - chance)``.
        num_test_videos / num_classes: size of the evaluation (classes with test positives).
        seconds: wall time of each phase (``generate``, ``train``, ``test``, ``pictures``) and ``total``.
        cpu_seconds: CPU time of the whole run, loader workers and generator processes included
            (on an otherwise idle machine the wall time is about this over the number of cores used).
        load_average: the machine's 1-minute load average when the run ended (0 where unknown).
        output_dir: where the run wrote its logs, checkpoints, results and pictures.
        pictures: what :func:`draw_pictures` wrote, by name.
        pairs: :func:`pair_separation` of the test scores.
        metrics: every metric the evaluator returned.
        token_maps: :func:`measure_test_tokens` per TokenLearner module (its ``to_dict``).
    """

    mean_ap: float
    metric: str
    chance: float
    normalised_gain: float
    num_test_videos: int
    num_classes: int
    seconds: Dict[str, float]
    output_dir: str
    cpu_seconds: float = 0.0
    load_average: float = 0.0
    pictures: Dict[str, str] = field(default_factory=dict)
    pairs: Dict[str, float] = field(default_factory=dict)
    metrics: Dict[str, object] = field(default_factory=dict)
    token_maps: List[Dict[str, object]] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"mAP {self.mean_ap:.4f}, chance {self.chance:.4f} (mean positive rate), normalised gain "
            f"{self.normalised_gain:.3f} = (mAP - chance) / (1 - chance); {self.num_test_videos} test videos, "
            f"{self.num_classes} classes, {self.metric}"
        )
        if self.pairs:
            text += (
                f"\nAP against videos holding the time-reversed partner {self.pairs['ap_against_partner']:.3f} "
                f"(motion tells them apart), against the other videos {self.pairs['ap_against_others']:.3f}"
            )
        for measures in self.token_maps:
            text += f"\ntoken maps: {TokenMapMeasures(**measures).summary()}"
        return text


def pair_separation(result: EvalResult) -> Dict[str, float]:
    """Where the errors lie: each class's official AP against two kinds of negatives, averaged.

    - ``ap_against_partner``: the class's positives ranked among the negative videos that hold its
      pair partner (the same object doing the reverse, or blinking at the other rate). Only the
      motion in time tells these apart.
    - ``ap_against_others``: the positives among the negatives without the partner, which a
      single frame tells apart.

    A model that sees the objects but not the direction of their change scores high on the second
    and near chance on the first. Classes without positives, or without negatives of a kind, are
    left out of that mean.
    """
    from videotl.evaluation.metrics import official_average_precision

    scores, labels = np.asarray(result.scores, dtype=np.float64), np.asarray(result.labels)
    against_partner, against_others = [], []
    for c in range(labels.shape[1]):
        partner = pair_partner(c)
        positive = labels[:, c] == 1
        if not positive.any() or partner >= labels.shape[1]:
            continue
        for chosen, values in (
            (labels[:, partner] == 1, against_partner),
            (labels[:, partner] == 0, against_others),
        ):
            negatives = (labels[:, c] == 0) & chosen
            if negatives.any():
                keep = positive | negatives
                values.append(official_average_precision(scores[keep, c], labels[keep, c]))
    return {
        "ap_against_partner": float(np.mean(against_partner)) if against_partner else float("nan"),
        "ap_against_others": float(np.mean(against_others)) if against_others else float("nan"),
    }


def headline_map(result: EvalResult) -> Tuple[float, str, float, int]:
    """(mAP, what it is, chance, classes counted) of a multi-label evaluation.

    The official Charades mAP when every class has a test positive. Otherwise the official mean
    is NaN (as ``Charades_v1_classify.m`` prints it) and the mean of the same official per-class
    APs over the classes that have one is given instead. Chance is the positive rate over the same
    classes: labels are multi-hot per video, so uninformed scores reach that mAP in expectation.
    """
    labels = np.asarray(result.labels, dtype=np.float64)
    evaluated = labels.sum(axis=0) > 0
    if evaluated.all():
        value, metric = float(result.metrics["map"]), "official Charades mAP"
    else:
        value, metric = float(result.metrics["map_classes_with_positives"]), "mAP over the classes with test positives"
    return value, metric, float(labels[:, evaluated].mean()), int(evaluated.sum())


def ensure_synthetic_charades(
    root: str, *, progress: bool = True, num_workers: Optional[int] = None, **settings
) -> float:
    """Generate the synthetic set at ``root`` unless it is complete there; return the seconds spent.

    Raises:
        FileExistsError: ``root`` holds Charades annotation files that the generator did not write
            (a real Charades release is never overwritten), or a synthetic set with other settings.
    """
    path = Path(root)
    plan = plan_synthetic_charades(**settings)
    if is_generated(path, plan):
        logger.info(f"synthetic Charades already at {path}")
        return 0.0
    if not (path / MANIFEST_FILE).is_file() and any((path / name).exists() for name in SPLIT_FILES.values()):
        raise FileExistsError(
            f"{path} holds Charades annotation files that were not generated here (no {MANIFEST_FILE}); "
            "the demo does not write into a real dataset: set DATA.PATH_TO_DATA_DIR to another folder"
        )
    logger.info(f"generating synthetic Charades at {path} ({settings})")
    start = time.perf_counter()
    generate_synthetic_charades(path, progress=progress, num_workers=num_workers, **settings)
    return time.perf_counter() - start


def pair_partner(label: int) -> int:
    """The other member of a synthetic class's pair (its time reversal; the other rhythm for blinking)."""
    return label ^ 1


def pick_timeline_videos(records: Sequence[VideoRecord], *, count: int = 2, num_classes: int = 3) -> List[VideoRecord]:
    """``count`` test videos for timelines, chosen without looking at any score: those whose number
    of distinct classes is closest to ``num_classes`` (enough to show, few enough to read), first
    in file order among equals."""
    ranked = sorted(range(len(records)), key=lambda i: (abs(len(records[i].labels) - num_classes), i))
    return [records[i] for i in ranked[:count]]


def _token_clip_start(record: VideoRecord, *, span: float, duration: float) -> float:
    """Start of a clip centred on the video's longest action, kept inside the video."""
    label, start, end = max(record.intervals, key=lambda a: (a[2] - a[1], -a[1]))
    return float(min(max(0.0, (start + end - span) / 2), max(0.0, duration - span)))


def _clip_span(cfg: CfgNode) -> float:
    return clip_span(num_frames=cfg.DATA.NUM_FRAMES, fps=cfg.DATA.TARGET_FPS)


def _trained_model(cfg: CfgNode, checkpoint: Optional[str], device: torch.device) -> torch.nn.Module:
    weights = checkpoint or cfg.TEST.CHECKPOINT_FILE_PATH or str(last_checkpoint(Path(cfg.OUTPUT_DIR)))
    return load_model(weights, cfg=cfg, device=device)


def measure_test_tokens(
    cfg: CfgNode, *, checkpoint: Optional[str] = None, num_clips: int = TOKEN_MEASURE_CLIPS
) -> List[TokenMapMeasures]:
    """:func:`~videotl.visualization.measure_token_maps` of the trained model on the first
    ``num_clips`` test videos (file order, not scores), one clip each, centred on its longest action.
    Empty when the model has no TokenLearner-style module."""
    model = _trained_model(cfg, checkpoint, resolve_device(cfg.DEVICE))
    records, _ = load_records(cfg, cfg.TEST.SPLIT, cfg.TEST.DATASET)
    span = _clip_span(cfg)
    clips = (
        read_test_clip(cfg, record.path, _token_clip_start(record, span=span, duration=probe(record.path).duration))
        for record in [r for r in records if r.intervals][:num_clips]
    )
    return measure_token_maps(model, clips, mean=cfg.DATA.MEAN, std=cfg.DATA.STD)


def draw_pictures(
    cfg: CfgNode, result: EvalResult, *, chance: float, checkpoint: Optional[str] = None
) -> Dict[str, Path]:
    """What the trained model learned, as PNGs in ``OUTPUT_DIR`` (next to ``demo_result.json``).

    - ``per_class_ap.png``: official AP per class, in class order (the members of each
      time-reversed pair side by side), with the chance level.
    - ``training_curves.png``: training loss, learning rate and the evaluations from ``stats.jsonl``.
    - ``timeline_<id>.png`` for two test videos (:func:`pick_timeline_videos`): the score of each
      of their classes and of each class's pair partner, segment by segment, over the ground truth.
    - ``token_attention_grid.png`` (and ``token_attention.gif``): the first TokenLearner's
      attention maps on a clip of the first timeline video, centred on its longest action.

    Returns:
        name -> path of every picture written (the curves are left out when the run has no
        training log, the attention maps when the model has no TokenLearner).
    """
    from videotl.visualization.token_maps import tokenizer_modules

    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    pictures: Dict[str, Path] = {}
    value, _, _, _ = headline_map(result)
    ap_path = out / "per_class_ap.png"
    plot_per_class(
        ap_path,
        class_names=result.class_names,
        values=result.per_class["ap"],
        ylabel="AP",
        title=f"test AP per class: mAP {value:.3f}, normalised gain {normalised_gain(value, chance):.2f}",
        sort=False,
        reference=(chance, f"chance {chance:.3f}"),
    )
    pictures["per_class_ap"] = ap_path
    try:
        pictures["training_curves"] = plot_training_curves(out)
    except (FileNotFoundError, ValueError) as error:
        logger.info(f"no training curves: {error}")

    device = resolve_device(cfg.DEVICE)
    model = _trained_model(cfg, checkpoint, device)
    records, class_names = load_records(cfg, cfg.TEST.SPLIT, cfg.TEST.DATASET)
    chosen = [r for r in pick_timeline_videos(records) if r.intervals]
    predictions = predict_videos(
        model, [str(r.path) for r in chosen], cfg=cfg, class_names=class_names, device=device, show_progress=False
    )
    for record, prediction in zip(chosen, predictions):
        if prediction.error:
            logger.warning(f"no timeline for {record.path}: {prediction.error}")
            continue
        partners = {pair_partner(c) for c in record.labels if pair_partner(c) < len(class_names)}
        classes = sorted(set(record.labels) | partners)
        pictures[f"timeline_{record.video_id}"] = plot_timeline(
            out / f"timeline_{record.video_id}.png",
            segment_ranges=prediction.segment_ranges,
            segment_scores=prediction.segment_scores,
            class_names=class_names,
            classes=classes,
            title=f"test video {record.video_id}: score per {prediction.segment_ranges[0][1]:.2f} s segment "
            "(its classes and their pair partners)",
            ground_truth=record.intervals,
        )

    if not tokenizer_modules(model):
        logger.info("no attention maps: the model has no TokenLearner-style module")
    elif chosen and not predictions[0].error:
        record = chosen[0]
        start = _token_clip_start(record, span=_clip_span(cfg), duration=probe(record.path).duration)
        with torch.no_grad():
            written = render_token_attention(
                model,
                read_test_clip(cfg, record.path, start),
                out_dir=out,
                tokens=range(min(cfg.TOKENLEARNER.NUM_TOKENS, 8)),
                mean=cfg.DATA.MEAN,
                std=cfg.DATA.STD,
                fps=cfg.DATA.TARGET_FPS,
                start_sec=start,
                stem="token_attention",
            )
        pictures["token_attention"] = written["grid"]
    return pictures


def run_demo(
    cfg: CfgNode,
    *,
    dataset: Optional[Dict[str, float]] = None,
    num_workers: Optional[int] = None,
    progress: bool = True,
    pictures: bool = True,
) -> DemoResult:
    """Generate (when absent), train, test, draw; return and save the mAP next to chance.

    Args:
        cfg: the validated demo config; ``DATA.PATH_TO_DATA_DIR`` is the synthetic set's folder.
        dataset: generator settings (default :data:`DEMO_DATASET`).
        num_workers: generator processes (default: one per core).
        progress: progress bars for the generation.
        pictures: draw :func:`draw_pictures`' PNGs after the test.
    """
    settings = dict(DEMO_DATASET if dataset is None else dataset)
    start, cpu_start = time.perf_counter(), process_cpu_seconds()
    seconds = {
        "generate": ensure_synthetic_charades(
            cfg.DATA.PATH_TO_DATA_DIR, progress=progress, num_workers=num_workers, **settings
        )
    }
    begin = time.perf_counter()
    if cfg.TRAIN.ENABLE:
        train(cfg)
    seconds["train"] = time.perf_counter() - begin
    begin = time.perf_counter()
    result = test(cfg)
    seconds["test"] = time.perf_counter() - begin

    value, metric, chance, num_classes = headline_map(result)
    drawn: Dict[str, Path] = {}
    if pictures:
        begin = time.perf_counter()
        drawn = draw_pictures(cfg, result, chance=chance)
        seconds["pictures"] = time.perf_counter() - begin
    begin = time.perf_counter()
    token_maps = [measures.to_dict() for measures in measure_test_tokens(cfg)]
    seconds["token_maps"] = time.perf_counter() - begin
    seconds["total"] = time.perf_counter() - start
    demo = DemoResult(
        mean_ap=value,
        metric=metric,
        chance=chance,
        normalised_gain=normalised_gain(value, chance),
        num_test_videos=len(result.video_ids),
        num_classes=num_classes,
        seconds={name: round(value, 1) for name, value in seconds.items()},
        cpu_seconds=round(process_cpu_seconds() - cpu_start, 1),
        load_average=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else 0.0,
        output_dir=str(cfg.OUTPUT_DIR),
        pictures={name: str(path) for name, path in drawn.items()},
        pairs=pair_separation(result) if result.multi_label else {},
        metrics={k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))},
        token_maps=token_maps,
    )
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "demo_result.json", json.dumps({**asdict(demo), "dataset": settings}, indent=1) + "\n")
    return demo
