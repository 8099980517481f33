"""Video names a user's own files have: non-ASCII ids work end to end in every dataset format
(Charades, AViD, CSV lists), and an id the space-separated score file cannot hold stops the run
when the annotations are read, before any training, in one line naming the file, row and id."""

import codecs
import csv
import json
import locale
import sys

import pytest

from tests.data.conftest import CHARADES_CLASSES, CHARADES_COLUMNS, SMALL, frame_indices, write_charades, write_video
from videotl.data import read_clip
from videotl.evaluation import read_submission

from ..data.conftest import BACKENDS
from .test_tools import TINY_MODEL, tool  # noqa: F401  (the fixture)

NON_ASCII = "vidéo_übung_01"
WITH_SPACE = "vidéo übung 01"


def _charades(root, test_id):
    """The Charades fixture with one more test video, ``test_id`` (row and file named alike)."""
    write_charades(root)
    write_video(root / "Charades_v1_480" / f"{test_id}.mp4", rate=30, num_frames=60)
    csv_path = root / "Charades_v1_test.csv"
    with open(csv_path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    rows.append([test_id, "S2", "Hall", "5", "6", "Yes", "", "", "", "c001 0.00 1.50", "2.00"])
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert rows[0] == CHARADES_COLUMNS
    # The new video is the last row (header on line 1).
    return ["MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES))], f"Charades_v1_test.csv:{len(rows)}"


def _avid(root, test_id):
    (root / "videos").mkdir(parents=True)
    (root / "avid_classes.txt").write_text("archery\nbaking\n", encoding="utf-8")
    train = {"a.mp4": "archery", "b.mp4": "baking"}
    val = {"c.mp4": "baking", f"{test_id}.mp4": "archery"}
    for name in [*train, *val]:
        write_video(root / "videos" / name, rate=25, num_frames=50)
    (root / "avid_train.json").write_text(json.dumps(train), encoding="utf-8")
    (root / "avid_val.json").write_text(json.dumps(val, ensure_ascii=False), encoding="utf-8")
    overrides = [
        "MODEL.NUM_CLASSES", "2", "DATA.MULTI_LABEL", "False", "MODEL.LOSS_FUNC", "cross_entropy",
        "MODEL.HEAD_ACT", "softmax", "TRAIN.DATASET", "avid", "TEST.DATASET", "avid", "TEST.SPLIT", "val",
    ]  # fmt: skip
    return overrides, f"avid_val.json: entry '{test_id}.mp4'"


def _csv(root, test_id):
    (root / "clips").mkdir(parents=True)
    for name in ("a", "b", test_id):
        write_video(root / "clips" / f"{name}.mp4", rate=25, num_frames=50)
    (root / "train.csv").write_text("clips/a.mp4 0\nclips/b.mp4 1\n", encoding="utf-8")
    (root / "test.csv").write_text(f"clips/b.mp4 1\nclips/{test_id}.mp4 0\n", encoding="utf-8")
    overrides = ["MODEL.NUM_CLASSES", "2", "TRAIN.DATASET", "csv", "TEST.DATASET", "csv"]
    return overrides, "test.csv:2"


def _mmaction(root, test_id):
    (root / "clips").mkdir(parents=True)
    for name in ("a", "b", test_id):
        write_video(root / "clips" / f"{name}.mp4", rate=25, num_frames=50)
    (root / "train_list.txt").write_text("clips/a.mp4 0\nclips/b.mp4 1\n", encoding="utf-8")
    (root / "val_list.txt").write_text(f"clips/b.mp4 1\nclips/{test_id}.mp4 0\n", encoding="utf-8")
    overrides = [
        "MODEL.NUM_CLASSES", "2", "TRAIN.DATASET", "mmaction2", "TEST.DATASET", "mmaction2",
        "TRAIN.SPLIT", "train_list.txt", "TEST.SPLIT", "val_list.txt",
    ]  # fmt: skip
    return overrides, "val_list.txt:2"


FORMATS = {"charades": _charades, "avid": _avid, "csv": _csv}
# MMAction2's lists separate fields by white space, so no listed path holds one: only non-ASCII.
NON_ASCII_FORMATS = {**FORMATS, "mmaction2": _mmaction}


def _score_file_id(dataset, test_id):
    return f"clips/{test_id}.mp4" if dataset in ("csv", "mmaction2") else test_id


def _prepare(tmp_path, dataset, test_id):
    """(data root, run folder, train_net arguments, where the test video is listed) of a dataset in
    ``dataset``'s format whose test split lists ``test_id``."""
    root, out = tmp_path / "data", tmp_path / "run"
    root.mkdir()
    overrides, where = NON_ASCII_FORMATS[dataset](root, test_id)
    args = [
        "DEVICE", "cpu", "DATA.PATH_TO_DATA_DIR", str(root), *SMALL, *TINY_MODEL, *overrides,
        "SOLVER.MAX_EPOCH", "1", "TEST.MODE", "views", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    return root, out, args, root / where


@pytest.fixture
def ascii_default_encoding():
    """The C locale's ASCII as the default encoding of text files opened in this process (what
    ``open()`` uses without ``encoding=``), as on a machine without a UTF-8 locale; restored after."""
    if sys.flags.utf8_mode:
        pytest.skip("Python's UTF-8 mode (PYTHONUTF8=1) fixes the default encoding at UTF-8")
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert codecs.lookup(locale.getpreferredencoding(False)).name == "ascii"
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)


@pytest.mark.parametrize("dataset", sorted(NON_ASCII_FORMATS))
def test_non_ascii_ids_train_test_and_reach_the_score_file(tmp_path, tool, dataset, ascii_default_encoding):  # noqa: F811
    _, out, args, _ = _prepare(tmp_path, dataset, NON_ASCII)
    tool("train_net.py", *args)
    metrics = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert metrics["failed_videos"] in ([], ["BROKE"]) and metrics["videos_in_score_file"] >= 2
    num_classes = int(args[args.index("MODEL.NUM_CLASSES") + 1])
    scores = read_submission(out / "charades_submission.txt", num_classes=num_classes)
    assert _score_file_id(dataset, NON_ASCII) in scores


# The split that lists the spaced id: TRAIN.SPLIT, TEST.SPLIT.
SPLITS = {"charades": ("test", "train"), "avid": ("val", "train"), "csv": ("test", "train")}


@pytest.mark.parametrize("in_split", ["test", "train"])
@pytest.mark.parametrize("dataset", sorted(FORMATS))
def test_an_id_with_a_space_stops_before_training(tmp_path, tool, dataset, in_split):  # noqa: F811
    _, out, args, where = _prepare(tmp_path, dataset, WITH_SPACE)
    if in_split == "train":
        # The split that lists the id trains, the other tests.
        train_split, test_split = SPLITS[dataset]
        args += ["TRAIN.SPLIT", train_split, "TEST.SPLIT", test_split]
    result = tool("train_net.py", *args, check=False)
    assert result.returncode == 1, result.stdout[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(where) in lines[0] and repr(_score_file_id(dataset, WITH_SPACE)) in lines[0], lines[0]
    assert "white space" in lines[0]
    # Nothing was written: no run folder (checkpoints/, tensorboard/, config.yaml, log.txt).
    assert not out.exists(), sorted(path.name for path in out.iterdir())


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_ascii_paths_decode_on_every_backend(tmp_path, backend):
    folder = tmp_path / "übung"
    folder.mkdir()
    path = write_video(folder / f"{NON_ASCII}.mp4", rate=30, num_frames=30)
    clip = read_clip(path, 0.5, num_frames=4, fps=10.0, backend=backend)
    assert frame_indices(clip) == [15, 18, 21, 24]
