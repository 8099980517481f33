import json
import math

import fakes
import numpy as np
import pytest
import torch

from videotl import engine
from videotl.config import load_config
from videotl.engine.checkpoint import CheckpointError, last_checkpoint, read_checkpoint, remove_stale_temporaries
from videotl.engine.run_log import StatsWriter
from videotl.engine.solver import LRSchedule, build_schedule
from videotl.evaluation import ViewCountError, charades_map, read_submission


def _cfg(tmp_path, *overrides):
    return load_config("", fakes.TINY + ["OUTPUT_DIR", str(tmp_path / "run"), *overrides])


def _run_train(cfg):
    return engine.train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)


def _run_test(cfg):
    return engine.test(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)


def _manual_video_scores(cfg, checkpoint, mode, method, activation):
    """Per-video scores computed straight from the dataset, one sample at a time."""
    model = fakes.build_model(cfg)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    dataset = fakes.build_loader(cfg, "test", mode).dataset
    per_video = {}
    with torch.no_grad():
        for i in range(len(dataset)):
            sample = dataset[i]
            score = activation(model(sample["inputs"][None]))[0].double().numpy()
            per_video.setdefault(sample["video_index"], []).append(score)
    reduce = np.max if method == "max" else np.mean
    return np.stack([reduce(np.stack(per_video[v]), axis=0) for v in range(len(dataset.video_ids))])


def test_train_then_test_multilabel_segments(tmp_path):
    cfg = _cfg(tmp_path, "TEST.MODE", "segments")
    summary = _run_train(cfg)
    out = tmp_path / "run"
    assert summary["iterations"] == 12 and summary["epochs"] == 2
    assert (out / "config.yaml").is_file() and load_config(str(out / "config.yaml")).SOLVER.MAX_EPOCH == 2
    env = json.loads((out / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["world_size"] == 1
    records = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "train"]
    assert [r["iter"] for r in steps] == [2, 4, 6, 8, 10, 12]
    for record in steps:
        assert {"loss", "lr", "data_time", "iter_time", "memory_mb"} <= record.keys()
    # Warm-up over half an epoch (3 iterations) then cosine to 0 over 12.
    assert steps[0]["lr"] == pytest.approx(
        LRSchedule(base_lr=0.1, end_lr=0, warmup_start_lr=0, warmup_iters=3, total_iters=12).lr_at(1)
    )
    assert len([r for r in records if r["type"] == "eval"]) == 2
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    state = read_checkpoint(out / "checkpoints" / names[-1])
    assert {"model", "optimizer", "scheduler", "scaler", "rng_states", "sampler", "epoch"} <= state.keys()
    assert state["epoch"] == 2 and state["iteration"] == 12

    result = _run_test(cfg)
    expected = _manual_video_scores(cfg, out / "checkpoints" / names[-1], "segments", "max", torch.sigmoid)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6)
    labels = fakes.build_loader(cfg, "test", "segments").dataset.video_labels().numpy()
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["map"] == pytest.approx(charades_map(expected, labels).mean_ap, rel=1e-6)
    assert metrics["num_classes_evaluated"] == 5 and metrics["num_views"] == 13
    # The score file holds exactly what was evaluated.
    submission = read_submission(out / "charades_submission.txt", num_classes=5)
    assert len(submission) == 7
    np.testing.assert_array_equal(submission["TEST003"], result.scores[3])
    csv_lines = (out / "per_class_results.csv").read_text().splitlines()
    assert csv_lines[0] == "class_index,class_name,ap,ap_sklearn" and "action number 4" in csv_lines[5]
    assert (out / "per_class_results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_label_views_mean(tmp_path):
    cfg = _cfg(
        tmp_path,
        "TRAIN.DATASET",
        "avid",
        "TEST.DATASET",
        "avid",
        "MODEL.LOSS_FUNC",
        "cross_entropy",
        "DATA.MULTI_LABEL",
        "False",
        "MODEL.HEAD_ACT",
        "softmax",
        "SOLVER.LABEL_SMOOTHING",
        "0.2",
        "TEST.MODE",
        "views",
        "TEST.NUM_ENSEMBLE_VIEWS",
        "2",
        "TEST.NUM_SPATIAL_CROPS",
        "3",
        "TEST.ENSEMBLE_METHOD",
        "mean",
        "SOLVER.MAX_EPOCH",
        "1",
        "TEST.SUBMISSION_FILE",
        "scores.txt",
    )
    _run_train(cfg)
    result = _run_test(cfg)
    out = tmp_path / "run"
    expected = _manual_video_scores(cfg, last_checkpoint(out), "views", "mean", lambda x: torch.softmax(x, 1))
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6)
    labels = np.arange(7) % 5
    top1 = float(np.mean(expected.argmax(1) == labels))
    assert result.metrics["top1"] == pytest.approx(top1)
    assert result.metrics["top5"] == 1.0  # 5 classes: the true class is always in the top 5
    assert result.metrics["num_views"] == 7 * 6
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert {"top1", "top5", "mean_class_accuracy"} <= metrics.keys()
    assert (out / "scores.txt").is_file()


