"""``train(cfg)`` and ``test(cfg)``: the library functions behind tools/train_net.py and tools/test_net.py.

Nothing here knows which model or dataset it runs: both come from the builders
(``videotl.models.build_model``, ``videotl.data.build_loader``), which callers may replace.
"""

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .. import __version__
from ..config import ConfigError, cuda_only_settings, dump_config
from ..utils.fileio import WriteError, check_writable
from . import distributed as du
from .checkpoint import (
    CheckpointError,
    capture_rng_state,
    checkpoint_dir,
    checkpoint_path,
    last_checkpoint,
    list_checkpoints,
    load_model_state,
    load_weights,
    model_state_from,
    one_line,
    read_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from .evaluator import EvalResult, _prepare_inputs, evaluate, save_results
from .interrupt import RunInterrupted, StopSignals, shield_workers
from .output_dir import RunLockError, checkpoint_size_estimate, run_lock
from .precision import autocast, needs_grad_scaler, resolve_amp_dtype
from .run_log import StatsWriter, memory_mb, setup_logging, write_environment
from .solver import build_loss, build_optimizer, build_schedule

__all__ = ["train", "test", "setup_run"]

logger = logging.getLogger("videotl")

ModelBuilder = Callable[[CfgNode], nn.Module]
LoaderBuilder = Callable[..., Any]

# torch.compile options under MODEL.COMPILE: static shapes, so each mode (train, eval) and batch
# shape gets its own graph instead of one with symbolic sizes.
COMPILE_OPTIONS: Dict[str, Any] = {"dynamic": False}

# What a DataLoader raises in the main process when its workers die of a stop signal sent to the
# whole process group: RuntimeError once a worker is gone, or a connection error when one dies
# while handing over a batch's shared memory. Caught only while a stop was requested.
WORKER_DEATH_ERRORS = (RuntimeError, ConnectionError, EOFError)


def _model_on(device: torch.device, build_model_fn: ModelBuilder, cfg: CfgNode) -> nn.Module:
    """The model on ``device``, its 3-D kernels channels-last under ``TRAIN.CHANNELS_LAST``."""
    model = build_model_fn(cfg).to(device)
    if cfg.TRAIN.CHANNELS_LAST:
        from ..models import to_channels_last_3d

        model = to_channels_last_3d(model)
    return model


def _default_model_builder() -> ModelBuilder:
    from ..models import build_model

    return build_model


def _default_loader_builder() -> LoaderBuilder:
    from ..data import build_loader

    return build_loader


def setup_run(cfg: CfgNode) -> du.DistContext:
    """Process group, device, seeds, determinism and console logging for one process of a run.

    ``OUTPUT_DIR/log.txt`` joins the log once the run holds the folder's lock (:func:`train`, :func:`test`).
    """
    if cfg.TRAIN.DETERMINISTIC:
        # cuBLAS reads this when CUDA starts; it must be set before the device is touched.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if cfg.DEVICE == "auto" and not torch.cuda.is_available():
        # load_config refuses these with DEVICE cpu; "auto" only finds out here.
        problems = cuda_only_settings(cfg)
        if problems:
            raise ConfigError("; ".join(problems) + ", but DEVICE = 'auto' finds no CUDA device")
    ctx = du.init_distributed(device=cfg.DEVICE, backend=cfg.DIST_BACKEND, timeout_minutes=cfg.DIST_TIMEOUT_MINUTES)
    setup_logging(None, is_main=ctx.is_main)
    # Each rank draws different augmentations; the seed is still fixed per rank.
    seed = cfg.RNG_SEED + ctx.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cfg.TRAIN.DETERMINISTIC:
        # CPU runs must be bit-exact (resume test); on CUDA a few ops used by video models (3-D
        # adaptive pooling backward) have no deterministic kernel, so warn instead of failing.
        torch.use_deterministic_algorithms(True, warn_only=ctx.device.type == "cuda")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return ctx


def _set_epoch(loader, epoch: int) -> None:
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
            return


def _labels_for(loss_fn: nn.Module, labels: torch.Tensor, device: torch.device) -> torch.Tensor:
    labels = labels.to(device, non_blocking=True)
    return labels.float() if isinstance(loss_fn, nn.BCEWithLogitsLoss) else labels.long()


def _evaluate_keeping_rng(model, make_loader: Callable[[], Any], **kwargs) -> Tuple[EvalResult, Any]:
    """Build the test loader if needed and evaluate, without touching the training RNG streams
    (loader seeds, dropout): a run that evaluates and a run resumed after that evaluation (which
    it does not repeat) draw the same numbers afterwards."""
    state = capture_rng_state()
    try:
        loader = make_loader()
        return evaluate(model, loader, **kwargs), loader
    finally:
        restore_rng_state(state)


def _format_metrics(metrics: Dict[str, Any]) -> str:
    keys = (
        "map",
        "map_classes_with_positives",
        "map_sklearn",
        "num_classes_evaluated",
        "top1",
        "top5",
        "mean_class_accuracy",
        "num_videos",
        "num_failed_videos",
    )
    parts = []
    for key in keys:
        if key in metrics:
            value = metrics[key]
            parts.append(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)


def _on_main(ctx: du.DistContext, work: Callable[[], Any]) -> Any:
    """Run ``work`` on rank 0 and return its result on every rank; an expected error there (a
    folder that cannot be written, a held lock, an unreadable checkpoint) is raised on every rank,
    so that none waits for rank 0 in a later collective."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = work()
        except (WriteError, RunLockError, CheckpointError) as raised:
            if ctx.world_size == 1:
                raise
            error = raised
    if ctx.world_size > 1:
        result, error = du.broadcast_object((result, error))
    if error is not None:
        raise error
    return result


@contextlib.contextmanager
def _holding_output_dir(ctx: du.DistContext, out: Path):
    """OUTPUT_DIR's run lock for the block, taken by rank 0; every rank stops if it cannot be had."""
    with contextlib.ExitStack() as stack:

        def take() -> None:
            stack.enter_context(run_lock(out))

        _on_main(ctx, take)
        yield


def _check_output(cfg: CfgNode, *, model: nn.Module, optimizer) -> None:
    """Before any work: every folder the run writes takes a file, and the checkpoints' file
    system has room for one more checkpoint."""
    out = Path(cfg.OUTPUT_DIR)
    check_writable(out, name="OUTPUT_DIR")
    check_writable(
        checkpoint_dir(out), name="OUTPUT_DIR/checkpoints", need_bytes=checkpoint_size_estimate(model, optimizer)
    )
    if cfg.TENSORBOARD.ENABLE:
        check_writable(out / "tensorboard", name="OUTPUT_DIR/tensorboard")


@dataclass
class _Progress:
    """Where training is, for the interruption message and the counts of skipped samples."""

    epoch: int = 0
    iteration: int = 0
    # What the run was doing besides training steps, for the message ("while evaluating").
    phase: str = "while starting"
    skipped_samples: int = 0
    broken_videos: frozenset = frozenset()


def _interrupted_message(signal_name: str, progress: _Progress, out: Path) -> str:
    last = last_checkpoint(out)
    if progress.phase == "while starting":
        where = f"interrupted by {signal_name} while starting"
    else:
        where = f"interrupted by {signal_name} at epoch {progress.epoch}, iteration {progress.iteration}"
        if progress.phase:
            where += f" ({progress.phase})"
    if last is None:
        return f"{where}; no checkpoint was saved yet; run the same command to start again"
    return f"{where}; the last checkpoint is {last}; run the same command to resume"


def train(
    cfg: CfgNode, *, build_model_fn: Optional[ModelBuilder] = None, build_loader_fn: Optional[LoaderBuilder] = None
) -> Dict[str, Any]:
    """Train ``cfg``'s model, resuming from OUTPUT_DIR when TRAIN.AUTO_RESUME finds a checkpoint.

    The run holds OUTPUT_DIR's lock throughout (:class:`~videotl.engine.output_dir.RunLockError`
    if another run has it) and checks that its folders can be written before any work. SIGINT and
    SIGTERM stop it at the next step boundary with :class:`~videotl.engine.interrupt.RunInterrupted`,
    whose message says where and how to resume.

    With the default loaders and a run that will test (TEST.ENABLE, as tools/train_net.py does after
    training) or evaluate (TRAIN.EVAL_PERIOD), the test split's annotations are read first, so that
    their errors stop the run before it trains.

    Returns the metrics of the last evaluation (empty if none ran), the final iteration and epoch
    count, and the unreadable training samples skipped (``skipped_samples``, over the whole run
    including the part before a resume) and distinct broken videos found (``broken_videos``).
    """
    if build_loader_fn is None and (cfg.TEST.ENABLE or cfg.TRAIN.EVAL_PERIOD > 0):
        from ..data.build import check_annotations

        # The test split is read only after training (or at the first evaluation): a malformed row
        # or a video id its score file cannot hold fails now, before any work.
        check_annotations(cfg, cfg.TEST.SPLIT, cfg.TEST.MODE)
    build_model_fn = build_model_fn or _default_model_builder()
    build_loader_fn = build_loader_fn or _default_loader_builder()
    ctx = setup_run(cfg)
    out = Path(cfg.OUTPUT_DIR)
    progress = _Progress()
    stop = StopSignals()
    try:
        with stop, _holding_output_dir(ctx, out):
            return _train(cfg, ctx, stop, progress, build_model_fn=build_model_fn, build_loader_fn=build_loader_fn)
    except RunInterrupted as interrupted:
        raise RunInterrupted(_interrupted_message(interrupted.signal_name, progress, out), interrupted.signum) from None


def _train(cfg, ctx, stop: StopSignals, progress: _Progress, *, build_model_fn, build_loader_fn) -> Dict[str, Any]:
    device, world_size = ctx.device, ctx.world_size
    out = Path(cfg.OUTPUT_DIR)
    if ctx.is_main:
        setup_logging(str(out), is_main=True)
        dump_config(cfg)
        write_environment(str(out), device=device, world_size=world_size)
    amp_dtype = resolve_amp_dtype(cfg.TRAIN.AMP_DTYPE, enabled=cfg.TRAIN.MIXED_PRECISION, device=device)
    channels_last = cfg.TRAIN.CHANNELS_LAST

    model = _model_on(device, build_model_fn, cfg)
    if cfg.BN.SYNC and world_size > 1:
        if device.type != "cuda":
            raise ConfigError("BN.SYNC = True needs CUDA: PyTorch's SyncBatchNorm has no CPU implementation")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg=cfg)
    loss_fn = build_loss(cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(amp_dtype))
    # Before the loaders (indexing a dataset takes a while) and the first epoch: a folder that
    # cannot take a checkpoint fails now, not after an epoch's work.
    _on_main(ctx, lambda: _check_output(cfg, model=model, optimizer=optimizer))

    train_loader = shield_workers(build_loader_fn(cfg, cfg.TRAIN.SPLIT, "train", distributed=world_size > 1))
    class_names = _class_names(train_loader, cfg.MODEL.NUM_CLASSES)
    iters_per_epoch = len(train_loader)
    if iters_per_epoch == 0:
        raise RuntimeError(
            f"the training loader of split {cfg.TRAIN.SPLIT!r} yields no batch "
            f"(batch size {cfg.TRAIN.BATCH_SIZE_PER_DEVICE} per device, {world_size} devices)"
        )
    total_iters = cfg.SOLVER.MAX_ITER if cfg.SOLVER.MAX_ITER > 0 else cfg.SOLVER.MAX_EPOCH * iters_per_epoch
    num_epochs = math.ceil(total_iters / iters_per_epoch)
    schedule = build_schedule(cfg=cfg, iters_per_epoch=iters_per_epoch, total_iters=total_iters, world_size=world_size)
    # Built at the first evaluation: indexing every test video's segments takes a while.
    test_loader = None

    start_epoch = _restore(
        cfg, ctx, model=model, optimizer=optimizer, schedule=schedule, scaler=scaler, progress=progress
    )
    progress.epoch, progress.iteration = start_epoch, min(start_epoch * iters_per_epoch, total_iters)
    model = _for_training(model, cfg, device=device, distributed=world_size > 1)

    if start_epoch >= num_epochs:
        logger.info(f"training already complete ({num_epochs} epochs, {total_iters} iterations) in {out}")
        return _summary({}, total_iters, num_epochs, progress)
    stats = StatsWriter(str(out), enabled=ctx.is_main, tensorboard=cfg.TENSORBOARD.ENABLE)
    logger.info(
        f"training {type(unwrap_model(model)).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters) "
        f"on {world_size} x {device}: epochs {start_epoch + 1}..{num_epochs}, {iters_per_epoch} iterations per epoch, "
        f"{total_iters} in all, base lr {schedule.base_lr:g}, AMP {_dtype_name(amp_dtype)}, "
        f"compiled {cfg.MODEL.COMPILE}"
    )
    last_metrics: Dict[str, Any] = {}
    try:
        for epoch in range(start_epoch, num_epochs):
            progress.epoch, progress.phase = epoch + 1, ""
            done = epoch + 1
            global_iter = min(done * iters_per_epoch, total_iters)
            # Steps and the save: a first signal is acted on at the next step boundary.
            with stop.deferred():
                epoch_loss, skipped = _train_epoch(
                    model,
                    train_loader,
                    cfg=cfg,
                    device=device,
                    epoch=epoch,
                    iters_per_epoch=iters_per_epoch,
                    total_iters=total_iters,
                    optimizer=optimizer,
                    schedule=schedule,
                    scaler=scaler,
                    loss_fn=loss_fn,
                    amp_dtype=amp_dtype,
                    channels_last=channels_last,
                    stats=stats,
                    stop=stop,
                    progress=progress,
                )
                if skipped is None:
                    raise stop.interrupted("stopped at a step boundary")
                skipped = _count_skips(progress, skipped, train_loader, device)
                _sync_buffers(model)
                logger.info(f"epoch {done}/{num_epochs}: loss {epoch_loss:.4f}; {_skips_text(skipped, progress)}")
                stats.write(
                    {
                        "type": "train_epoch",
                        "epoch": done,
                        "iter": global_iter,
                        "loss": epoch_loss,
                        "skipped_samples": skipped,
                        "broken_videos": len(progress.broken_videos),
                    },
                    step=global_iter,
                    prefix="train_epoch/",
                )
                last = done == num_epochs
                if done % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last:
                    _save(
                        cfg,
                        ctx,
                        class_names=class_names,
                        model=model,
                        optimizer=optimizer,
                        schedule=schedule,
                        scaler=scaler,
                        epoch=done,
                        global_iter=global_iter,
                        progress=progress,
                    )
            # The epoch is complete (and saved when due): a signal that came meanwhile stops here.
            if _agreed(stop.requested, device):
                raise stop.interrupted("stopped after an epoch")
            if cfg.TRAIN.EVAL_PERIOD > 0 and done % cfg.TRAIN.EVAL_PERIOD == 0:

                def make_loader(existing=test_loader):
                    if existing is not None:
                        return existing
                    loader = build_loader_fn(cfg, cfg.TEST.SPLIT, cfg.TEST.MODE, distributed=world_size > 1)
                    return shield_workers(loader)

                # The bare module: evaluation needs no gradient sync, and ranks get unequal shards.
                progress.phase = "while evaluating"
                try:
                    result, test_loader = _evaluate_keeping_rng(
                        unwrap_model(model),
                        make_loader,
                        cfg=cfg,
                        device=device,
                        amp_dtype=amp_dtype,
                        channels_last=channels_last,
                    )
                except WORKER_DEATH_ERRORS:
                    if not stop.requested:
                        raise
                    # A worker of the test loader died of the stop signal (SIGTERM to the process group).
                    raise stop.interrupted("stopped during an evaluation") from None
                last_metrics = dict(result.metrics)
                logger.info(f"epoch {done} evaluation: {_format_metrics(last_metrics)}")
                stats.write(
                    {"type": "eval", "epoch": done, "iter": global_iter, **last_metrics},
                    step=global_iter,
                    prefix="eval/",
                )
    finally:
        stats.close()
    if _agreed(stop.requested, device):
        raise stop.interrupted("stopped after the last epoch")
    logger.info(
        f"training done: {num_epochs} epochs, {total_iters} iterations in {out}; "
        f"{_skips_text(progress.skipped_samples, progress, in_all=True)}"
    )
    return _summary(last_metrics, total_iters, num_epochs, progress)


