"""A compiled model traces one graph per mode whatever the batch size (MODEL.COMPILE)."""

import torch
from torch._dynamo.testing import CompileCounter

from videotl.config import load_config
from videotl.engine.evaluator import prepare_inputs
from videotl.engine.run import COMPILE_OPTIONS
from videotl.models import build_model

from ..models.conftest import TINY_X3D


def test_ragged_batches_reuse_the_graph_in_training_and_evaluation():
    model = build_model(load_config("", [*TINY_X3D, "RES5.TEMPORAL", "tokenlearner"]))
    counter = CompileCounter()
    torch._dynamo.reset()
    model.compile(backend=counter, **COMPILE_OPTIONS)
    cpu = torch.device("cpu")
    # An epoch of 4-clip batches with a last batch of 3, then an evaluation of 2-clip batches ending in 3.
    model.train()
    for size in (4, 4, 3):
        model(prepare_inputs(torch.randn(size, 3, 4, 64, 64), cpu, channels_last=False))
    assert counter.frame_count == 1
    model.eval()
    with torch.no_grad():
        for size in (2, 2, 3):
            model(prepare_inputs(torch.randn(size, 3, 4, 64, 64), cpu, channels_last=True))
    # Evaluation is a second graph (BatchNorm's mode and the layout differ), then no more.
    assert counter.frame_count == 2