def test_nan_loss_names_the_iteration(tmp_path):
    class Exploding(fakes.TinyVideoNet):
        calls = 0

        def forward(self, x):
            Exploding.calls += 1
            out = super().forward(x)
            return out * float("nan") if Exploding.calls == 5 else out

    cfg = _cfg(tmp_path, "TRAIN.EVAL_PERIOD", "0")
    with pytest.raises(FloatingPointError, match=r"loss is nan at iteration 5 \(epoch 1, step 5 of 6"):
        engine.train(cfg, build_model_fn=lambda c: Exploding(5), build_loader_fn=fakes.build_loader)


def test_undecodable_videos_are_listed_and_ranked_last(tmp_path):
    fakes.FAILED_VIDEOS.extend([2])
    cfg = _cfg(tmp_path, "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0", "TEST.MODE", "segments")
    _run_train(cfg)
    result = _run_test(cfg)
    assert result.failed_videos == ["TEST002"] and result.unscored_videos == ["TEST002"]
    assert np.isneginf(result.scores[2]).all()
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert metrics["failed_videos"] == ["TEST002"] and metrics["num_videos"] == 7
    assert "TEST002" not in read_submission(tmp_path / "run" / "charades_submission.txt", num_classes=5)


def test_wrong_view_count_fails_loudly(tmp_path):
    cfg = _cfg(tmp_path, "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0", "TEST.MODE", "segments")
    _run_train(cfg)

    def lying_loader(cfg, split, mode, **kwargs):
        # The dataset announces one segment more for video 4 than it yields.
        loader = fakes.build_loader(cfg, split, mode, **kwargs)
        honest = loader.dataset.num_views
        loader.dataset.num_views = lambda i: honest(i) + (1 if i == 4 else 0)
        return loader

    with pytest.raises(ViewCountError, match="video 4: 2 of 3"):
        engine.test(cfg, build_model_fn=fakes.build_model, build_loader_fn=lying_loader)


