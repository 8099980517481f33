"""``train(cfg)``: the library function behind tools/train_net.py.

A run's parts live beside this loop: ``run.py`` (process setup, OUTPUT_DIR's lock, the model on its
device), ``state.py`` (:class:`~videotl.engine.state.TrainState`, what a step updates),
``checkpoint.py`` (save and resume), ``hooks.py`` (step hooks, the ``train`` records),
``evaluator.py`` (evaluation during training) and ``testing.py`` (``test(cfg)``).
"""

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .. import __version__
from ..config import ConfigError, dump_config
from ..utils.fileio import check_writable
from . import distributed as du
from .checkpoint import (
    capture_rng_state,
    checkpoint_dir,
    last_checkpoint,
    restore_rng_state,
    restore_train_state,
    save_train_state,
    unwrap_model,
)
from .evaluator import EvalResult, evaluate, prepare_inputs
from .hooks import Step, StepHook, StepStats
from .interrupt import RunInterrupted, StopSignals, shield_workers
from .output_dir import checkpoint_size_estimate
from .precision import autocast, needs_grad_scaler, resolve_amp_dtype
from .run import (
    COMPILE_OPTIONS,
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
from .run_log import StatsWriter, setup_logging, write_environment
from .solver import build_loss, build_optimizer, build_schedule
from .state import Progress, TrainState

# COMPILE_OPTIONS: the torch.compile options _for_training compiles with, read here by the tools.
__all__ = ["train", "COMPILE_OPTIONS"]

logger = logging.getLogger("videotl")


@dataclass
class _Run:
    """What stays fixed while a training run goes: settings, data, loss, hooks and the stats file."""

    cfg: CfgNode
    ctx: du.DistContext
    stop: StopSignals
    loader: Any
    build_loader_fn: LoaderBuilder
    loss_fn: nn.Module
    amp_dtype: Optional[torch.dtype]
    iters_per_epoch: int
    total_iters: int
    num_epochs: int
    hooks: List[StepHook] = field(default_factory=list)
    stats: Optional[StatsWriter] = None
    # Built at the first evaluation: indexing every test video's segments takes a while.
    test_loader: Any = None

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def channels_last(self) -> bool:
        return self.cfg.TRAIN.CHANNELS_LAST


def train(
    cfg: CfgNode,
    *,
    build_model_fn: Optional[ModelBuilder] = None,
    build_loader_fn: Optional[LoaderBuilder] = None,
    hooks: Sequence[StepHook] = (),
) -> Dict[str, Any]:
    """Train ``cfg``'s model, resuming from OUTPUT_DIR when TRAIN.AUTO_RESUME finds a checkpoint.

    The run holds OUTPUT_DIR's lock throughout (:class:`~videotl.engine.output_dir.RunLockError`
    if another run has it) and checks that its folders can be written before any work. SIGINT and
    SIGTERM stop it at the next step boundary with :class:`~videotl.engine.interrupt.RunInterrupted`,
    whose message says where and how to resume.

    With the default loaders and a run that will test (TEST.ENABLE, as tools/train_net.py does after
    training) or evaluate (TRAIN.EVAL_PERIOD), the test split's annotations are read first, so that
    their errors stop the run before it trains.

    ``hooks``: :class:`~videotl.engine.hooks.StepHook` objects run before and after every step
    (:mod:`videotl.engine.hooks` says what they see and may change).

    Returns the metrics of the last evaluation (empty if none ran), the final iteration and epoch
    count, and the unreadable training samples skipped (``skipped_samples``, over the whole run
    including the part before a resume) and distinct broken videos found (``broken_videos``).
    """
    if build_loader_fn is None:
        check_run_annotations(cfg, train=True, test=cfg.TEST.ENABLE or cfg.TRAIN.EVAL_PERIOD > 0)
    build_model_fn = build_model_fn or default_model_builder()
    build_loader_fn = build_loader_fn or default_loader_builder()
    ctx = setup_run(cfg)
    out = Path(cfg.OUTPUT_DIR)
    progress = Progress()
    stop = StopSignals()
    try:
        with stop, holding_output_dir(ctx, out):
            run, state = _prepare(
                cfg, ctx, stop, progress, build_model_fn=build_model_fn, build_loader_fn=build_loader_fn
            )
            return _train(run, state, hooks)
    except RunInterrupted as interrupted:
        raise RunInterrupted(_interrupted_message(interrupted.signal_name, progress, out), interrupted.signum) from None


def check_run_annotations(cfg: CfgNode, *, train: bool, test: bool) -> None:
    """Read the annotations of the splits a run will read (``TRAIN.SPLIT`` when it trains,
    ``TEST.SPLIT`` when it tests or evaluates) without opening a video: a malformed row or a video
    id the score file cannot hold stops the run in one line before anything is written (the test
    split would otherwise be read only after training)."""
    from ..data.build import check_annotations

    if train:
        check_annotations(cfg, cfg.TRAIN.SPLIT, "train")
    if test:
        check_annotations(cfg, cfg.TEST.SPLIT, cfg.TEST.MODE)


def _prepare(
    cfg, ctx, stop: StopSignals, progress: Progress, *, build_model_fn, build_loader_fn
) -> Tuple[_Run, TrainState]:
    """The run's logs, model, optimizer, scaler, training loader and schedule, OUTPUT_DIR checked
    before the loader is built, the state restored from a checkpoint when there is one, and the
    model then made ready for training (:func:`_for_training`)."""
    device, world_size = ctx.device, ctx.world_size
    out = str(Path(cfg.OUTPUT_DIR))
    if ctx.is_main:
        setup_logging(out, is_main=True)
        dump_config(cfg)
        write_environment(out, device=device, world_size=world_size)
    amp_dtype = resolve_amp_dtype(cfg.TRAIN.AMP_DTYPE, enabled=cfg.TRAIN.MIXED_PRECISION, device=device)
    model = model_on(device, build_model_fn, cfg)
    if cfg.BN.SYNC and world_size > 1:
        if device.type != "cuda":
            raise ConfigError("BN.SYNC = True needs CUDA: PyTorch's SyncBatchNorm has no CPU implementation")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg=cfg)
    loss_fn = build_loss(cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(amp_dtype))
    # Before the loaders (indexing a dataset takes a while) and the first epoch: a folder that
    # cannot take a checkpoint fails now, not after an epoch's work.
    du.on_main(ctx, lambda: _check_output(cfg, model=model, optimizer=optimizer))

    loader = shield_workers(build_loader_fn(cfg, cfg.TRAIN.SPLIT, "train", distributed=world_size > 1))
    info = _model_info(cfg, loader)
    iters_per_epoch, total_iters = _iterations(cfg, loader, world_size)
    schedule = build_schedule(cfg=cfg, iters_per_epoch=iters_per_epoch, total_iters=total_iters, world_size=world_size)
    state = TrainState(
        model=model, optimizer=optimizer, schedule=schedule, scaler=scaler, progress=progress, model_info=info
    )
    start_epoch = restore_train_state(state, cfg=cfg, ctx=ctx)
    progress.epoch, progress.iteration = start_epoch, min(start_epoch * iters_per_epoch, total_iters)
    state.model = _for_training(model, cfg, device=device, distributed=world_size > 1)
    run = _Run(
        cfg=cfg,
        ctx=ctx,
        stop=stop,
        loader=loader,
        build_loader_fn=build_loader_fn,
        loss_fn=loss_fn,
        amp_dtype=amp_dtype,
        iters_per_epoch=iters_per_epoch,
        total_iters=total_iters,
        num_epochs=math.ceil(total_iters / iters_per_epoch),
    )
    return run, state


