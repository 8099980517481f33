"""Res5 ablations at small scale (the paper's Table 11, on the demo): train and test one config under
several res5 modules with the same budget, and tabulate mAP, compute and training speed.

A variant is named after a file in ``configs/ablations/``: its ``RES5`` and ``TOKENLEARNER`` keys
(only those the file itself sets, not its ``_BASE_`` chain) are applied on top of the base config.
The base config keeps its sizes (widths, tokens, frames, budget), so every variant differs from the
others in the res5 module alone.

With several seeds (``RNG_SEED``: initialisation, clip sampling and augmentation; the data stay
the same), every variant trains once per seed and the table gives the mean and the spread of the
mAP over the seeds.

Compute is counted with :func:`videotl.profiling.count_flops` on one test view
(``1 x 3 x DATA.NUM_FRAMES x DATA.TEST_CROP_SIZE^2``), in the paper's convention (GFLOPs = 2 x
multiply-adds). "Module" is the middle of the first converted res5 block (``stages.3.<i>.middle``:
whatever replaces the block's Conv2D + Conv1D pair, with its norm and activation), as in Table 11.
"""

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import yaml
from fvcore.common.config import CfgNode
from tqdm import tqdm

from videotl.config import find_config, load_config
from videotl.engine.testing import test
from videotl.engine.trainer import train
from videotl.utils.fileio import atomic_write_text

from .demo import headline_map, normalised_gain, process_cpu_seconds

__all__ = [
    "AblationRow",
    "AblationSummary",
    "ABLATION_DIR",
    "DEFAULT_VARIANTS",
    "VARIANT_LABELS",
    "variant_overrides",
    "measure_compute",
    "run_ablation",
    "summarise",
    "render_table",
    "render_document",
]

logger = logging.getLogger("videotl")

# The variants' folder among the configs shipped with videotl.
ABLATION_DIR = find_config("configs/ablations/tokenlearner.yaml").parent
_SECTIONS = ("RES5", "TOKENLEARNER")
# The default rows, in the paper's order.
DEFAULT_VARIANTS = ("tokenlearner", "conv2d_tokenlearner", "conv2d_conv1d", "joint_mhsa", "fixed_grid")
VARIANT_LABELS = {
    "tokenlearner": "TokenLearner + VectT + TokenFuser",
    "conv2d_tokenlearner": "Conv2D + TokenLearner + VectT + TokenFuser",
    "conv2d_conv1d": "Conv2D + Conv1D (X(2+1)D)",
    "joint_mhsa": "Joint space-time MHSA",
    "conv2d_joint_mhsa": "Conv2D + joint space-time MHSA",
    "fixed_grid": "Conv2D + fixed-grid tokens + VectT + TokenFuser",
    "dense_tokens": "Conv2D + dense tokens + VectT + TokenFuser",
    "tokenlearner_mhsa": "Conv2D + TokenLearner + MHSA + TokenFuser",
    "vector_broadcast": "Conv2D + TokenLearner + VectT + broadcast",
}


def variant_overrides(name: str, *, directory: Path = ABLATION_DIR) -> List[str]:
    """``KEY VALUE`` overrides of variant ``name``: the RES5 / TOKENLEARNER keys its file sets."""
    path = Path(directory) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise FileNotFoundError(f"no ablation config {path}; known variants: {', '.join(known)}")
    data = yaml.safe_load(path.read_text()) or {}
    overrides: List[str] = []
    for section in _SECTIONS:
        for key, value in (data.get(section) or {}).items():
            overrides += [
                f"{section}.{key}",
                yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip(),
            ]
    if not overrides:
        raise ValueError(f"{path} sets no {' or '.join(_SECTIONS)} key: it does not describe a res5 variant")
    return overrides


@dataclass
class AblationRow:
    """One trained and tested variant."""

    variant: str
    label: str
    mean_ap: float
    module_gflops: float
    module_params: int
    model_gflops: float
    model_params: int
    train_clips_per_s: float
    train_seconds: float
    clips: int
    output_dir: str
    # 1-minute load average of the machine when this variant's training ended (0: not recorded).
    load_average: float = 0.0
    # RNG_SEED of the run, and the chance level of its test labels (0: not recorded).
    seed: int = 0
    chance: float = 0.0
    # CPU seconds of the training (this process and its finished loader workers).
    train_cpu_seconds: float = 0.0


@dataclass
class AblationSummary:
    """One variant over its seeds: the mAP's mean, sample standard deviation (0 for one seed),
    min and max, and the compute (the same for every seed)."""

    variant: str
    label: str
    seeds: List[int]
    maps: List[float]
    mean_ap: float
    std_ap: float
    module_gflops: float
    module_params: int
    model_gflops: float
    train_clips_per_s: float
    train_cpu_seconds: float

    @property
    def spread(self) -> float:
        return max(self.maps) - min(self.maps)