def _summary(metrics: Dict[str, Any], total_iters: int, num_epochs: int, progress: _Progress) -> Dict[str, Any]:
    return {
        "metrics": metrics,
        "iterations": total_iters,
        "epochs": num_epochs,
        "skipped_samples": progress.skipped_samples,
        "broken_videos": len(progress.broken_videos),
    }


def _skips_text(skipped: int, progress: _Progress, *, in_all: bool = False) -> str:
    broken = len(progress.broken_videos)
    if not skipped and not broken:
        return "no unreadable sample skipped"
    scope = "in all" if in_all else "this epoch"
    videos = f"{broken} distinct broken video{'s' if broken != 1 else ''}"
    return (
        f"{skipped} unreadable sample{'s' if skipped != 1 else ''} skipped {scope}, {videos} so far "
        "(tools/check_videos.py lists them)"
    )


def _broken_paths(loader) -> List[str]:
    """Unreadable videos the loader's dataset found so far, in this process and its workers."""
    dataset = getattr(loader, "dataset", None)
    for candidate in (dataset, getattr(dataset, "dataset", None)):
        broken = getattr(candidate, "broken", None)
        if isinstance(broken, dict):
            return sorted(broken)
    return []


def _count_skips(progress: _Progress, skipped: int, loader, device: torch.device) -> int:
    """Add an epoch's skipped samples (summed over ranks) and broken videos (the union over
    ranks) to ``progress``; return the epoch's count over all ranks."""
    paths = set(_broken_paths(loader))
    if du.is_distributed():
        total = torch.tensor([skipped], dtype=torch.int64, device=device)
        dist.all_reduce(total)
        skipped = int(total.item())
        for part in du.all_gather_objects(sorted(paths)):
            paths.update(part)
    progress.skipped_samples += skipped
    progress.broken_videos = progress.broken_videos | frozenset(paths)
    return skipped