def _iterations(cfg: CfgNode, loader, world_size: int) -> Tuple[int, int]:
    """Iterations per epoch (the loader's batches) and in all (SOLVER.MAX_ITER, else MAX_EPOCH epochs)."""
    iters_per_epoch = len(loader)
    if iters_per_epoch == 0:
        raise RuntimeError(
            f"the training loader of split {cfg.TRAIN.SPLIT!r} yields no batch "
            f"(batch size {cfg.TRAIN.BATCH_SIZE_PER_DEVICE} per device, {world_size} devices)"
        )
    total_iters = cfg.SOLVER.MAX_ITER if cfg.SOLVER.MAX_ITER > 0 else cfg.SOLVER.MAX_EPOCH * iters_per_epoch
    return iters_per_epoch, total_iters


def _model_info(cfg: CfgNode, loader) -> Dict[str, Any]:
    """What videotl.load_model needs to rebuild and use the model from a checkpoint alone."""
    return {
        "config": cfg.dump(),
        "model_name": cfg.MODEL.ARCH,
        "class_names": _class_names(loader, cfg.MODEL.NUM_CLASSES),
        "videotl_version": __version__,
    }


def _train(run: _Run, state: TrainState, hooks: Sequence[StepHook]) -> Dict[str, Any]:
    """The epochs from where ``state`` stands to the end of the run; the summary ``train`` returns."""
    cfg, ctx, progress = run.cfg, run.ctx, state.progress
    out = Path(cfg.OUTPUT_DIR)
    start_epoch = progress.epoch
    if start_epoch >= run.num_epochs:
        logger.info(f"training already complete ({run.num_epochs} epochs, {run.total_iters} iterations) in {out}")
        return _summary({}, run, progress)
    run.stats = StatsWriter(str(out), enabled=ctx.is_main, tensorboard=cfg.TENSORBOARD.ENABLE)
    run.hooks = [StepStats(run.stats, period=cfg.LOG_PERIOD, device=ctx.device), *hooks]
    parameters = sum(p.numel() for p in state.model.parameters())
    logger.info(
        f"training {type(unwrap_model(state.model)).__name__} ({parameters:,} parameters) on {ctx.world_size} x "
        f"{ctx.device}: epochs {start_epoch + 1}..{run.num_epochs}, {run.iters_per_epoch} iterations per epoch, "
        f"{run.total_iters} in all, base lr {state.schedule.base_lr:g}, AMP {_dtype_name(run.amp_dtype)}, "
        f"compiled {cfg.MODEL.COMPILE}"
    )
    last_metrics: Dict[str, Any] = {}
    try:
        for epoch in range(start_epoch, run.num_epochs):
            metrics = _run_epoch(run, state, epoch)
            if metrics is not None:
                last_metrics = metrics
    finally:
        run.stats.close()
    if _agreed(run.stop.requested, ctx.device):
        raise run.stop.interrupted("stopped after the last epoch")
    logger.info(
        f"training done: {run.num_epochs} epochs, {run.total_iters} iterations in {out}; "
        f"{_skips_text(progress.skipped_samples, progress, in_all=True)}"
    )
    return _summary(last_metrics, run, progress)


