"""A compiled model traces one graph per mode whatever the batch size (MODEL.COMPILE)."""

import torch
from torch._dynamo.testing import CompileCounter

from videotl.config import load_config
from videotl.engine.evaluator import prepare_inputs, score_batches
from videotl.engine.run import COMPILE_OPTIONS
from videotl.models import build_model

from ..models.conftest import TINY_X3D


def test_ragged_batches_reuse_the_graph_in_training_and_evaluation():
    model = build_model(load_config("", [*TINY_X3D, "RES5.TEMPORAL", "tokenlearner"]))
    counter = CompileCounter()
    torch._dynamo.reset()
    model.compile(backend=counter, **COMPILE_OPTIONS)
    cpu = torch.device("cpu")
    # An epoch of 4-clip batches with a last batch of 3, then evaluations of 2-clip batches ending in 3
    # and in 1 (dynamo specialises a size of 1: the evaluator runs it as two copies).
    model.train()
    for size in (4, 4, 3):
        model(prepare_inputs(torch.randn(size, 3, 4, 64, 64), cpu, channels_last=False))
    assert counter.frame_count == 1
    loader = [{"inputs": torch.randn(size, 3, 4, 64, 64), "video_index": torch.zeros(size, dtype=torch.long),
               "view_index": torch.zeros(size, dtype=torch.long)} for size in (2, 2, 3, 1)]  # fmt: skip
    cfg = load_config("", [*TINY_X3D, "MODEL.HEAD_ACT", "sigmoid"])
    scores = [s for *_, s in score_batches(model, loader, cfg=cfg, device=cpu, channels_last=True, show_progress=False)]
    assert [len(s) for s in scores] == [2, 2, 3, 1]
    # Evaluation is a second graph (BatchNorm's mode and the layout differ), then no more.
    assert counter.frame_count == 2
    # The clip run as two copies scores as it does alone.
    model.eval()
    with torch.no_grad():
        alone = torch.sigmoid(model(prepare_inputs(loader[-1]["inputs"], cpu, channels_last=True)))
    torch.testing.assert_close(torch.as_tensor(scores[-1], dtype=torch.float32), alone, rtol=1e-5, atol=1e-6)
