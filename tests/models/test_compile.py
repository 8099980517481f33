"""The networks trace under torch.compile without graph breaks (MODEL.COMPILE)."""

import pytest
import torch

from videotl.config import load_config
from videotl.models import build_model


@pytest.mark.parametrize(
    "config",
    ["configs/charades_12fps.yaml", "configs/ablations/joint_mhsa.yaml"],
    ids=["charades_tokenlearner", "joint_mhsa"],
)
def test_network_traces_as_one_graph(config, tiny_x3d_overrides):
    # The TokenLearner model covers the X(2+1)D backbone, the res5 TokenLearner module and the
    # Vector Transformer operator; joint MHSA the attention path. Train mode
    # (BatchNorm updating its statistics, dropout) is what compiled training traces.
    model = build_model(load_config(config, tiny_x3d_overrides)).train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 4, 64, 64))
    assert explanation.graph_break_count == 0, [str(reason.reason) for reason in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_compiled_tokenlearner_module_equals_eager_forward_and_backward(tiny_x3d_overrides):
    cfg = load_config("configs/ablations/tokenlearner.yaml", tiny_x3d_overrides)
    module = build_model(cfg).stages[3][1].middle.temporal.op
    # TokenFuser's token map starts at zero (a converted block begins as the identity), which would
    # leave the Vector Transformer without gradients: give it weights.
    torch.nn.init.normal_(module.fuser.token_mix.weight, std=0.2)
    x = torch.randn(2, cfg.TOKENLEARNER.DIM, 4, 2, 2, requires_grad=True)
    names, params = zip(*module.named_parameters())
    expected = module(x)
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *params])
    assert expected_grads[1 + names.index("transformer.attention.f_q.weight")].abs().sum() > 0
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, dynamic=False, backend="aot_eager")
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *params])
    torch.testing.assert_close(out, expected)
    for name, got, want in zip(("input", *names), grads, expected_grads):
        torch.testing.assert_close(got, want, msg=lambda m, name=name: f"{name}: {m}")