def test_model_only_file_with_ddp_prefix_and_finetuning(tmp_path):
    cfg = _cfg(tmp_path, "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0")
    _run_train(cfg)
    state = torch.load(last_checkpoint(tmp_path / "run"), weights_only=True)["model"]
    model_only = tmp_path / "model_only.pyth"
    torch.save({f"module.{k}": v for k, v in state.items()}, model_only)
    other = _cfg(tmp_path, "OUTPUT_DIR", str(tmp_path / "other"), "TEST.CHECKPOINT_FILE_PATH", str(model_only))
    # The same scores as testing the run's own newest checkpoint.
    np.testing.assert_array_equal(_run_test(other).scores, _run_test(cfg).scores)

    # Fine-tuning on 3 classes from the 5-class file: the classifier is skipped, the rest loaded.
    tune = _cfg(
        tmp_path,
        "OUTPUT_DIR",
        str(tmp_path / "tune"),
        "MODEL.NUM_CLASSES",
        "3",
        "SOLVER.MAX_ITER",
        "1",
        "TRAIN.EVAL_PERIOD",
        "0",
        "TRAIN.CHECKPOINT_FILE_PATH",
        str(model_only),
    )
    _run_train(tune)
    tuned = torch.load(last_checkpoint(tmp_path / "tune"), weights_only=True)
    assert tuned["model"]["fc.weight"].shape == (3, 4)
    log = (tmp_path / "tune" / "log.txt").read_text()
    assert "not loaded: fc.weight (shape (5, 4) in the file, (3, 4) in the model)" in log


def test_missing_and_broken_checkpoints_are_named(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        _run_test(cfg)
    broken = tmp_path / "broken.pyth"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError, match="broken.pyth"):
        _run_test(_cfg(tmp_path, "TEST.CHECKPOINT_FILE_PATH", str(broken)))
    with pytest.raises(FileNotFoundError, match="nothere.pyth"):
        _run_test(_cfg(tmp_path, "TEST.CHECKPOINT_FILE_PATH", str(tmp_path / "nothere.pyth")))


def test_last_checkpoint_ignores_temporary_files(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "checkpoint_epoch_00002.pyth").write_bytes(b"")
    (folder / "checkpoint_epoch_00010.pyth").write_bytes(b"")
    (folder / ".checkpoint_epoch_00011.pyth.abc.tmp").write_bytes(b"")
    assert last_checkpoint(tmp_path).name == "checkpoint_epoch_00010.pyth"
    assert last_checkpoint(tmp_path / "empty") is None
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".checkpoint_epoch_00011.pyth.abc.tmp"]
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_epoch_00002.pyth", "checkpoint_epoch_00010.pyth"]


def test_schedule_warmup_cosine_and_world_size():
    schedule = LRSchedule(base_lr=1.0, end_lr=0.0, warmup_start_lr=0.1, warmup_iters=10, total_iters=100)
    main_at_10 = 0.5 * (1 + math.cos(math.pi * 0.1))
    assert schedule.lr_at(0) == pytest.approx(0.1)
    assert schedule.lr_at(5) == pytest.approx(0.1 + (main_at_10 - 0.1) * 0.5)
    assert schedule.lr_at(10) == pytest.approx(main_at_10)
    assert schedule.lr_at(50) == pytest.approx(0.5)
    assert schedule.lr_at(100) == pytest.approx(0.0)
    cfg = load_config("", ["SOLVER.BASE_LR_PER_DEVICE", "0.8", "SOLVER.WARMUP_EPOCHS", "2"])
    scaled = build_schedule(cfg=cfg, iters_per_epoch=50, total_iters=1000, world_size=4)
    assert scaled.base_lr == pytest.approx(3.2) and scaled.warmup_iters == 100
    with pytest.raises(ValueError, match="2000"):
        scaled.load_state_dict({"last_iteration": 5, "total_iters": 2000})


def test_stats_file_drops_a_partial_last_line(tmp_path):
    (tmp_path / "stats.jsonl").write_text('{"a": 1}\n{"b": ')
    writer = StatsWriter(str(tmp_path), enabled=True, tensorboard=False)
    writer.write({"c": float("nan")})
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert lines == [{"a": 1}, {"c": None}]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    import random

    from videotl.engine.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint

    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    save_checkpoint(tmp_path / "rng.pyth", {"rng": capture_rng_state()})
    expected = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    state = torch.load(tmp_path / "rng.pyth", weights_only=True)["rng"]
    restore_rng_state(state)
    actual = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    assert actual[:3] == expected[:3] and torch.equal(actual[3], expected[3])
