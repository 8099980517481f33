"""Why the demo's tokens do not look at what moves: train the demo for a short budget under one
change and measure its token maps (issue 35's diagnosis, docs/visualization.md).

A probe is a name and ``KEY VALUE`` overrides on the demo config (none for the baseline). Each probe
trains with the same seed and data for ``epochs`` epochs, tests on the whole test split, and
measures the first TokenLearner's maps on the test clips (:func:`~.demo.measure_test_tokens`).
Its row goes to ``output_root/<name>/probe_row.json``; a probe whose row exists is not rerun.
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from videotl.config import load_config
from videotl.engine.testing import test
from videotl.engine.trainer import train
from videotl.utils.fileio import atomic_write_text

from .demo import DEMO_DATASET, ensure_synthetic_charades, headline_map, measure_test_tokens, normalised_gain

__all__ = ["ProbeRow", "render_probe_table", "run_probe"]

logger = logging.getLogger("videotl")


@dataclass
class ProbeRow:
    """One probe: its change, the normalised gain of the test mAP and the first TokenLearner's
    measures (median token motion ratio, mean pairwise map correlation, border ratio, grid)."""

    name: str
    overrides: List[str]
    epochs: int
    seed: int
    normalised_gain: float
    median_motion_ratio: float
    correlation: float
    border_ratio: float
    grid: List[int]
    seconds: float


def run_probe(
    cfg_file: str,
    name: str,
    overrides: Sequence[str],
    *,
    epochs: int,
    output_root: str,
    dataset: Optional[Dict[str, object]] = None,
) -> ProbeRow:
    """Train, test and measure the demo under ``overrides`` in ``output_root/<name>``, on the
    synthetic set of ``dataset``'s settings (default: the demo's)."""
    out = Path(output_root) / name
    saved = out / "probe_row.json"
    if saved.is_file():
        return ProbeRow(**json.loads(saved.read_text()))
    cfg = load_config(cfg_file, [*overrides, "SOLVER.MAX_EPOCH", str(epochs), "OUTPUT_DIR", str(out)])
    ensure_synthetic_charades(cfg.DATA.PATH_TO_DATA_DIR, progress=False, **(dataset or DEMO_DATASET))
    start = time.perf_counter()
    train(cfg)
    value, _, chance, _ = headline_map(test(cfg))
    measured = measure_test_tokens(cfg)
    if not measured:
        raise ValueError(f"probe {name}: the model has no TokenLearner-style module to measure")
    first = measured[0]
    row = ProbeRow(
        name=name,
        overrides=list(overrides),
        epochs=epochs,
        seed=int(cfg.RNG_SEED),
        normalised_gain=normalised_gain(value, chance),
        median_motion_ratio=first.median_motion_ratio,
        correlation=first.correlation,
        border_ratio=first.border_ratio,
        grid=first.grid,
        seconds=time.perf_counter() - start,
    )
    atomic_write_text(saved, json.dumps(asdict(row), indent=1) + "\n")
    return row


def render_probe_table(rows: Sequence[ProbeRow]) -> str:
    """One Markdown line per probe: its change, grid, gain and the two measures."""
    lines = [
        "| probe | change | epochs | grid | normalised gain | median token motion ratio | mean pairwise correlation "
        "| border ratio |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        change = " ".join(f"`{key} {value}`" for key, value in zip(row.overrides[::2], row.overrides[1::2])) or "none"
        lines.append(
            f"| {row.name} | {change} | {row.epochs} | {row.grid[0]}x{row.grid[1]} | {row.normalised_gain:.3f} | "
            f"{row.median_motion_ratio:.2f} | {row.correlation:.2f} | {row.border_ratio:.2f} |"
        )
    return "\n".join(lines) + "\n"