def _run_epoch(run: _Run, state: TrainState, epoch: int) -> Optional[Dict[str, Any]]:
    """Epoch ``epoch`` (from 0): its steps, log line, stats record and checkpoint when due, then
    its evaluation when due, whose metrics it returns (None when it does not evaluate)."""
    cfg, progress = run.cfg, state.progress
    progress.epoch, progress.phase = epoch + 1, ""
    done = epoch + 1
    # Steps and the save: a first signal is acted on at the next step boundary.
    with run.stop.deferred():
        epoch_loss, skipped = _train_epoch(run, state, epoch)
        if skipped is None:
            raise run.stop.interrupted("stopped at a step boundary")
        skipped = _count_skips(progress, skipped, run.loader, run.device)
        _sync_buffers(state.model)
        logger.info(f"epoch {done}/{run.num_epochs}: loss {epoch_loss:.4f}; {_skips_text(skipped, progress)}")
        run.stats.write(
            {
                "type": "train_epoch",
                "epoch": done,
                "iter": progress.iteration,
                "loss": epoch_loss,
                "skipped_samples": skipped,
                "broken_videos": len(progress.broken_videos),
            },
            step=progress.iteration,
            prefix="train_epoch/",
        )
        if done % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or done == run.num_epochs:
            save_train_state(state, cfg=cfg, ctx=run.ctx)
    # The epoch is complete (and saved when due): a signal that came meanwhile stops here.
    if _agreed(run.stop.requested, run.device):
        raise run.stop.interrupted("stopped after an epoch")
    if cfg.TRAIN.EVAL_PERIOD > 0 and done % cfg.TRAIN.EVAL_PERIOD == 0:
        return _evaluate_during_training(run, state)
    return None


def _evaluate_during_training(run: _Run, state: TrainState) -> Dict[str, Any]:
    """Evaluate the bare module on the test split after epoch ``state.progress.epoch``; log and record the metrics."""
    cfg, progress = run.cfg, state.progress

    def make_loader():
        if run.test_loader is not None:
            return run.test_loader
        loader = run.build_loader_fn(cfg, cfg.TEST.SPLIT, cfg.TEST.MODE, distributed=run.ctx.world_size > 1)
        return shield_workers(loader)

    # The bare module: evaluation needs no gradient sync, and ranks get unequal shards.
    progress.phase = "while evaluating"
    try:
        result, run.test_loader = _evaluate_keeping_rng(
            unwrap_model(state.model),
            make_loader,
            cfg=cfg,
            device=run.device,
            amp_dtype=run.amp_dtype,
            channels_last=run.channels_last,
        )
    except WORKER_DEATH_ERRORS:
        if not run.stop.requested:
            raise
        # A worker of the test loader died of the stop signal (SIGTERM to the process group).
        raise run.stop.interrupted("stopped during an evaluation") from None
    metrics = dict(result.metrics)
    logger.info(f"epoch {progress.epoch} evaluation: {format_metrics(metrics)}")
    run.stats.write(
        {"type": "eval", "epoch": progress.epoch, "iter": progress.iteration, **metrics},
        step=progress.iteration,
        prefix="eval/",
    )
    return metrics