def _agreed(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (ranks stop at the same step)."""
    if not du.is_distributed():
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _train_epoch(
    model,
    loader,
    *,
    cfg,
    device,
    epoch,
    iters_per_epoch,
    total_iters,
    optimizer,
    schedule,
    scaler,
    loss_fn,
    amp_dtype,
    channels_last,
    stats,
    stop: StopSignals,
    progress: _Progress,
) -> Tuple[float, Optional[int]]:
    """One epoch; returns the mean loss and the unreadable samples skipped on this rank, or
    ``(nan, None)`` when a stop was requested (checked before every step, on all ranks at once)."""
    model.train()
    _set_epoch(loader, epoch)
    first_iter = epoch * iters_per_epoch
    steps = min(iters_per_epoch, total_iters - first_iter)
    world_size = du.get_world_size()
    bar = tqdm(
        total=steps,
        desc=f"epoch {epoch + 1}",
        dynamic_ncols=True,
        unit="it",
        mininterval=1.0,
        disable=not du.is_main_process(),
    )
    loss_sum, count, skipped = 0.0, 0, 0
    end = time.perf_counter()
    try:
        for step in range(steps):
            if _agreed(stop.requested, device):
                return math.nan, None
            try:
                if step == 0:
                    # Starts the loader's workers, which a stop signal to the group can kill mid-start.
                    batches = iter(loader)
                batch = next(batches)
            except StopIteration:
                break
            except WORKER_DEATH_ERRORS:
                if not stop.requested:
                    raise
                # A worker died of the stop signal (SIGTERM sent to the whole process group).
                return math.nan, None
            global_iter = first_iter + step
            data_time = time.perf_counter() - end
            lr = schedule.apply(optimizer, global_iter)
            inputs = _prepare_inputs(batch["inputs"], device, channels_last)
            labels = _labels_for(loss_fn, batch["label"], device)
            if "skipped" in batch:
                skipped += int(torch.as_tensor(batch["skipped"]).sum())
            with autocast(device, amp_dtype):
                logits = model(inputs)
            loss = loss_fn(logits.float(), labels)

            # The mean over ranks both feeds the log and lets every rank stop together on NaN.
            reduced = loss.detach().clone()
            if world_size > 1:
                dist.all_reduce(reduced)
                reduced /= world_size
            loss_value = reduced.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss is {loss_value} at iteration {global_iter + 1} (epoch {epoch + 1}, step {step + 1} of "
                    f"{iters_per_epoch}, lr {lr:g}): stopping. Lower SOLVER.BASE_LR_PER_DEVICE or set "
                    "SOLVER.CLIP_GRAD_L2NORM; the last checkpoint is intact."
                )

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.SOLVER.CLIP_GRAD_L2NORM > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.SOLVER.CLIP_GRAD_L2NORM)
            scaler.step(optimizer)
            scaler.update()
            progress.iteration = global_iter + 1

            loss_sum += loss_value
            count += 1
            iter_time = time.perf_counter() - end
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.3g}", refresh=False)
            if (global_iter + 1) % cfg.LOG_PERIOD == 0 or step + 1 == steps:
                stats.write(
                    {
                        "type": "train",
                        "epoch": epoch + 1,
                        "iter": global_iter + 1,
                        "loss": loss_value,
                        "lr": lr,
                        "data_time": data_time,
                        "iter_time": iter_time,
                        "memory_mb": memory_mb(device),
                    },
                    step=global_iter + 1,
                    prefix="train/",
                )
            end = time.perf_counter()
    finally:
        bar.close()
    if count < steps:
        raise RuntimeError(f"epoch {epoch + 1}: the loader gave {count} batches, {steps} expected")
    return loss_sum / max(count, 1), skipped


def _dtype_name(dtype: Optional[torch.dtype]) -> str:
    return str(dtype).removeprefix("torch.") if dtype is not None else "off"


def _compile(model: nn.Module, cfg: CfgNode) -> None:
    """``MODEL.COMPILE``: compile the module in place (``nn.Module.compile``), so that its state
    dict, DDP's wrapper and the evaluation of the bare module all stay as they are."""
    if cfg.MODEL.COMPILE:
        model.compile(**COMPILE_OPTIONS)


def _for_training(model: nn.Module, cfg: CfgNode, *, device: torch.device, distributed: bool) -> nn.Module:
    """The model as training runs it: compiled in place under ``MODEL.COMPILE``, then wrapped in
    DistributedDataParallel when ``distributed``.

    The compiled graphs run inside DDP's forward, where dynamo finds the DDP module and splits
    them at its gradient buckets (DDPOptimizer): each bucket's all-reduce starts while the rest of
    the backward pass runs. The bare module keeps its compiled forward for evaluation and its
    parameter names (no ``_orig_mod.`` or ``module.``) for checkpoints.
    """
    _compile(model, cfg)
    if not distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts them at the start of each forward pass, so after the last step every rank
    holds statistics updated by its own batch. Evaluating those would score each rank's shard with
    different weights than the checkpoint holds; the next epoch's first forward broadcasts anyway,
    so training itself is unchanged.
    """
    if not du.is_distributed():
        return
    for buffer in unwrap_model(model).buffers():
        dist.broadcast(buffer.data, src=0)


def _class_names(loader, num_classes: int) -> List[str]:
    """The training set's class names, for the checkpoint; numbered when the dataset has none."""
    dataset = getattr(loader, "dataset", None)
    names = getattr(dataset, "class_names", None) or getattr(getattr(dataset, "dataset", None), "class_names", None)
    return (
        [str(n) for n in names] if names and len(names) == num_classes else [f"class {c}" for c in range(num_classes)]
    )


def _save(
    cfg,
    ctx,
    *,
    model,
    optimizer,
    schedule,
    scaler,
    epoch: int,
    global_iter: int,
    class_names: List[str],
    progress: _Progress,
) -> None:
    # Every rank's generators: a resume on the same number of ranks continues each stream exactly.
    rng_states = du.all_gather_objects(capture_rng_state())

    def write() -> None:
        state = {
            "model": unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "rng_states": rng_states,
            # Checkpoints fall on epoch boundaries: the sampler resumes at the start of `epoch`.
            "sampler": {"epoch": epoch, "position": 0},
            "epoch": epoch,
            "iteration": global_iter,
            "world_size": ctx.world_size,
            "config": cfg.dump(),
            # What videotl.load_model needs to rebuild and use the model from this file alone.
            "model_name": cfg.MODEL.ARCH,
            "class_names": list(class_names),
            "videotl_version": __version__,
            # Run totals so far, so that the final summary counts the epochs before a resume too.
            "data_skips": {"samples": progress.skipped_samples, "broken_videos": sorted(progress.broken_videos)},
        }
        path = checkpoint_path(cfg.OUTPUT_DIR, epoch)
        try:
            save_checkpoint(path, state)
        except WriteError as error:
            earlier = [p for p in list_checkpoints(cfg.OUTPUT_DIR) if p != path]
            kept = f"the last checkpoint {earlier[0]} is intact" if earlier else "no earlier checkpoint exists"
            raise WriteError(
                f"{error}; epoch {epoch} is not saved and {kept}: make room and run the same command to resume",
                error.errno,
            ) from None
        logger.info(f"saved {path}")

    _on_main(ctx, write)


def _newest_readable_checkpoint(output_dir: str) -> Tuple[str, Optional[Dict[str, Any]]]:
    """The newest checkpoint of the run that reads, with its contents; ``("", None)`` if there is
    none. Unreadable newer ones are skipped with a warning; if every one is unreadable, that is an error."""
    unreadable = []
    for path in list_checkpoints(output_dir):
        try:
            return str(path), read_checkpoint(path)
        except (CheckpointError, FileNotFoundError) as error:
            unreadable.append(f"{path.name} ({str(error).removeprefix(f'cannot read checkpoint {path}: ')})")
            logger.warning(f"{error}; skipping it, resuming from the newest checkpoint that reads")
    if unreadable:
        raise CheckpointError(
            f"no checkpoint in {checkpoint_dir(output_dir)} can be read: {', '.join(unreadable)}. Move them away "
            "to train from the start, or set TRAIN.AUTO_RESUME False"
        )
    return "", None


def _restore(cfg, ctx, *, model, optimizer, schedule, scaler, progress: _Progress) -> int:
    """Load the run's newest readable checkpoint (full state) or TRAIN.CHECKPOINT_FILE_PATH
    (weights); return the start epoch."""
    on_main: Dict[str, Any] = {}

    def find() -> str:
        # Under the run lock: no other run's save is in flight in this folder.
        for path in remove_stale_temporaries(cfg.OUTPUT_DIR):
            logger.info(f"removed {path}, left by a save that was interrupted")
        if not cfg.TRAIN.AUTO_RESUME:
            return ""
        found, on_main["state"] = _newest_readable_checkpoint(cfg.OUTPUT_DIR)
        return found

    # Rank 0 decides, so that all ranks resume from the same file even if a new one appears meanwhile.
    found = _on_main(ctx, find)
    if found:
        state = on_main.get("state") or read_checkpoint(found)
        try:
            load_model_state(model, model_state_from(state), strict=True)
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["scheduler"])
            # A run saved with a disabled scaler (float32, bfloat16) has an empty state; a float16
            # run resumed from it starts from a fresh scale.
            if state["scaler"]:
                scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(
                f"cannot resume from {found}: {one_line(error)}. It belongs to another run; use a new OUTPUT_DIR "
                "or TRAIN.AUTO_RESUME False"
            ) from error
        rng_states = state.get("rng_states") or []
        epoch = int(state["epoch"])
        if len(rng_states) == ctx.world_size:
            restore_rng_state(rng_states[ctx.rank])
        else:
            seed = cfg.RNG_SEED + ctx.rank + 1000 * epoch
            logger.warning(
                f"{found} was written by {len(rng_states)} processes, this run has {ctx.world_size}: "
                f"random streams restart from seed {seed}, so the run is not bit-exact"
            )
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        skips = state.get("data_skips") or {}
        progress.skipped_samples = int(skips.get("samples", 0))
        progress.broken_videos = frozenset(skips.get("broken_videos", ()))
        logger.info(f"resumed from {found} (epoch {epoch}, iteration {state.get('iteration')})")
        return epoch
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        state = read_checkpoint(cfg.TRAIN.CHECKPOINT_FILE_PATH)
        skipped = load_model_state(model, model_state_from(state), strict=False)
        logger.info(f"initialised from {cfg.TRAIN.CHECKPOINT_FILE_PATH}")
        for entry in skipped:
            logger.warning(f"not loaded: {entry}")
    return 0


