"""FFmpeg's lines reach a user once per file per run: a training run with DataLoader workers (and
the test after it) reports a damaged but readable file in one warning, and a good VP9 WebM, whose
first frame lacks the colour range the later ones carry, in none."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.data.conftest import SMALL, write_video
from videotl.data import encoding

from .test_tools import TINY_MODEL

REPO = Path(__file__).resolve().parents[2]


def _clips(folder: Path) -> None:
    folder.mkdir(parents=True)
    write_video(folder / "good.mp4", rate=25, num_frames=50)
    frames = (np.full((48, 64, 3), 5 * i, dtype=np.uint8) for i in range(48))
    encoding.write_video(folder / "good_vp9.webm", frames, rate=24, codec="libvpx-vp9")
    # Cut after two thirds, its index up front: the first second reads, FFmpeg complains.
    whole = write_video(folder / "whole.mp4", rate=30, num_frames=90, faststart=True).read_bytes()
    (folder / "cut.mp4").write_bytes(whole[: len(whole) * 2 // 3])
    (folder / "whole.mp4").unlink()


def test_a_two_worker_run_reports_each_file_once_and_a_good_webm_not_at_all(tmp_path):
    root = tmp_path / "data"
    _clips(root / "clips")
    listing = "clips/good.mp4 0\nclips/good_vp9.webm 1\nclips/cut.mp4 0\n"
    (root / "train.csv").write_text(listing, encoding="utf-8")
    (root / "test.csv").write_text(listing, encoding="utf-8")
    args = [
        "DEVICE", "cpu", "DATA.PATH_TO_DATA_DIR", str(root), *SMALL, *TINY_MODEL, "MODEL.NUM_CLASSES", "2",
        "TRAIN.DATASET", "csv", "TEST.DATASET", "csv", "DATA_LOADER.NUM_WORKERS", "2", "SOLVER.MAX_EPOCH", "2",
        "TEST.MODE", "views", "OUTPUT_DIR", str(tmp_path / "run"), "DATA.DECODING_BACKEND", "decord",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("VIDEOTL_FFMPEG_LOG", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    reports = [line for line in output.splitlines() if "FFmpeg" in line]
    assert len(reports) == 1 and "cut.mp4" in reports[0], reports


def test_a_spawned_worker_reports_through_the_record_of_the_process_that_built_the_dataset(tmp_path):
    """A spawned DataLoader worker unpickles the dataset: from then on it reports through the
    record of the process that built it (forked workers inherit it)."""
    import pickle

    from videotl.config import load_config
    from videotl.data import VideoRecord, ffmpeg_log
    from videotl.data.build import dataset_from_records
    from videotl.utils.shared_keys import SharedKeys

    video = write_video(tmp_path / "a.mp4", rate=25, num_frames=25)
    cfg = load_config("", [*SMALL, "MODEL.NUM_CLASSES", "2"])
    dataset = dataset_from_records(cfg, [VideoRecord("a", video, (0,))], ["x", "y"], mode="train")
    built_with = ffmpeg_log.shared_reports()
    ffmpeg_log.adopt_shared_reports(SharedKeys())  # a fresh process's own record
    try:
        pickle.loads(pickle.dumps(dataset))
        assert ffmpeg_log.shared_reports().folder == built_with.folder
    finally:
        ffmpeg_log.adopt_shared_reports(built_with)