def _train_epoch(run: _Run, state: TrainState, epoch: int) -> Tuple[float, Optional[int]]:
    """The steps of epoch ``epoch`` (from 0); returns the mean loss and the unreadable samples
    skipped on this rank, or ``(nan, None)`` when a stop was requested (checked before every
    step, on all ranks at once)."""
    state.model.train()
    run.loader.set_epoch(epoch)
    first_iter = epoch * run.iters_per_epoch
    steps = min(run.iters_per_epoch, run.total_iters - first_iter)
    bar = tqdm(
        total=steps,
        desc=f"epoch {epoch + 1}",
        dynamic_ncols=True,
        unit="it",
        mininterval=1.0,
        disable=not du.is_main_process(),
    )
    losses, count, skipped = _EpochLosses(run.device), 0, 0
    end = time.perf_counter()
    try:
        for index in range(steps):
            # Under DDP the ranks agree on a stop at the log period only: each agreement waits for the GPU.
            if (index % run.cfg.LOG_PERIOD == 0 or not du.is_distributed()) and _agreed(run.stop.requested, run.device):
                return math.nan, None
            try:
                if index == 0:
                    # Starts the loader's workers, which a stop signal to the group can kill mid-start.
                    batches = iter(run.loader)
                batch = next(batches)
            except StopIteration:
                break
            except WORKER_DEATH_ERRORS:
                if not run.stop.requested:
                    raise
                # A worker died of the stop signal (SIGTERM sent to the whole process group).
                return math.nan, None
            iteration = first_iter + index
            data_time = time.perf_counter() - end
            lr = state.schedule.apply(state.optimizer, iteration)
            step = Step(epoch=epoch, index=index, steps=steps, iteration=iteration, lr=lr, data_time=data_time)
            if "skipped" in batch:
                skipped += int(torch.as_tensor(batch["skipped"]).sum())
            _step(run, state, step, batch)
            losses.add(step)
            count += 1
            step.iter_time = time.perf_counter() - end
            bar.update(1)
            if (iteration + 1) % run.cfg.LOG_PERIOD == 0 or index + 1 == steps:
                losses.read(step, iters_per_epoch=run.iters_per_epoch)
                bar.set_postfix(loss=f"{step.loss:.4f}", lr=f"{lr:.3g}", refresh=False)
            for hook in run.hooks:
                hook.after_step(state, step)
            end = time.perf_counter()
    finally:
        bar.close()
    if count < steps:
        raise RuntimeError(f"epoch {epoch + 1}: the loader gave {count} batches, {steps} expected")
    return losses.mean(count), skipped


