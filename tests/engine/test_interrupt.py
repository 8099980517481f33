"""SIGINT and SIGTERM to a training run with DataLoader workers: a step boundary, one line, 130 / 143,
nothing half-written, and a resume that ends with the weights of an uninterrupted run."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakes
import pytest
import torch

from videotl.engine.interrupt import RunInterrupted, StopSignals

# Tests that use the session fixture reference_run run on one xdist worker, which builds it once.
pytestmark = pytest.mark.xdist_group("reference_run")

HERE = Path(__file__).resolve().parent
RUN = [sys.executable, str(HERE / "run_fake.py"), "train"]
ARGS = fakes.CHECKPOINTED_RUN
LINE = re.compile(
    r"^interrupted by (SIG\w+) at epoch (\d), iteration (\d+)( \(while evaluating\))?; the last checkpoint is "
    r"(\S+); run the same command to resume$"
)


def _env(sleep):
    return fakes.subprocess_env(sleep)


def _weights(output_dir):
    return torch.load(output_dir / "checkpoints" / "checkpoint_epoch_00004.pyth", weights_only=True)["model"]


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Each test starts with Python's own SIGINT handler: a shell that starts the suite in the
    background hands it SIGINT ignored, which the handler checks and spawned workers inherit."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def reference(reference_run):
    return _weights(reference_run)


def _interrupt(out, signum):
    """Start a run in its own process group, send ``signum`` to the whole group (what a terminal's
    Ctrl-C or a scheduler does) once the second checkpoint exists, and return the finished run."""
    command = RUN + ARGS + ["OUTPUT_DIR", str(out)]
    process = subprocess.Popen(
        command, env=_env(0.02), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        second = out / "checkpoints" / "checkpoint_epoch_00002.pyth"
        deadline = time.time() + 300
        while not second.exists():
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.time() < deadline, "no second checkpoint after 300 s"
            time.sleep(0.01)
        time.sleep(0.3)
        assert process.poll() is None, "the run finished before the signal"
        os.killpg(process.pid, signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # No worker outlives the run.
    deadline = time.time() + 20
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.time() < deadline, "processes of the run are still alive after it ended"
        time.sleep(0.1)
    return process.returncode, stdout, stderr, command


def _check_stopped_cleanly(out, returncode, stderr, signum):
    assert returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, stderr[-3000:]
    match = LINE.match(lines[0])
    assert match, lines[0]
    name, epoch, iteration, _, last = match.groups()
    assert name == signal.Signals(signum).name
    epoch, iteration = int(epoch), int(iteration)
    # Epoch 3 is under way (or epoch 2's evaluation): iterations 12..18 are done, and the
    # checkpoint named is the newest on disk, whole and readable.
    assert epoch in (2, 3) and 12 <= iteration <= 18 and iteration <= epoch * 6
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert Path(last) == out / "checkpoints" / names[-1]
    assert names[-1] in ("checkpoint_epoch_00002.pyth", "checkpoint_epoch_00003.pyth")
    torch.load(last, weights_only=True)
    return epoch, iteration


def test_sigint_to_the_group_stops_at_a_step_and_resumes_bit_exact(tmp_path, reference):
    out = tmp_path / "run"
    returncode, stdout, stderr, command = _interrupt(out, signal.SIGINT)
    _check_stopped_cleanly(out, returncode, stderr, signal.SIGINT)
    assert "SIGINT received: stopping at the end of this step" in stderr or "(while evaluating)" in stderr

    resumed = subprocess.run(command, env=_env(0), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    actual = _weights(out)
    for key in reference:
        assert torch.equal(reference[key], actual[key]), key


def test_sigterm_to_the_group_stops_with_143(tmp_path):
    # The workers die of SIGTERM themselves (PyTorch's handling): that is part of the stop, not an error.
    out = tmp_path / "run"
    returncode, stdout, stderr, command = _interrupt(out, signal.SIGTERM)
    _check_stopped_cleanly(out, returncode, stderr, signal.SIGTERM)


def test_sigint_while_testing_stops_at_once_with_130(tmp_path, reference_run):
    out = tmp_path / "test"
    checkpoint = reference_run / "checkpoints" / "checkpoint_epoch_00004.pyth"
    command = [sys.executable, str(HERE / "run_fake.py"), "test", "OUTPUT_DIR", str(out)]
    command += ["TEST.CHECKPOINT_FILE_PATH", str(checkpoint), "DATA_LOADER.NUM_WORKERS", "2", "TEST.MODE", "segments"]
    process = subprocess.Popen(
        command, env=_env(0.3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        log = out / "log.txt"
        deadline = time.time() + 300
        while not (log.exists() and "testing" in log.read_text()):
            assert process.poll() is None and time.time() < deadline, "the test did not start"
            time.sleep(0.02)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.rstrip().splitlines()[-1] == "interrupted by SIGINT while testing; run the same command to test again"
    assert not (out / "test_metrics.json").exists()


def test_first_signal_waits_for_the_boundary_and_a_second_stops_at_once():
    with StopSignals() as stop:
        with stop.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested and stop.signum == signal.SIGTERM
            with pytest.raises(RunInterrupted) as second:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
        assert second.value.exit_code == 128 + signal.SIGTERM
    # Outside a deferred block the first signal raises at once.
    with pytest.raises(RunInterrupted) as immediate:
        with StopSignals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert immediate.value.exit_code == 130 and immediate.value.signal_name == "SIGINT"
    # The previous handlers are back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _SignalInDel:
    def __del__(self):
        # A signal handled inside __del__: Python only reports what the handler raises there.
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass


def test_a_stop_raised_where_python_swallows_it_still_stops_the_run(capfd):
    with pytest.raises(RunInterrupted):
        with StopSignals():
            doomed = _SignalInDel()
            del doomed  # collected at once: its __del__ runs the handler
            time.sleep(1)
            raise AssertionError("the stop was lost")
    assert "Exception ignored" not in capfd.readouterr().err


def test_shielded_workers_ignore_sigint_even_when_spawned():
    # Forked workers inherit the run's handler, which leaves the decision to the main process;
    # spawned ones start with Python's default (KeyboardInterrupt) unless shielded.
    import fakes
    from torch.utils.data import DataLoader

    from videotl.engine.interrupt import shield_workers

    def loader():
        return DataLoader(
            fakes.SelfInterruptingDataset(),
            num_workers=1,
            multiprocessing_context="spawn",
            worker_init_fn=fakes.mark_worker,
        )

    items = [batch.tolist() for batch in shield_workers(loader())]
    assert items == [[[0, 100]], [[1, 100]]]  # both items, and the loader's own init function ran
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(loader())


class _LoaderKilledMidStart:
    """A loader whose second epoch starts as a stop signal kills its workers: the main process
    gets the connection error a DataLoader raises when a worker dies handing over a batch."""

    def __init__(self, loader):
        self.loader, self.epochs = loader, 0

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        self.epochs += 1
        if self.epochs == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            raise ConnectionResetError(104, "Connection reset by peer")
        return iter(self.loader)


def test_a_stop_that_kills_the_workers_as_an_epoch_starts_is_a_clean_stop(tmp_path):
    from videotl.config import load_config
    from videotl.engine import train

    cfg = load_config("", fakes.TINY + ["OUTPUT_DIR", str(tmp_path / "run"), "TRAIN.EVAL_PERIOD", "0"])

    def build_loader(cfg, split, mode, *, distributed=False):
        loader = fakes.build_loader(cfg, split, mode, distributed=distributed)
        return _LoaderKilledMidStart(loader) if mode == "train" else loader

    with pytest.raises(RunInterrupted) as stopped:
        train(cfg, build_model_fn=fakes.build_model, build_loader_fn=build_loader)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM at epoch 2, iteration 6" in str(stopped.value)
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_epoch_00001.pyth").exists()
