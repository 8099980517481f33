"""Two processes (torchrun, gloo, env://) evaluate exactly like one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from videotl.evaluation import read_submission

HERE = Path(__file__).resolve().parent


def _run(args, nproc, tmp_path, **env_vars):
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_vars)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(HERE / "run_fake.py"),
        *args,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _test_in_this_process(overrides):
    """``run_fake.py test`` without a new interpreter: one thread, as the torchrun ranks run."""
    import fakes

    from videotl.config import load_config
    from videotl.engine import test

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        test(
            load_config("", fakes.TINY + overrides),
            build_model_fn=fakes.build_model,
            build_loader_fn=fakes.build_loader,
        )
    finally:
        torch.set_num_threads(threads)


def test_two_process_training_and_evaluation_match_one_process(tmp_path):
    # Train one epoch with DDP (gloo on CPU): 12 videos, 2 per device -> 3 steps per rank; then test
    # in the same processes on all segments of 7 videos (13 samples: shards of 7 and 6, no padding).
    run = tmp_path / "run"
    common = ["TEST.MODE", "segments", "TEST.BATCH_SIZE_PER_DEVICE", "1"]
    out = _run(
        ["train_test", "OUTPUT_DIR", str(run), "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "1", *common], 2, tmp_path
    )
    assert "on 2 x cpu" in out.stdout and "3 iterations per epoch" in out.stdout
    assert "base lr 0.2" in out.stdout  # 0.1 per device x 2 devices

    single = tmp_path / "single"
    checkpoint = run / "checkpoints" / "checkpoint_epoch_00001.pyth"
    _test_in_this_process(["OUTPUT_DIR", str(single), "TEST.CHECKPOINT_FILE_PATH", str(checkpoint), *common])

    results = {}
    for name, folder in (("two", run), ("one", single)):
        metrics = json.loads((folder / "test_metrics.json").read_text())
        scores = read_submission(folder / "charades_submission.txt", num_classes=5)
        results[name] = (metrics, scores)
    (m1, s1), (m2, s2) = results["one"], results["two"]
    assert m1["num_views"] == m2["num_views"] == 13
    assert m1["map"] == m2["map"] and m1["map_sklearn"] == m2["map_sklearn"]
    assert m1["per_class"] == m2["per_class"]
    assert s1.keys() == s2.keys() and len(s1) == 7
    for video in s1:
        np.testing.assert_array_equal(s1[video], s2[video])
    # The evaluation during DDP training saw the same numbers.
    evals = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    during = [r for r in evals if r["type"] == "eval"]
    # (DDP leaves each rank with its own BatchNorm statistics; they must be rank 0's, as saved.)
    assert len(during) == 1
    for key in ("map", "map_sklearn", "map_classes_with_positives"):
        assert during[0][key] == m1[key], key


def test_collective_timeout_comes_from_the_config(tmp_path, monkeypatch):
    # A long evaluation on every rank meets the others only at its end: the wait is DIST_TIMEOUT_MINUTES.
    from datetime import timedelta

    import fakes
    import torch.distributed as dist

    from videotl.config import load_config
    from videotl.engine import setup_run

    joined = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **options: joined.update(options))
    for key, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(key, value)
    cfg = load_config("", [*fakes.TINY, "OUTPUT_DIR", str(tmp_path), "DIST_TIMEOUT_MINUTES", "90"])
    ctx = setup_run(cfg)
    assert (ctx.rank, ctx.world_size) == (1, 2)
    assert joined == {"backend": "gloo", "init_method": "env://", "world_size": 2, "rank": 1,
                      "timeout": timedelta(minutes=90)}  # fmt: skip


def test_compiled_ddp_splits_at_the_buckets_and_trains_as_eager_ddp(tmp_path):
    # Two ranks, gloo, MODEL.COMPILE True (a counting backend over aot_eager, 1 kB buckets): dynamo
    # sees DDP around the compiled module and splits the graph at its buckets; the losses are eager
    # DDP's; the checkpoint keeps the bare module's names.
    import fakes

    losses, graphs = {}, tmp_path / "graphs"
    for compiled in (False, True):
        run = tmp_path / f"compiled_{compiled}"
        args = ["train", "OUTPUT_DIR", str(run), "SOLVER.MAX_EPOCH", "1", "MODEL.COMPILE", str(compiled)]
        _run(args, 2, tmp_path, FAKE_COUNT_GRAPHS=str(graphs) if compiled else "")
        stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
        losses[compiled] = [row["loss"] for row in stats if row["type"] == "train"]
        checkpoint = torch.load(run / "checkpoints" / "checkpoint_epoch_00001.pyth", weights_only=False)
    assert len(losses[True]) == len(losses[False]) >= 1
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)
    # More than one forward graph per rank: the split (one graph would mean DDP's buckets were ignored).
    for rank in (0, 1):
        assert int(graphs.with_suffix(f".rank{rank}").read_text()) >= 2
    assert list(checkpoint["model"]) == list(fakes.TinyVideoNet(5).state_dict())
