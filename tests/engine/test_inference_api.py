"""Self-describing checkpoints and the notebook API: load_model from the file alone, predict a whole
video through the evaluation path, and the README's five-line example on a tiny trained model."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import videotl
from videotl.engine.checkpoint import CheckpointError, read_checkpoint
from videotl.engine.inference import predict_videos

from ..data.conftest import CHARADES_CLASSES

# Tests that use the session fixture tiny_trained run on one xdist worker, which builds it once.
pytestmark = pytest.mark.xdist_group("tiny_trained")

README = Path(__file__).resolve().parents[2] / "README.md"


def test_checkpoint_describes_itself(tiny_trained):
    _, _, checkpoint = tiny_trained
    state = read_checkpoint(checkpoint)
    assert state["class_names"] == list(CHARADES_CLASSES)
    assert state["videotl_version"] == videotl.__version__ and state["model_name"] == "x2plus1d"
    model = videotl.load_model(checkpoint)
    assert model.class_names == list(CHARADES_CLASSES) and model.num_classes == len(CHARADES_CLASSES)
    assert model.videotl_config.DATA.NUM_FRAMES == 8 and not model.training
    saved = state["model"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_predict_equals_the_evaluation_path(tiny_trained):
    cfg, root, checkpoint = tiny_trained
    video = root / "Charades_v1_480" / "AAA01.mp4"
    model = videotl.load_model(checkpoint, device="cpu")
    prediction = videotl.predict(model, video, top_k=3)
    reference = predict_videos(model, [str(video)], cfg=cfg, class_names=model.class_names, device=torch.device("cpu"))[
        0
    ]
    np.testing.assert_array_equal(prediction.scores, reference.scores)
    # Merged by max over the segments, as evaluation does.
    np.testing.assert_allclose(prediction.scores, prediction.segment_scores.max(axis=0))
    order = np.argsort(-prediction.scores, kind="stable")[:3]
    assert prediction.top == [(CHARADES_CLASSES[c], float(prediction.scores[c])) for c in order]
    # A checkpoint path works too, and a list of videos gives a list; a broken file is named, not raised.
    many = videotl.predict(checkpoint, [video, root / "Charades_v1_480" / "BROKE.mp4"], device="cpu")
    assert len(many) == 2 and not many[0].error and many[1].error and many[1].top == []


def test_old_checkpoints_load_where_a_config_is_given(tiny_trained, tmp_path):
    cfg, _, checkpoint = tiny_trained
    state = read_checkpoint(checkpoint)
    for key in ("config", "class_names", "videotl_version", "model_name"):
        state.pop(key)
    old = tmp_path / "old.pyth"
    torch.save(state, old)
    with pytest.raises(CheckpointError, match="old.pyth holds no config"):
        videotl.load_model(old)
    model = videotl.load_model(old, cfg=cfg)
    # Without stored names the configured dataset's annotations give them.
    assert model.class_names == list(CHARADES_CLASSES)
    empty = tmp_path / "empty.pyth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pyth.*empty"):
        videotl.load_model(empty)


def test_readme_notebook_example_runs(tiny_trained, capsys):
    _, root, checkpoint = tiny_trained
    text = README.read_text()
    block = re.search(r"## In a notebook.*?```python\n(.*?)```", text, re.DOTALL).group(1)
    assert len(block.strip().splitlines()) <= 6
    code = re.sub(r'load_model\("[^"]+"\)', f'load_model("{checkpoint}")', block)
    code = re.sub(r'predict\(model, "[^"]+"', f'predict(model, "{root / "Charades_v1_480" / "AAA01.mp4"}"', code)
    assert code != block
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 3 and all(line.split(maxsplit=1)[1] in CHARADES_CLASSES for line in printed)
