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


@pytest.mark.parametrize("implementation", ["pytorch", "cpu_kernels"])
def test_vector_attention_ops_pass_opcheck_on_strided_inputs(implementation):
    # Inductor plans buffers from the fake functions' strides: the real results must match them
    # whatever the inputs' layout (here q and k are transposed views).
    torch.manual_seed(0)
    q = torch.randn(2, 4, 6, dtype=torch.float64).transpose(1, 2).requires_grad_()
    k = torch.randn(2, 4, 5, dtype=torch.float64).transpose(1, 2).requires_grad_()
    v = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.videotl.vector_attention.default, (q, k, v, implementation, 4))
    out, lse = torch.ops.videotl.vector_attention(q, k, v, implementation, 4)
    grad = torch.randn(2, 4, 6, dtype=torch.float64).transpose(1, 2)
    backward_args = (q.detach(), k.detach(), v.detach(), out.detach(), lse.detach(), grad, implementation, 4)
    torch.library.opcheck(torch.ops.videotl.vector_attention_backward.default, backward_args)


def _forward_backward(model, clip, *, autocast: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(clip)
    params = [p for p in model.parameters() if p.requires_grad]
    return out.float(), [g.float() for g in torch.autograd.grad(out.float().square().sum(), [clip, *params])]


def _relative(got, want) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def test_inductor_compiles_the_tokenlearner_network_to_eager_results(tiny_x3d_overrides):
    # Training mode (BatchNorm on batch statistics), without dropout, whose masks would differ.
    cfg = load_config("configs/charades_12fps.yaml", [*tiny_x3d_overrides, "MODEL.DROPOUT_RATE", "0.0"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    for module in model.modules():
        if hasattr(module, "token_mix"):  # TokenFuser starts as the identity: give the VectT gradients
            torch.nn.init.normal_(module.token_mix.weight, std=0.2)
    clip = torch.randn(2, 3, 4, 64, 64, requires_grad=True)
    expected, expected_grads = _forward_backward(model, clip)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="inductor", dynamic=False)
    got, grads = _forward_backward(compiled, clip)
    # fp32: the same sums in another order.
    assert _relative(got, expected) < 1e-5
    assert max(_relative(g, e) for g, e in zip(grads, expected_grads)) < 1e-3


def test_inductor_bf16_tokenlearner_module_is_as_close_to_fp32_as_eager(tiny_x3d_overrides):
    cfg = load_config("configs/ablations/tokenlearner.yaml", tiny_x3d_overrides)
    torch.manual_seed(0)
    module = build_model(cfg).stages[3][1].middle.temporal.op
    torch.nn.init.normal_(module.fuser.token_mix.weight, std=0.2)
    x = torch.randn(2, cfg.TOKENLEARNER.DIM, 4, 2, 2, requires_grad=True)
    reference, reference_grads = _forward_backward(module, x)
    eager, eager_grads = _forward_backward(module, x, autocast=True)
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="inductor", dynamic=False, fullgraph=True)
    got, grads = _forward_backward(compiled, x, autocast=True)
    # bfloat16 rounds to 3 significant digits: compiled and eager may round in other places, but
    # the compiled result is no further from fp32 than twice eager's distance (and both are close).
    assert _relative(got, reference) <= 2 * _relative(eager, reference) + 1e-3 < 0.05
    for g, e, r in zip(grads, eager_grads, reference_grads):
        assert _relative(g, r) <= 2 * _relative(e, r) + 1e-3 < 0.1
