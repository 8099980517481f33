"""Step hooks: what they see around each step, and gradient accumulation through them."""

import math
import os
import sys

import fakes
import torch
from torch import nn

from videotl import engine
from videotl.config import load_config
from videotl.engine.checkpoint import last_checkpoint, read_checkpoint


def _cfg(tmp_path, *overrides):
    return load_config("", fakes.TINY + ["OUTPUT_DIR", str(tmp_path), "TRAIN.EVAL_PERIOD", "0", *overrides])


class _Recorder(engine.StepHook):
    def __init__(self):
        self.events = []

    def before_step(self, state, step):
        weight = state.model.fc.weight.detach().clone()
        self.events.append(("before", step.epoch, step.index, step.steps, step.iteration, step.lr, weight))
        # The schedule has set this step's rate; the loss is not known yet.
        assert state.optimizer.param_groups[0]["lr"] == step.lr and math.isnan(step.loss)

    def after_step(self, state, step):
        weight = state.model.fc.weight.detach().clone()
        self.events.append(("after", step.epoch, step.index, step.steps, step.iteration, step.loss, weight))
        assert state.progress.iteration == step.iteration + 1
        assert step.iter_time >= step.data_time >= 0


def test_hooks_run_around_every_step_with_its_learning_rate_and_the_updated_weights(tmp_path):
    recorder = _Recorder()
    cfg = _cfg(tmp_path)
    engine.train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader, hooks=[recorder])
    # 12 training videos in batches of 2: 6 steps per epoch, 2 epochs.
    expected_steps = [(epoch, index, 6, 6 * epoch + index) for epoch in range(2) for index in range(6)]
    befores = [event for event in recorder.events if event[0] == "before"]
    afters = [event for event in recorder.events if event[0] == "after"]
    assert [event[0] for event in recorder.events] == ["before", "after"] * 12
    assert [event[1:5] for event in befores] == expected_steps
    assert [event[1:5] for event in afters] == expected_steps

    # The schedule by hand: linear warm-up from 0 over 3 iterations (half an epoch) to the cosine
    # curve from 0.1 to 0 over the 12 iterations.
    def cosine(i):
        return 0.1 * 0.5 * (1 + math.cos(math.pi * i / 12))

    by_hand = [cosine(3) * i / 3 if i < 3 else cosine(i) for i in range(12)]
    for event, lr in zip(befores, by_hand):
        assert math.isclose(event[5], lr, rel_tol=1e-12, abs_tol=1e-15), (event[4], event[5], lr)
    # after_step sees the step's loss.
    assert all(math.isfinite(event[5]) and event[5] > 0 for event in afters)

    # The optimizer stepped between each before_step and its after_step, and nothing else changed
    # the weights between steps; the last after_step saw what the final checkpoint holds.
    # (The warm-up's first rate is 0: that step leaves the weights as they are.)
    assert torch.equal(befores[0][6], afters[0][6])
    for before, after in zip(befores[1:], afters[1:]):
        assert not torch.equal(before[6], after[6]), before[4]
    for after, next_before in zip(afters, befores[1:]):
        assert torch.equal(after[6], next_before[6])
    final = read_checkpoint(last_checkpoint(cfg.OUTPUT_DIR))["model"]["fc.weight"]
    assert torch.equal(afters[-1][6], final)


class _Accumulate(engine.StepHook):
    """Gradient accumulation over ``k`` batches, written as the hooks' documentation describes it."""

    def __init__(self, k):
        self.k = k

    def before_step(self, state, step):
        step.loss_weight = 1 / self.k
        step.update = (step.index + 1) % self.k == 0


def _linear_model(cfg):
    # No dropout and no batch statistics: a batch of 4 and two batches of 2 then see the same
    # samples, the same random draws and the same per-sample gradients.
    frames, size = cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * frames * size * size, cfg.MODEL.NUM_CLASSES))


def test_accumulating_two_half_batches_equals_training_on_whole_batches(tmp_path):
    # The loss is a mean over the batch, so half the loss of each of two batches of 2 has the
    # gradient of one batch of 4: with a constant rate both runs make the same 3 updates per epoch.
    constant = ["SOLVER.LR_POLICY", "constant", "SOLVER.WARMUP_EPOCHS", "0.0"]
    runs = {}
    for name, batch, hooks in (("whole", 4, []), ("accumulated", 2, [_Accumulate(2)]), ("halves", 2, [])):
        cfg = _cfg(tmp_path / name, *constant, "TRAIN.BATCH_SIZE_PER_DEVICE", str(batch))
        engine.train(cfg, build_model_fn=_linear_model, build_loader_fn=fakes.build_loader, hooks=hooks)
        runs[name] = read_checkpoint(last_checkpoint(cfg.OUTPUT_DIR))
    whole, accumulated, halves = (runs[name]["model"] for name in ("whole", "accumulated", "halves"))
    for key in whole:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=1e-5, atol=1e-6)
    # Without the hook, batches of 2 make twice the updates and end elsewhere.
    assert not torch.allclose(halves["1.weight"], whole["1.weight"], rtol=1e-3, atol=1e-4)
    # The schedule counts micro-batches: the accumulating run's checkpoint says 12 iterations.
    assert runs["accumulated"]["iteration"] == 12 and runs["whole"]["iteration"] == 6


def test_the_loop_waits_for_the_device_only_at_the_log_period(tmp_path, monkeypatch):
    # Every read of a device tensor on the host is a sync on a GPU. 12 steps (2 epochs of 6),
    # LOG_PERIOD 3: the loop reads the loss at steps 3 and 6 of each epoch (the bar, the NaN check and
    # stats.jsonl share the read) and once per epoch for its mean: 6 reads, where reading at every
    # step made 12 or more.
    items = []

    def counted(read):
        def wrapper(tensor):
            # The loop's reads (the DataLoader draws its workers' seeds with .item() on CPU tensors too).
            caller = sys._getframe(1).f_code.co_filename
            if "videotl" + os.sep + "engine" in caller:
                items.append(f"{caller}:{sys._getframe(1).f_lineno}")
            return read(tensor)

        return wrapper

    cfg = _cfg(tmp_path, "LOG_PERIOD", "3")
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
    engine.train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)
    monkeypatch.undo()
    assert len(items) == 6, items
    # What was read is what a hook reading every step would have seen.
    rows = [line for line in (tmp_path / "stats.jsonl").read_text().splitlines() if '"type": "train"' in line]
    assert len(rows) == 4 and all('"loss": NaN' not in row for row in rows)


def test_a_loss_that_is_not_finite_stops_the_run_at_the_next_log_step(tmp_path):
    class Explode(engine.StepHook):
        def before_step(self, state, step):
            if step.iteration == 1:
                step.loss_weight = math.nan  # the backward pass makes the weights NaN from here on

    cfg = _cfg(tmp_path, "LOG_PERIOD", "3")
    try:
        engine.train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader, hooks=[Explode()])
    except FloatingPointError as error:
        message = str(error)
    assert message.startswith("loss is nan at iteration 3 (epoch 1, step 3 of 6, lr ")
    assert last_checkpoint(cfg.OUTPUT_DIR) is None
