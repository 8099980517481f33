"""Token attention capture and rendering, training curves, timelines, and the three tools."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videotl.config import load_config
from videotl.models import build_model
from videotl.visualization import (
    attention_grid,
    capture_token_maps,
    plot_timeline,
    plot_training_curves,
    read_stats,
    render_token_attention,
)

from ..data.conftest import CHARADES_CLASSES, write_charades
from ..models.conftest import TINY_X3D

REPO = Path(__file__).resolve().parents[2]
TINY_TL = TINY_X3D + ["RES5.TEMPORAL", "tokenlearner", "MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES))]


def _tiny_model(*overrides):
    cfg = load_config("", TINY_TL + list(overrides))
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def test_capture_records_every_tokenlearner_in_execution_order_and_removes_hooks():
    cfg, model = _tiny_model()
    seen_inputs = []
    modules = [m for n, m in model.named_modules() if n.endswith("temporal.op.tokenizer")]
    assert len(modules) == 2
    probes = [m.register_forward_hook(lambda mod, inp, out: seen_inputs.append(inp[0])) for m in modules]
    clip = torch.randn(1, 3, cfg.DATA.NUM_FRAMES, 64, 64)
    with capture_token_maps(model) as captured:
        model(clip)
    for probe in probes:
        probe.remove()
    assert [c.name for c in captured] == [
        "stages.3.1.middle.temporal.op.tokenizer",
        "stages.3.2.middle.temporal.op.tokenizer",
    ]
    assert captured[0].maps.shape == (1, 4, 8, 2, 2)
    for module, x, record in zip(modules, seen_inputs, captured):
        torch.testing.assert_close(record.maps, module(x)[1])
    assert all(not m._forward_hooks for m in model.modules())


def test_capture_needs_a_model_with_maps():
    _, model = _tiny_model("RES5.TEMPORAL", "conv1d")
    with pytest.raises(ValueError, match="no TokenLearner-style module"):
        with capture_token_maps(model):
            pass


def test_attention_grid_layout_and_token_rows_differ():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(6, 20, 30, 3), dtype=np.uint8)
    maps = np.zeros((6, 3, 4, 4), dtype=np.float32)
    maps[:, 0, 0, 0] = 1.0  # token 0 looks top-left
    maps[:, 2, 3, 3] = 1.0  # token 2 looks bottom-right
    grid = np.asarray(attention_grid(frames, maps, tokens=[0, 2], frame_indices=[0, 5]))
    assert grid.shape == (3 * 20, 2 * 30, 3)
    np.testing.assert_array_equal(grid[:20, 30:, :][15:], frames[5][15:])  # first row: the raw frame
    # Column 1 carries no "token i" label to cover the corners.
    token0, token2 = grid[20:40, 30:].astype(int), grid[40:60, 30:].astype(int)
    # jet's hot end is red: token 0's overlay is redder top-left, token 2's bottom-right.
    assert token0[:5, :5, 0].mean() > token2[:5, :5, 0].mean()
    assert token2[-5:, -5:, 0].mean() > token0[-5:, -5:, 0].mean()
    with pytest.raises(ValueError, match="token 7 does not exist"):
        attention_grid(frames, maps, tokens=[7], frame_indices=[0])


def test_render_token_attention_files(tmp_path):
    cfg, model = _tiny_model()
    inputs = torch.randn(3, cfg.DATA.NUM_FRAMES, 64, 64).clamp(-1.5, 1.5)
    written = render_token_attention(
        model, inputs, out_dir=tmp_path, tokens=[0, 1, 2], mean=cfg.DATA.MEAN, std=cfg.DATA.STD, fps=12.0, num_columns=4
    )
    grid = Image.open(written["grid"])
    assert grid.size == (4 * 64, 4 * 64)
    pixels = np.asarray(grid.convert("RGB")).astype(int)
    rows = [pixels[r * 64 : (r + 1) * 64] for r in range(4)]
    assert pixels.std() > 10
    assert np.abs(rows[1] - rows[2]).mean() > 1 and np.abs(rows[2] - rows[3]).mean() > 1
    animation = Image.open(written["animation"])
    assert animation.n_frames == cfg.DATA.NUM_FRAMES and animation.size == (4 * 64, 64)
    assert written["num_modules"] == 2


def _write_stats(path: Path) -> None:
    lines = [{"type": "train", "epoch": 1, "iter": i, "loss": 1.0 / i, "lr": 0.1 * i} for i in range(1, 6)]
    lines += [{"type": "eval", "epoch": 1, "iter": 5, "map": 0.3, "map_sklearn": 0.35}]
    lines += [{"type": "train", "epoch": 2, "iter": i, "loss": 1.0 / i, "lr": 0.5} for i in range(6, 11)]
    lines += [{"type": "eval", "epoch": 2, "iter": 10, "map": 0.5, "map_sklearn": 0.55}]
    lines += [{"type": "test", "checkpoint": "c.pyth", "map": 0.6}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_training_curves(tmp_path):
    _write_stats(tmp_path / "stats.jsonl")
    assert len(read_stats(tmp_path / "stats.jsonl")) == 13
    image = Image.open(plot_training_curves(tmp_path))
    assert image.size == (1500, 360)
    assert np.asarray(image.convert("L")).std() > 5
    (tmp_path / "stats.jsonl").write_text('{"type": "train", "iter": 1, "loss": 1, "lr": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"stats.jsonl:2"):
        plot_training_curves(tmp_path)
    with pytest.raises(FileNotFoundError, match="stats.jsonl"):
        plot_training_curves(tmp_path / "missing")


def test_timeline_with_ground_truth(tmp_path):
    scores = np.array([[0.1, 0.9, 0.2], [0.8, 0.1, 0.3]])
    path = plot_timeline(
        tmp_path / "t.png",
        segment_ranges=[(0, 5.3), (5.3, 10.6)],
        segment_scores=scores,
        class_names=["a", "b", "c"],
        classes=[1, 0],
        ground_truth=[(0, 6.0, 9.0), (2, 0, 1)],
    )
    image = Image.open(path)
    assert image.size == (1000, 480)
    assert np.asarray(image.convert("L")).std() > 5


# -- the tools, on a tiny model and the Charades-format fixture ------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = write_charades(tmp_path_factory.mktemp("charades"))
    out = tmp_path_factory.mktemp("run")
    overrides = TINY_TL + [
        "DATA.PATH_TO_DATA_DIR",
        str(root),
        "DATA.NUM_FRAMES",
        "8",
        "DATA.TEST_CROP_SIZE",
        "64",
        "DATA_LOADER.NUM_WORKERS",
        "0",
        "OUTPUT_DIR",
        str(out),
        "TEST.BATCH_SIZE_PER_DEVICE",
        "2",
    ]
    cfg = load_config("", overrides)
    torch.manual_seed(0)
    checkpoint = out / "model_only.pyth"
    torch.save(build_model(cfg).state_dict(), checkpoint)
    return root, out, checkpoint, overrides


def _run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_visualize_tokens_tool(tiny_run, tmp_path):
    root, _, checkpoint, overrides = tiny_run
    result = _run(
        "tools/visualize_tokens.py",
        "--cfg",
        "",
        "--checkpoint",
        checkpoint,
        "--video",
        root / "Charades_v1_480/AAA01.mp4",
        "--tokens",
        "0,3",
        "--start",
        "0.5",
        "--columns",
        "4",
        "--out",
        tmp_path,
        *overrides,
    )
    assert result.returncode == 0, result.stderr
    grid = Image.open(tmp_path / "tokens_grid.png")
    assert grid.size == (4 * 64, 3 * 64)
    pixels = np.asarray(grid.convert("RGB")).astype(int)
    assert np.abs(pixels[64:128] - pixels[128:192]).mean() > 1
    assert Image.open(tmp_path / "tokens.gif").n_frames == 8


def test_visualize_tokens_stats_prints_the_measures_of_centred_clips(tiny_run):
    from videotl.data import probe
    from videotl.data.build import read_test_clip
    from videotl.visualization import measure_token_maps

    root, _, checkpoint, overrides = tiny_run
    videos = [root / "Charades_v1_480/AAA01.mp4", root / "Charades_v1_480/BBB02.mp4"]
    result = _run(
        "tools/visualize_tokens.py", "--cfg", "", *overrides, "--checkpoint", checkpoint, "--stats", "--video", *videos
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    # The tiny model converts two res5 blocks: one line per TokenLearner, each over both clips.
    assert len(lines) == 2 and all("2x2 grid, 2 clips" in line for line in lines)
    # The same numbers as measuring here the clips centred in each video (8 frames at 12 fps).
    cfg = load_config("", overrides)
    model = build_model(cfg).eval()
    model.load_state_dict(torch.load(checkpoint))
    starts = [max(0.0, (probe(v).duration - 8 / cfg.DATA.TARGET_FPS) / 2) for v in videos]
    expected = measure_token_maps(
        model, [read_test_clip(cfg, v, s) for v, s in zip(videos, starts)], mean=cfg.DATA.MEAN, std=cfg.DATA.STD
    )
    assert lines == [m.summary() for m in expected]
    drawing_without_out = _run("tools/visualize_tokens.py", "--checkpoint", checkpoint, "--video", *videos)
    assert drawing_without_out.returncode == 2 and "one --video and --out DIR" in drawing_without_out.stderr


def test_predict_tool_reports_broken_files_and_draws_timelines(tiny_run, tmp_path):
    root, _, checkpoint, overrides = tiny_run
    videos = root / "Charades_v1_480"
    result = _run(
        "tools/predict.py",
        "--cfg",
        "",
        "--checkpoint",
        checkpoint,
        "--video",
        videos / "AAA01.mp4",
        videos / "BROKE.mp4",
        videos / "CCC03.mp4",
        "--top-k",
        "3",
        "--annotations",
        "test",
        "--out",
        tmp_path,
        *overrides,
    )
    assert result.returncode == 0, result.stderr
    # The unreadable file is reported once, as a warning (the others were predicted).
    broken_lines = [line for line in result.stderr.splitlines() if "BROKE.mp4" in line]
    assert len(broken_lines) == 1 and broken_lines[0].startswith("warning: "), result.stderr
    payload = json.loads((tmp_path / "predictions.json").read_text())
    assert [Path(p["video"]).name for p in payload] == ["AAA01.mp4", "BROKE.mp4", "CCC03.mp4"]
    first = payload[0]
    # 3 s at 12 fps in 8-frame segments: 36 frames -> 5 segments, merged by max.
    assert len(first["segments"]) == 5
    segment_scores = np.array([s["scores"] for s in first["segments"]])
    np.testing.assert_allclose(first["scores"], segment_scores.max(axis=0))
    assert first["ground_truth"] == [
        {"class": 1, "start_sec": 0.0, "end_sec": 1.0},
        {"class": 3, "start_sec": 1.5, "end_sec": 3.0},
    ]
    assert [t["name"] for t in first["top_k"]] == [
        CHARADES_CLASSES[int(np.argsort(-segment_scores.max(0), kind="stable")[k])] for k in range(3)
    ]
    assert payload[1]["error"]
    image = Image.open(tmp_path / "AAA01_timeline.png")
    assert image.size[0] == 1000 and np.asarray(image.convert("L")).std() > 5
    assert not (tmp_path / "BROKE_timeline.png").exists()


def test_predict_tool_with_no_readable_video_says_so_in_one_line_and_writes_nothing(tiny_run, tmp_path):
    root, _, checkpoint, overrides = tiny_run
    out = tmp_path / "out"
    result = _run(
        "tools/predict.py", "--cfg", "", "--checkpoint", checkpoint,
        "--video", root / "Charades_v1_480" / "BROKE.mp4", "--out", out, *overrides,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no video could be read") and "BROKE.mp4" in lines[0], lines
    # No progress bar over zero videos, no result file.
    assert "wrote" not in result.stdout and not out.exists()


def test_predict_tool_with_relative_paths_gives_each_files_reason_without_a_bar(tiny_run, tmp_path):
    """Relative paths, as a user types them: the unreadable files are found before any scoring
    (no progress bar) and each keeps its own reason (the decoders name files by absolute path)."""
    root, _, checkpoint, overrides = tiny_run
    whole = (root / "Charades_v1_480" / "AAA01.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 3])
    (tmp_path / "junk.mp4").write_text("not a video\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/predict.py"), "--cfg", "", "--checkpoint", str(checkpoint),
         "--video", "cut.mp4", "junk.mp4", "--out", "out", *map(str, overrides)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_repo_first_env(),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no video could be read"), result.stderr
    assert "cut.mp4: " in lines[0] and "junk.mp4: " in lines[0] and "could not be decoded" not in lines[0], lines[0]
    assert "eval" not in result.stdout + result.stderr and not (tmp_path / "out").exists()


def _repo_first_env():
    """The environment with this checkout first on the import path (a run from another folder
    would otherwise import the installed videotl)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def test_plot_training_tool(tmp_path):
    _write_stats(tmp_path / "stats.jsonl")
    result = _run("tools/plot_training.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "training_curves.png").size == (1500, 360)
