"""tools/train_net.py, tools/test_net.py and tools/eval_charades.py end to end on the Charades fixture
(official CSV layout, real tiny videos, one of them unreadable) with a tiny TokenLearner model."""

import importlib
import json
import shutil

import pytest
import torch

from tests.data.conftest import CHARADES_CLASSES, SMALL, write_charades

# The tools run in this process (their main(argv)): a subprocess per call would mostly time imports.
TINY_MODEL = [
    "X3D.STEM_DIM",
    "4",
    "X3D.STAGE_DEPTHS",
    "[1,1,1,1]",
    "X3D.STAGE_DIMS",
    "[4,8,8,8]",
    "X3D.CONV5_DIM",
    "16",
    "X3D.HEAD_DIM",
    "16",
    "TOKENLEARNER.DIM",
    "16",
    "RES5.TEMPORAL",
    "tokenlearner",
    "RES5.CONVERTED_BLOCKS",
    "[0]",
]


class Result:
    def __init__(self, returncode, captured):
        self.returncode, self.stdout, self.stderr = returncode, captured.out, captured.err


@pytest.fixture
def tool(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def call(name, *args, check=True):
        module = importlib.import_module("videotl_tools." + name.removesuffix(".py"))
        returncode = module.main(list(args))
        result = Result(returncode, capsys.readouterr())
        if check:
            assert returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    return call


def test_train_test_and_official_evaluation_on_charades_fixture(tmp_path, tool):
    data = write_charades(tmp_path / "charades")
    out = tmp_path / "run"
    args = [
        "DEVICE",
        "cpu",
        "DATA.PATH_TO_DATA_DIR",
        str(data),
        "MODEL.NUM_CLASSES",
        str(len(CHARADES_CLASSES)),
        *SMALL,
        *TINY_MODEL,
        "SOLVER.MAX_EPOCH",
        "2",
        "SOLVER.BASE_LR_PER_DEVICE",
        "0.05",
        "TEST.MODE",
        "segments",
        "TRAIN.DETERMINISTIC",
        "True",
        "OUTPUT_DIR",
        str(out),
    ]
    train = tool("train_net.py", *args)
    assert "saved" in train.stdout and "checkpoint_epoch_00002.pyth" in train.stdout
    metrics = json.loads((out / "test_metrics.json").read_text())
    # BROKE cannot be decoded: listed by name, kept in the metric (ranked last), absent from the file.
    assert metrics["failed_videos"] == ["BROKE"] and metrics["num_videos"] == 3
    assert metrics["videos_in_score_file"] == 2
    # c000 and c002 have no positive test video: the official mean is NaN, sklearn's drops them.
    assert metrics["map"] is None and metrics["classes_without_positives"] == 2
    assert metrics["num_classes_evaluated"] == 3 and 0 <= metrics["map_sklearn"] <= 1
    present = [v for v in metrics["per_class"]["ap"].values() if v is not None]
    assert metrics["map_classes_with_positives"] == pytest.approx(sum(present) / 3)

    test = tool("test_net.py", *args)
    assert "test: map nan" in test.stdout
    gt = data / "Charades_v1_test.csv"
    official = tool("eval_charades.py", str(out / "charades_submission.txt"), str(gt), "--num-classes", "5")
    assert official.stdout.strip().splitlines()[-1] == "mAP nan"
    assert "Warning: 1 videos missing" in official.stdout
    variant = tool("eval_charades.py", str(out / "charades_submission.txt"), str(gt), "--num-classes", "5", "--sklearn")
    assert float(variant.stdout.strip().splitlines()[-1].split()[1]) == pytest.approx(metrics["map_sklearn"], abs=1e-6)
    ap = metrics["per_class"]["ap"]
    assert set(ap) == set(CHARADES_CLASSES)
    assert ap["Holding some clothes"] is None and ap["Putting clothes somewhere"] is not None
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert {r["type"] for r in stats} == {"train", "train_epoch", "eval", "test"}

    # Multi-view testing on the real pipeline: 2 clips x 3 crops per video, merged by mean.
    views = tool(
        "test_net.py",
        *args,
        "TEST.MODE",
        "views",
        "TEST.NUM_ENSEMBLE_VIEWS",
        "2",
        "TEST.NUM_SPATIAL_CROPS",
        "3",
        "TEST.ENSEMBLE_METHOD",
        "mean",
    )
    assert "test: map nan" in views.stdout
    view_metrics = json.loads((out / "test_metrics.json").read_text())
    assert view_metrics["num_views"] == 3 * 6 and view_metrics["test_mode"] == "views"
    assert view_metrics["failed_videos"] == ["BROKE"]

    # Resume on the real data pipeline: a copy of the run without its last checkpoint, trained
    # again with the same settings, reaches the very same weights.
    again = tmp_path / "again"
    shutil.copytree(out, again)
    (again / "checkpoints" / "checkpoint_epoch_00002.pyth").unlink()
    resumed = tool("train_net.py", *args[:-1], str(again), "TEST.ENABLE", "False")
    assert "resumed from" in resumed.stdout and "checkpoint_epoch_00001.pyth" in resumed.stdout
    expected = torch.load(out / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)["model"]
    actual = torch.load(again / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)["model"]
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    complete = tool("train_net.py", *args[:-1], str(again), "TEST.ENABLE", "False")
    assert "training already complete" in complete.stdout
    # Another model in the same folder is refused with the file's name.
    other = tool("train_net.py", *args[:-1], str(again), "X3D.HEAD_DIM", "24", check=False)
    assert other.returncode == 1 and "cannot resume from" in other.stderr and "checkpoint_epoch_00002" in other.stderr


def test_tools_report_bad_input_in_one_line(tmp_path, tool):
    missing = tool("train_net.py", "--cfg", str(tmp_path / "nope.yaml"), check=False)
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr
    bad = tool("test_net.py", "SOLVER.MAX_EPOC", "3", check=False)
    assert bad.returncode == 1 and "SOLVER.MAX_EPOCH" in bad.stderr
    nothing = tool("test_net.py", "DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path / "empty"), check=False)
    assert nothing.returncode == 1 and "holds no checkpoint" in nothing.stderr
    # Values that parse but cannot be right, a _BASE_ cycle and a YAML tag: one line each, naming the key or files.
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    for args, named in (
        (["DATA.TARGET_FPS", ".nan"], "DATA.TARGET_FPS"),
        (["SOLVER.BASE_LR_PER_DEVICE", ".inf"], "SOLVER.BASE_LR_PER_DEVICE"),
        (["RNG_SEED", "-1"], "RNG_SEED = -1"),
        (["--cfg", str(tmp_path / "a.yaml")], f"_BASE_ cycle: {(tmp_path / 'a.yaml').resolve()} -> "),
        (["OUTPUT_DIR", "!!python/object/apply:os.system ['true']"], "OUTPUT_DIR: the command line value"),
    ):
        result = tool("train_net.py", *args, check=False)
        assert result.returncode == 1 and result.stderr.startswith("error: ") and named in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
