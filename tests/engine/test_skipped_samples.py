"""Unreadable training videos on the real data pipeline: counted per epoch (log line and
stats.jsonl), in the final summary, across DataLoader workers, and across a resume; a split that
cannot be read at all ends in the same one line with workers as without."""

import json
import re

import pytest

from tests.data.conftest import CHARADES_CLASSES, SMALL, write_charades
from tests.models.conftest import TINY_X3D
from videotl.config import load_config
from videotl.data import build_dataset
from videotl.engine import train


@pytest.fixture(scope="module")
def charades(tmp_path_factory):
    return write_charades(tmp_path_factory.mktemp("charades"))


def _overrides(root, out, *more):
    return [
        *SMALL,
        *TINY_X3D,
        "DATA.PATH_TO_DATA_DIR", str(root), "MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES)),
        "TRAIN.EVAL_PERIOD", "0", "TENSORBOARD.ENABLE", "False", "DEVICE", "cpu", "SOLVER.BASE_LR_PER_DEVICE", "0.01",
        "OUTPUT_DIR", str(out), *more,
    ]  # fmt: skip


def test_skips_are_counted_per_epoch_across_workers_and_resumes(tmp_path, charades):
    # Ground truth, one process, sample by sample: the broken draws each training sample replaced.
    # Every epoch draws each of the 3 training videos once (3 samples, batches of 2, none dropped).
    dataset = build_dataset(load_config("", _overrides(charades, tmp_path / "unused")), "train", "train")
    per_epoch = sum(dataset[i]["skipped"] for i in range(len(dataset)))
    assert per_epoch >= 1  # BROKE is drawn once an epoch, and replaced

    out = tmp_path / "run"
    cfg = load_config("", _overrides(charades, out, "SOLVER.MAX_EPOCH", "3", "DATA_LOADER.NUM_WORKERS", "2"))
    summary = train(cfg)
    assert summary["skipped_samples"] == 3 * per_epoch and summary["broken_videos"] == 1
    epochs = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "train_epoch"]
    counts = [(r["epoch"], r["skipped_samples"], r["broken_videos"]) for r in epochs]
    assert counts == [(epoch, per_epoch, 1) for epoch in (1, 2, 3)]
    log = (out / "log.txt").read_text()
    unit = "sample" if per_epoch == 1 else "samples"
    for epoch in (1, 2, 3):
        assert re.search(
            rf"epoch {epoch}/3: loss [\d.]+; {per_epoch} unreadable {unit} skipped this epoch, 1 distinct broken video so far",
            log,
        )
    assert f"training done: 3 epochs, 6 iterations in {out}; {3 * per_epoch} unreadable samples skipped in all" in log

    # A run stopped after epoch 2 and resumed counts the epochs before the resume too.
    (out / "checkpoints" / "checkpoint_epoch_00003.pyth").unlink()
    (out / "log.txt").unlink()
    summary = train(load_config("", _overrides(charades, out, "SOLVER.MAX_EPOCH", "3", "DATA_LOADER.NUM_WORKERS", "0")))
    assert summary["skipped_samples"] == 3 * per_epoch and summary["broken_videos"] == 1
    log = (out / "log.txt").read_text()
    assert "resumed from" in log and "epochs 3..3" in log
    assert f"{3 * per_epoch} unreadable samples skipped in all, 1 distinct broken video so far" in log


def test_unreadable_split_is_one_line_with_and_without_workers(tmp_path, charades, capsys):
    import shutil

    from videotl_tools import train_net

    broken = tmp_path / "broken"
    shutil.copytree(charades, broken)
    for video in (broken / "Charades_v1_480").iterdir():
        video.write_text("not a video")
    lines = {}
    for workers in ("0", "2"):
        status = train_net.main(_overrides(broken, tmp_path / f"out{workers}", "DATA_LOADER.NUM_WORKERS", workers))
        err = capsys.readouterr().err
        assert status == 1 and "Traceback" not in err and "DataLoader worker" not in err, err
        lines[workers] = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(lines["0"]) == 1 and lines["0"] == lines["2"]
    assert re.fullmatch(
        rf"error: {re.escape(str(broken / 'Charades_v1_480'))}/\w+\.mp4: this and 19 replacement videos could not be "
        r"decoded \(unreadable so far: 3\); run tools/check_videos.py",
        lines["0"][0],
    )
