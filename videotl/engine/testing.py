"""``test(cfg)``: the library function behind tools/test_net.py."""

import logging
from pathlib import Path
from typing import Optional

from fvcore.common.config import CfgNode

from ..utils.fileio import check_writable
from . import distributed as du
from .checkpoint import checkpoint_dir, last_checkpoint, load_weights
from .evaluator import EvalResult, evaluate, save_results
from .interrupt import RunInterrupted, StopSignals, shield_workers
from .precision import resolve_amp_dtype
from .run import (
    WORKER_DEATH_ERRORS,
    LoaderBuilder,
    ModelBuilder,
    compile_model,
    default_loader_builder,
    default_model_builder,
    format_metrics,
    holding_output_dir,
    model_on,
    setup_run,
)
from .run_log import StatsWriter, setup_logging

__all__ = ["test"]

logger = logging.getLogger("videotl")


def test(
    cfg: CfgNode, *, build_model_fn: Optional[ModelBuilder] = None, build_loader_fn: Optional[LoaderBuilder] = None
) -> EvalResult:
    """Evaluate TEST.CHECKPOINT_FILE_PATH (or the run's last checkpoint) on the test views or segments.

    Holds OUTPUT_DIR's lock like ``train``; SIGINT or SIGTERM stop it at once with
    :class:`~videotl.engine.interrupt.RunInterrupted` (each result file is written whole or not at all).
    """
    build_model_fn = build_model_fn or default_model_builder()
    build_loader_fn = build_loader_fn or default_loader_builder()
    ctx = setup_run(cfg)
    out = Path(cfg.OUTPUT_DIR)
    stop = StopSignals()
    try:
        with stop, holding_output_dir(ctx, out):
            return _test(cfg, ctx, stop, build_model_fn=build_model_fn, build_loader_fn=build_loader_fn)
    except RunInterrupted as interrupted:
        raise RunInterrupted(
            f"interrupted by {interrupted.signal_name} while testing; run the same command to test again",
            interrupted.signum,
        ) from None


def _test(cfg, ctx, stop: StopSignals, *, build_model_fn, build_loader_fn) -> EvalResult:
    device = ctx.device
    out = Path(cfg.OUTPUT_DIR)
    amp_dtype = resolve_amp_dtype(cfg.TRAIN.AMP_DTYPE, enabled=cfg.TRAIN.MIXED_PRECISION, device=device)
    channels_last = cfg.TRAIN.CHANNELS_LAST
    if ctx.is_main:
        setup_logging(str(out), is_main=True)

    def check() -> None:
        if cfg.TENSORBOARD.ENABLE:
            check_writable(out / "tensorboard", name="OUTPUT_DIR/tensorboard")

    du.on_main(ctx, check)
    weights = cfg.TEST.CHECKPOINT_FILE_PATH or last_checkpoint(cfg.OUTPUT_DIR)
    if not weights:
        raise FileNotFoundError(
            f"nothing to test: TEST.CHECKPOINT_FILE_PATH is empty and {checkpoint_dir(out)} "
            "holds no checkpoint_epoch_XXXXX.pyth"
        )
    model = model_on(device, build_model_fn, cfg)
    state = load_weights(model, weights)
    compile_model(model, cfg)
    logger.info(f"testing {weights} on split {cfg.TEST.SPLIT!r} ({cfg.TEST.MODE})")
    loader = shield_workers(build_loader_fn(cfg, cfg.TEST.SPLIT, cfg.TEST.MODE, distributed=ctx.world_size > 1))
    try:
        result = evaluate(model, loader, cfg=cfg, device=device, amp_dtype=amp_dtype, channels_last=channels_last)
    except WORKER_DEATH_ERRORS:
        if not stop.requested:
            raise
        # A loader worker died of the stop signal (SIGTERM to the process group).
        raise stop.interrupted("stopped during the test") from None
    if stop.requested:
        raise stop.interrupted("stopped during the test")
    logger.info(f"test: {format_metrics(result.metrics)}")
    du.on_main(ctx, lambda: _write_results(cfg, result, weights=weights, iteration=state.get("iteration")))
    return result


def _write_results(cfg: CfgNode, result: EvalResult, *, weights, iteration) -> None:
    """The ``test`` record of stats.jsonl and, under TEST.SAVE_RESULTS, the result files."""
    stats = StatsWriter(cfg.OUTPUT_DIR, enabled=True, tensorboard=cfg.TENSORBOARD.ENABLE)
    try:
        stats.write(
            {"type": "test", "checkpoint": str(weights), **result.metrics},
            step=int(iteration) if isinstance(iteration, int) else 0,
            prefix="test/",
        )
    finally:
        stats.close()
    if cfg.TEST.SAVE_RESULTS:
        paths = save_results(
            result,
            output_dir=cfg.OUTPUT_DIR,
            submission_file=cfg.TEST.SUBMISSION_FILE,
            extra={
                "checkpoint": str(weights),
                "test_mode": cfg.TEST.MODE,
                "ensemble_method": cfg.TEST.ENSEMBLE_METHOD,
                "split": cfg.TEST.SPLIT,
            },
        )
        logger.info("wrote " + ", ".join(str(p) for p in paths.values()))