class _EpochLosses:
    """An epoch's losses kept on the device, so that a step never waits for the GPU: their sum, and
    the first step whose loss was not finite (iteration, loss). :meth:`read`, at the log period,
    copies the step's loss and that record to the host in one transfer and stops the run (every
    rank alike: the loss is the mean over ranks) naming the first bad step, which may lie up to
    ``LOG_PERIOD`` steps back; no checkpoint is written in between (they come at epoch ends)."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.first_bad = torch.full((2,), math.nan, device=device)
        self.rates: Dict[int, float] = {}

    def add(self, step: Step) -> None:
        loss = step.loss_on_device.float()
        self.total += loss
        here = torch.stack([torch.full_like(loss, step.iteration), loss])
        self.first_bad = torch.where(torch.isnan(self.first_bad[0]) & ~torch.isfinite(loss), here, self.first_bad)
        self.rates[step.iteration] = step.lr

    def read(self, step: Step, *, iters_per_epoch: int) -> None:
        loss, bad_iteration, bad_loss = torch.cat([step.loss_on_device.float().reshape(1), self.first_bad]).tolist()
        step.loss = loss
        if not math.isnan(bad_iteration):
            iteration = int(bad_iteration)
            raise FloatingPointError(
                f"loss is {bad_loss} at iteration {iteration + 1} (epoch {step.epoch + 1}, step "
                f"{iteration - step.iteration + step.index + 1} of {iters_per_epoch}, lr {self.rates[iteration]:g}): "
                "stopping. Lower SOLVER.BASE_LR_PER_DEVICE or set SOLVER.CLIP_GRAD_L2NORM; the last checkpoint is intact."
            )
        self.rates.clear()

    def mean(self, count: int) -> float:
        return float(self.total.item()) / max(count, 1)


def _step(run: _Run, state: TrainState, step: Step, batch: Dict[str, Any]) -> None:
    """One training step on ``batch``, between the hooks' ``before_step`` and the caller's
    ``after_step``: sets ``step.loss_on_device`` (the mean over ranks, which also lets every rank
    stop together on NaN) and steps the optimizer unless a hook held the update back. Nothing here
    waits for the device."""
    for hook in run.hooks:
        hook.before_step(state, step)
    inputs = prepare_inputs(batch["inputs"], run.device, run.channels_last, run.cfg)
    labels = _labels_for(run.loss_fn, batch["label"], run.device)
    with autocast(run.device, run.amp_dtype):
        logits = state.model(inputs)
    loss = run.loss_fn(logits.float(), labels)
    reduced = loss.detach().clone()
    if run.ctx.world_size > 1:
        # Queued on the device like the gradients' all-reduce: no wait for the host.
        dist.all_reduce(reduced)
        reduced /= run.ctx.world_size
    step.loss_on_device = reduced
    state.scaler.scale(loss if step.loss_weight == 1 else loss * step.loss_weight).backward()
    if step.update:
        clip = run.cfg.SOLVER.CLIP_GRAD_L2NORM
        if clip > 0:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(state.model.parameters(), clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        # Cleared after the update rather than before the next backward pass, so that a step
        # whose update a hook held back leaves its gradients for the next one to add to.
        state.optimizer.zero_grad(set_to_none=True)
    state.progress.iteration = step.iteration + 1


def _summary(metrics: Dict[str, Any], run: _Run, progress: Progress) -> Dict[str, Any]:
    return {
        "metrics": metrics,
        "iterations": run.total_iters,
        "epochs": run.num_epochs,
        "skipped_samples": progress.skipped_samples,
        "broken_videos": len(progress.broken_videos),
    }


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


def _interrupted_message(signal_name: str, progress: Progress, out: Path) -> str:
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


def _skips_text(skipped: int, progress: Progress, *, in_all: bool = False) -> str:
    broken = len(progress.broken_videos)
    if not skipped and not broken:
        return "no unreadable sample skipped"
    scope = "in all" if in_all else "this epoch"
    videos = f"{broken} distinct broken video{'s' if broken != 1 else ''}"
    return (
        f"{skipped} unreadable sample{'s' if skipped != 1 else ''} skipped {scope}, {videos} so far "
        "(tools/check_videos.py lists them)"
    )


def _count_skips(progress: Progress, skipped: int, loader, device: torch.device) -> int:
    """Add an epoch's skipped samples (summed over ranks) and broken videos (the union over
    ranks) to ``progress``; return the epoch's count over all ranks."""
    # Unreadable videos the loader's dataset found so far, in this process and its workers.
    paths = set(loader.dataset.broken)
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


def _dtype_name(dtype: Optional[torch.dtype]) -> str:
    return str(dtype).removeprefix("torch.") if dtype is not None else "off"


def _for_training(model: nn.Module, cfg: CfgNode, *, device: torch.device, distributed: bool) -> nn.Module:
    """The model as training runs it: compiled in place under ``MODEL.COMPILE``, then wrapped in
    DistributedDataParallel when ``distributed``.

    The compiled graphs run inside DDP's forward, where dynamo finds the DDP module and splits
    them at its gradient buckets (DDPOptimizer): each bucket's all-reduce starts while the rest of
    the backward pass runs. The bare module keeps its compiled forward for evaluation and its
    parameter names (no ``_orig_mod.`` or ``module.``) for checkpoints.
    """
    compile_model(model, cfg)
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
    """The training set's class names, for the checkpoint; numbered when they do not fit the model."""
    names = loader.dataset.class_names
    return (
        [str(n) for n in names] if names and len(names) == num_classes else [f"class {c}" for c in range(num_classes)]
    )