def summarise(rows: Sequence[AblationRow]) -> List[AblationSummary]:
    """Group ``rows`` by variant (in order of first appearance) and reduce each group over its seeds."""
    groups: Dict[str, List[AblationRow]] = {}
    for row in rows:
        groups.setdefault(row.variant, []).append(row)
    summaries = []
    for variant, group in groups.items():
        maps = [r.mean_ap for r in group]
        mean = sum(maps) / len(maps)
        std = math.sqrt(sum((m - mean) ** 2 for m in maps) / (len(maps) - 1)) if len(maps) > 1 else 0.0
        first = group[0]
        summaries.append(
            AblationSummary(
                variant=variant,
                label=first.label,
                seeds=[r.seed for r in group],
                maps=maps,
                mean_ap=mean,
                std_ap=std,
                module_gflops=first.module_gflops,
                module_params=first.module_params,
                model_gflops=first.model_gflops,
                train_clips_per_s=sum(r.train_clips_per_s for r in group) / len(group),
                train_cpu_seconds=sum(r.train_cpu_seconds for r in group) / len(group),
            )
        )
    return summaries


def measure_compute(cfg: CfgNode) -> Dict[str, float]:
    """FLOPs and parameters of the whole model and of one converted res5 module, on one test view."""
    from videotl.models import build_model
    from videotl.profiling import count_flops

    model = build_model(cfg).eval()
    view = torch.zeros(1, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
    report = count_flops(model, view)
    depth = cfg.X3D.STAGE_DEPTHS[-1]
    block = sorted(i % depth for i in cfg.RES5.CONVERTED_BLOCKS)[0]
    name = f"stages.{len(cfg.X3D.STAGE_DEPTHS) - 1}.{block}.middle"
    if name not in report.modules:
        raise KeyError(f"{name} is not a module of {type(model).__name__}: cannot measure the res5 module")
    module = report.modules[name]
    if report.uncounted_matrix_ops:
        logger.warning(f"FLOP count leaves out matrix products: {report.uncounted_matrix_ops}")
    return {
        "module_gflops": module.gflops,
        "module_params": module.params,
        "model_gflops": report.gflops,
        "model_params": report.params,
    }


def run_ablation(
    cfg_file: str,
    variants: Sequence[str],
    *,
    output_root: str,
    overrides: Sequence[str] = (),
    seeds: Optional[Sequence[int]] = None,
    directory: Path = ABLATION_DIR,
    on_row: Optional[Callable[[List[AblationRow]], None]] = None,
) -> List[AblationRow]:
    """Train and test ``cfg_file`` once per variant and seed, each in ``output_root/<variant>``
    (``output_root/<variant>/seed<k>`` when ``seeds`` are given; ``None``: the config's RNG_SEED).

    A run whose ``ablation_row.json`` exists is not rerun (delete it to redo); an interrupted
    run resumes from its last checkpoint. ``on_row(rows_so_far)`` is called after each run
    (e.g. to rewrite the table, so that a long ablation shows its finished rows).
    """
    runs = [(name, seed) for name in variants for seed in ([None] if seeds is None else seeds)]
    rows = []
    for name, seed in tqdm(runs, desc="ablation runs", unit="run"):
        out = Path(output_root) / name if seed is None else Path(output_root) / name / f"seed{seed}"
        saved = out / "ablation_row.json"
        if saved.is_file():
            rows.append(AblationRow(**json.loads(saved.read_text())))
            logger.info(f"{name} (seed {seed}): already done ({saved})")
            if on_row is not None:
                on_row(list(rows))
            continue
        seed_override = [] if seed is None else ["RNG_SEED", str(seed)]
        cfg = load_config(
            cfg_file,
            [*overrides, *variant_overrides(name, directory=directory), *seed_override, "OUTPUT_DIR", str(out)],
        )
        compute = measure_compute(cfg)
        start, cpu_start = time.perf_counter(), process_cpu_seconds()
        summary = train(cfg)
        seconds = time.perf_counter() - start
        cpu = process_cpu_seconds() - cpu_start
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        result = test(cfg)
        clips = int(summary["iterations"]) * cfg.TRAIN.BATCH_SIZE_PER_DEVICE
        value, _, chance, _ = headline_map(result)
        row = AblationRow(
            variant=name,
            label=VARIANT_LABELS.get(name, name),
            mean_ap=value,
            train_clips_per_s=clips / seconds,
            train_seconds=seconds,
            clips=clips,
            output_dir=str(out),
            load_average=load,
            seed=int(cfg.RNG_SEED),
            chance=chance,
            train_cpu_seconds=cpu,
            **compute,
        )
        atomic_write_text(saved, json.dumps(asdict(row), indent=1) + "\n")
        rows.append(row)
        if on_row is not None:
            on_row(list(rows))
    return rows


def render_document(
    rows: Sequence[AblationRow],
    *,
    cfg: CfgNode,
    command: str,
    chance: Optional[float],
    num_test_videos: int,
    conditions: str,
) -> str:
    """The Markdown page: what was run (described from ``cfg``), the table, and how to read it."""
    frames, crop = cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE
    clips = sorted({row.clips for row in rows})
    seeds = sorted({row.seed for row in rows})
    seeds_text = (
        f"Each variant trained with {len(seeds)} seeds (RNG_SEED {', '.join(map(str, seeds))}: initialisation, clip "
        "sampling and augmentation; the same data and test set); the mAP column is their mean +- the sample "
        "standard deviation, the next column each seed's value, the normalised gain "
        "(mAP - chance) / (1 - chance) is that of the mean."
        if len(seeds) > 1
        else f"One seed (RNG_SEED {seeds[0] if seeds else cfg.RNG_SEED})."
    )
    return (
        "# Res5 ablation at small scale (synthetic Charades)\n\n"
        "The paper's Table 11 compares res5 modules of X(2+1)D-M on Charades. This is the same comparison on "
        f"the demo (X(2+1)D with res5 width {round(cfg.X3D.STAGE_DIMS[-1] * cfg.X3D.BOTTLENECK_FACTOR)}, "
        f"{frames} frames at {cfg.DATA.TARGET_FPS:g} fps, {crop} x {crop}, trained from scratch on the synthetic "
        "Charades set), every variant with the same data, schedule and number of training clips. A variant is "
        "the `RES5` / `TOKENLEARNER` keys of `configs/ablations/<name>.yaml`, applied to "
        f"res5 blocks {list(cfg.RES5.CONVERTED_BLOCKS)}.\n\n"
        f"Made by:\n\n```bash\n{command}\n```\n\n"
        f"{render_table(rows, chance=chance)}\n"
        f"- mAP: official Charades mAP on the {num_test_videos} test videos, every {frames}-frame segment scored and "
        f"merged per video by {cfg.TEST.ENSEMBLE_METHOD}. Chance is the mean positive rate of the test labels. "
        f"{seeds_text}\n"
        "- GFLOPs: 2 x multiply-adds (the paper's convention), counted with `videotl.profiling.count_flops` on one "
        f"1 x 3 x {frames} x {crop} x {crop} view. Module: the middle of one converted res5 block (what replaces "
        "Conv2D + Conv1D, with its norm and activation); model: the whole network.\n"
        "- Training clips/s: clips trained / wall time of `train(cfg)` (data loading and checkpoints included); "
        "training CPU s: the CPU time of `train(cfg)`, its loader workers included (less sensitive to the "
        "machine's load than the wall time), mean over the seeds.\n"
        f"- Budget: {' / '.join(map(str, clips))} training clips per variant "
        f"({cfg.SOLVER.MAX_EPOCH} epochs of one clip per training video, batch {cfg.TRAIN.BATCH_SIZE_PER_DEVICE}).\n"
        f"- Conditions: {conditions}\n"
        "- Reading it: the test set has "
        f"{num_test_videos} videos, so differences of a few points are within the noise of one run. A short budget "
        "measures how fast a variant starts to learn as much as where it ends: TokenFuser starts as the identity "
        "(zero-initialised), so a TokenLearner block contributes only once it has trained.\n"
    )


def render_table(rows: Sequence[AblationRow], *, chance: Optional[float] = None) -> str:
    """A Markdown table like the paper's Table 11: one line per variant, its mAP as mean +- sample
    standard deviation over the seeds with the seeds' values, and the normalised gain of the mean."""
    summaries = summarise(rows)
    lines = [
        "| res5 module | mAP (%) | per seed | normalised gain | module GFLOPs | module params | model GFLOPs "
        "| training clips/s | training CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for item in summaries:
        value = f"{100 * item.mean_ap:.1f}" + (f" +- {100 * item.std_ap:.1f}" if len(item.maps) > 1 else "")
        per_seed = " / ".join(f"{100 * m:.1f}" for m in item.maps)
        gain = f"{normalised_gain(item.mean_ap, chance):.2f}" if chance is not None else ""
        lines.append(
            f"| {item.label} | {value} | {per_seed} | {gain} | {item.module_gflops:.3f} | "
            f"{item.module_params / 1e3:.1f}K | {item.model_gflops:.2f} | {item.train_clips_per_s:.1f} | "
            f"{item.train_cpu_seconds:.0f} |"
        )
    if chance is not None:
        lines.append(f"| *chance (mean positive rate)* | {100 * chance:.1f} | | 0.00 | | | | | |")
    return "\n".join(lines) + "\n"