def test(
    cfg: CfgNode, *, build_model_fn: Optional[ModelBuilder] = None, build_loader_fn: Optional[LoaderBuilder] = None
) -> EvalResult:
    """Evaluate TEST.CHECKPOINT_FILE_PATH (or the run's last checkpoint) on the test views or segments.

    Holds OUTPUT_DIR's lock like :func:`train`; SIGINT or SIGTERM stop it at once with
    :class:`~videotl.engine.interrupt.RunInterrupted` (each result file is written whole or not at all).
    """
    build_model_fn = build_model_fn or _default_model_builder()
    build_loader_fn = build_loader_fn or _default_loader_builder()
    ctx = setup_run(cfg)
    out = Path(cfg.OUTPUT_DIR)
    stop = StopSignals()
    try:
        with stop, _holding_output_dir(ctx, out):
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

    _on_main(ctx, check)
    weights = cfg.TEST.CHECKPOINT_FILE_PATH or last_checkpoint(cfg.OUTPUT_DIR)
    if not weights:
        raise FileNotFoundError(
            f"nothing to test: TEST.CHECKPOINT_FILE_PATH is empty and {checkpoint_dir(out)} "
            "holds no checkpoint_epoch_XXXXX.pyth"
        )
    model = _model_on(device, build_model_fn, cfg)
    state = load_weights(model, weights)
    _compile(model, cfg)
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
    logger.info(f"test: {_format_metrics(result.metrics)}")

    def write() -> None:
        stats = StatsWriter(cfg.OUTPUT_DIR, enabled=True, tensorboard=cfg.TENSORBOARD.ENABLE)
        try:
            stats.write(
                {"type": "test", "checkpoint": str(weights), **result.metrics},
                step=int(state.get("iteration", 0)) if isinstance(state.get("iteration"), int) else 0,
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

    _on_main(ctx, write)
    return result
