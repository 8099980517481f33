"""A file system that refuses the run's files: said in one line naming the path, before any work
when it can be known, and without losing the previous checkpoint when it happens mid-run."""

import errno
import os
import re
import shutil

import fakes
import pytest
import torch

from videotl import engine
from videotl.config import load_config
from videotl.engine.checkpoint import save_checkpoint
from videotl.engine.output_dir import checkpoint_size_estimate
from videotl.utils.fileio import WriteError, atomic_write_text
from videotl_tools._cli import run


def _cfg(out, *overrides):
    return load_config("", fakes.TINY + ["OUTPUT_DIR", str(out), "TRAIN.EVAL_PERIOD", "0", *overrides])


def _train(cfg, build_model_fn=fakes.build_model):
    return engine.train(cfg, build_model_fn=build_model_fn, build_loader_fn=fakes.build_loader)


def _one_line(capsys, work):
    """Run ``work`` the way the tools do; return (status, the single stderr line)."""
    status = run(work)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    # Besides the progress bars of the epochs that ran.
    lines = [
        line for line in err.replace("\r", "\n").splitlines() if line and not re.match(r"(epoch \d+|eval): ", line)
    ]
    assert len(lines) == 1, err
    return status, lines[0]


def _fill(folder, leave):
    """Take all but ``leave`` bytes of the file system of ``folder``."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return folder / "filler"


def test_checkpoints_path_that_is_a_file_fails_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints").write_text("not a folder")
    status, err = _one_line(capsys, lambda: _train(_cfg(out)))
    assert status == 1
    assert err == f"error: cannot write to OUTPUT_DIR/checkpoints {out / 'checkpoints'}: it is a file, not a folder"
    # Nothing ran: no training record, the file untouched.
    assert not (out / "stats.jsonl").exists()
    assert (out / "checkpoints").read_text() == "not a folder"


def test_read_only_output_folder_is_named(tmp_path, tmpfs, capsys):
    # A read-only mount (root passes any permission check, so chmod would prove nothing here).
    read_only = tmpfs("ro", "64k", read_only=True)
    status, err = _one_line(capsys, lambda: _train(_cfg(read_only / "run")))
    assert status == 1 and err == f"error: cannot create OUTPUT_DIR {read_only / 'run'}: read-only file system"
    status, err = _one_line(capsys, lambda: _train(_cfg(read_only)))
    assert status == 1 and err == f"error: cannot write to OUTPUT_DIR {read_only}: read-only file system"


def test_folder_without_write_permission_is_named(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into any folder whatever its permissions; the read-only mount test covers this")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        status, err = _one_line(capsys, lambda: _train(_cfg(locked)))
    finally:
        locked.chmod(0o755)
    assert status == 1 and err == f"error: cannot write to OUTPUT_DIR {locked}: permission denied"


def test_too_little_space_for_a_checkpoint_fails_at_start(tmp_path, tmpfs, capsys):
    small = tmpfs("small", "1m")
    cfg = _cfg(small / "run")
    model = fakes.build_model(cfg)
    need = checkpoint_size_estimate(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert need > 2**20  # what the tiny model's state needs, plus the rest of a checkpoint
    status, err = _one_line(capsys, lambda: _train(cfg))
    assert status == 1
    assert err.startswith(f"error: not enough free space in OUTPUT_DIR/checkpoints {small / 'run' / 'checkpoints'}: ")
    assert "KiB free, one checkpoint needs about 1.0 MiB" in err
    assert not (small / "run" / "stats.jsonl").exists()


def _filling_the_disk_at_step_8(folder):
    """A model builder: the fake model, and at its 8th forward pass (epoch 2) the file system of
    ``folder`` fills up, leaving room for the epoch's log and statistics lines but not a checkpoint."""

    def build(cfg):
        model = fakes.build_model(cfg)
        calls = []

        def hook(module, inputs):
            calls.append(1)
            if len(calls) == 8:
                _fill(folder, 16 * 1024)

        model.register_forward_pre_hook(hook)
        return model

    return build


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, tmpfs, capsys):
    disk = tmpfs("disk", "8m")
    out = disk / "run"
    cfg = _cfg(out)
    status, err = _one_line(capsys, lambda: _train(cfg, _filling_the_disk_at_step_8(disk)))
    first = out / "checkpoints" / "checkpoint_epoch_00001.pyth"
    assert status == 1
    assert err == (
        f"error: cannot write {out / 'checkpoints' / 'checkpoint_epoch_00002.pyth'}: no space left on device; "
        f"epoch 2 is not saved and the last checkpoint {first} is intact: make room and run the same command to resume"
    )
    # The partial temporary file is gone; the first checkpoint reads.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint_epoch_00001.pyth"]
    assert torch.load(first, weights_only=True)["epoch"] == 1

    # With room again, the same command resumes from it and ends like an uninterrupted run.
    (disk / "filler").unlink()
    _train(cfg)
    reference = tmp_path / "reference"
    _train(_cfg(reference))
    expected = torch.load(reference / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)["model"]
    actual = torch.load(out / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)["model"]
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_torch_save_on_a_full_disk_says_no_space(tmp_path, tmpfs):
    disk = tmpfs("disk", "256k")
    path = disk / "checkpoint.pyth"
    save_checkpoint(path, {"w": torch.zeros(10)})
    _fill(disk, 0)
    with pytest.raises(WriteError) as raised:
        save_checkpoint(path, {"w": torch.randn(100_000)})
    assert str(raised.value) == f"cannot write {path}: no space left on device"
    assert raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in disk.iterdir()) == ["checkpoint.pyth", "filler"]
    assert torch.load(path, weights_only=True)["w"].shape == (10,)


class _RefusingFile:
    """A file whose writes fail with ENOSPC once ``limit`` bytes are in (what a full disk does)."""

    def __init__(self, real, limit):
        self.real, self.left = real, limit

    def write(self, data):
        if len(data) > self.left:
            self.real.write(bytes(data[: self.left]))
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_simulated_enospc_in_torch_save_is_one_line_and_cleans_up(tmp_path, monkeypatch):
    # Runs everywhere (no mount needed): torch.save writing through a file that fills up.
    import builtins

    from videotl.engine import checkpoint

    path = tmp_path / "checkpoint.pyth"
    save_checkpoint(path, {"w": torch.zeros(10)})
    real_open = builtins.open
    monkeypatch.setattr(checkpoint, "open", lambda *a, **k: _RefusingFile(real_open(*a, **k), 4096), raising=False)
    with pytest.raises(WriteError, match=f"^cannot write {path}: no space left on device$"):
        save_checkpoint(path, {"w": torch.randn(100_000)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pyth"]
    assert torch.load(path, weights_only=True)["w"].shape == (10,)


def test_atomic_write_errors_name_the_file(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file")
    with pytest.raises(
        WriteError, match=f"^cannot write {blocker / 'metrics.json'}: {blocker} is a file, not a folder$"
    ):
        atomic_write_text(blocker / "metrics.json", "{}")
    # Errors that are not the file system's pass through unchanged, and leave no temporary.
    with pytest.raises(TypeError):
        atomic_write_text(tmp_path / "x.txt", 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
