"""The end-to-end demo behind ``tools/run_demo.py``: synthetic Charades -> train -> test -> mAP vs chance.

Everything a newcomer needs runs from one call, with no dataset on disk:

1. :func:`videotl.data.synthetic_charades.generate_synthetic_charades` writes the synthetic set
   to ``DATA.PATH_TO_DATA_DIR`` unless that folder already holds it (a rerun reuses it; an
   interrupted generation resumes).
2. :func:`videotl.engine.train` trains ``cfg`` (``configs/demo/synthetic_charades.yaml``); with
   ``TRAIN.AUTO_RESUME`` a rerun continues from the last checkpoint in ``OUTPUT_DIR``.
3. :func:`videotl.engine.test` scores every segment of each test video, merged per video, with the
   official Charades mAP.
4. The mAP is printed next to chance: the mean positive rate of the test labels, which is the
   expected mAP of scores that ignore the video.

The result also goes to ``OUTPUT_DIR/demo_result.json``.
"""

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from fvcore.common.config import CfgNode

from videotl.data.synthetic_charades import (
    MANIFEST_FILE,
    SPLIT_FILES,
    generate_synthetic_charades,
    is_generated,
    plan_synthetic_charades,
)
from videotl.engine.evaluator import EvalResult
from videotl.engine.trainer import test, train
from videotl.utils.fileio import atomic_write_text

__all__ = ["DemoResult", "DEMO_CONFIG", "DEMO_DATASET", "ensure_synthetic_charades", "headline_map", "run_demo"]

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


@dataclass
class DemoResult:
    """What the demo measured.

    Attributes:
        mean_ap: official Charades mAP of the test split (segments merged per video); if a class has
            no test positive, the mean over the classes that have one (``metric`` says which).
        metric: what ``mean_ap`` is.
        chance: mean positive rate of the test labels (the mAP of uninformed scores), over the
            same classes.
        num_test_videos / num_classes: size of the evaluation (classes with test positives).
        seconds: wall time of each phase (``generate``, ``train``, ``test``) and ``total``.
        output_dir: where the run wrote its logs, checkpoints and results.
        metrics: every metric the evaluator returned.
    """

    mean_ap: float
    metric: str
    chance: float
    num_test_videos: int
    num_classes: int
    seconds: Dict[str, float]
    output_dir: str
    metrics: Dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"mAP {self.mean_ap:.4f} on {self.num_test_videos} test videos, {self.num_classes} classes "
            f"(chance = mean positive rate {self.chance:.4f}; {self.mean_ap / self.chance:.1f}x chance; {self.metric})"
        )


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


def run_demo(
    cfg: CfgNode,
    *,
    dataset: Optional[Dict[str, float]] = None,
    num_workers: Optional[int] = None,
    progress: bool = True,
) -> DemoResult:
    """Generate (when absent), train, test; return and save the mAP next to chance.

    Args:
        cfg: the validated demo config; ``DATA.PATH_TO_DATA_DIR`` is the synthetic set's folder.
        dataset: generator settings (default :data:`DEMO_DATASET`).
        num_workers: generator processes (default: one per core).
        progress: progress bars for the generation.
    """
    settings = dict(DEMO_DATASET if dataset is None else dataset)
    start = time.perf_counter()
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
    seconds["total"] = time.perf_counter() - start

    value, metric, chance, num_classes = headline_map(result)
    demo = DemoResult(
        mean_ap=value,
        metric=metric,
        chance=chance,
        num_test_videos=len(result.video_ids),
        num_classes=num_classes,
        seconds={name: round(value, 1) for name, value in seconds.items()},
        output_dir=str(cfg.OUTPUT_DIR),
        metrics={k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))},
    )
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "demo_result.json", json.dumps({**asdict(demo), "dataset": settings}, indent=1) + "\n")
    return demo
