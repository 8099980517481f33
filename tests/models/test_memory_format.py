import copy

import pytest
import torch

from videotl.config import load_config
from videotl.models import build_model, create_model, to_channels_last_3d
from videotl.models.blocks import DepthwiseConv3d
from videotl.models.memory_format import to_contiguous

from .conftest import TINY_X3D


def _tiny_tokenlearner_model():
    torch.manual_seed(0)
    return build_model(load_config("configs/charades_12fps.yaml", TINY_X3D))


def test_module_to_refuses_the_tokenlearner_model_that_the_helper_converts():
    model = _tiny_tokenlearner_model()
    assert any(p.dim() == 4 for p in model.parameters()), "the model should hold a 4-D (Conv2D) weight"
    with pytest.raises(RuntimeError, match="rank 5"):
        copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    to_channels_last_3d(model)
    five_d = [p for p in model.parameters() if p.dim() == 5]
    assert five_d and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in five_d)
    assert not any(p.is_contiguous() for p in five_d if p.shape[1] > 1 and p[0, 0].numel() > 1)
    assert all(p.is_contiguous() for p in model.parameters() if p.dim() != 5)


@pytest.mark.parametrize("family", ["x3d", "vivit"])
def test_channels_last_model_computes_the_same_outputs_and_gradients(family):
    if family == "x3d":
        plain = _tiny_tokenlearner_model()
        clip = (2, 3, 4, 64, 64)
    else:
        torch.manual_seed(0)
        plain = create_model(
            "vivit", num_classes=5, num_frames=4, image_size=32, patch_size=8, dim=32, depth=2, num_heads=2, mlp_dim=64
        )
        clip = (2, 3, 4, 32, 32)
    fast = to_channels_last_3d(copy.deepcopy(plain))
    inputs = torch.randn(clip, generator=torch.Generator().manual_seed(1))
    outputs = []
    for model, x in ((plain, inputs), (fast, inputs.contiguous(memory_format=torch.channels_last_3d))):
        model.train()
        torch.manual_seed(2)  # the same dropout masks
        outputs.append(model(x))
        outputs[-1].square().sum().backward()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    for (name, a), (_, b) in zip(plain.named_parameters(), fast.named_parameters()):
        # Float32 sums in another order: equal up to rounding at the scale of each gradient.
        assert (b.grad - a.grad).abs().max() <= 1e-4 * a.grad.abs().max() + 1e-7, name


def test_to_contiguous_undoes_channels_last():
    model = to_channels_last_3d(_tiny_tokenlearner_model())
    assert not all(p.is_contiguous() for p in model.parameters())
    to_contiguous(model)
    assert all(p.is_contiguous() for p in model.parameters())


@pytest.mark.parametrize("kernel", [(5, 1, 1), (3, 3, 3)])
@pytest.mark.parametrize("frames", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("autocast", [True, False])
def test_depthwise_conv_weight_gradient_is_right_in_bfloat16_channels_last(kernel, frames, autocast):
    # PyTorch's oneDNN kernel gets this gradient wrong for 1 < frames < temporal kernel on CPUs
    # with bfloat16 instructions; the layer must still match a float64 computation.
    gen = torch.Generator().manual_seed(frames)
    conv = DepthwiseConv3d(8, kernel)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
    x = torch.randn(2, 8, frames, 4, 4, generator=gen)
    grad_out = torch.randn(2, 8, frames, 4, 4, generator=gen)
    reference = torch.ops.aten.convolution_backward(
        grad_out.double(), x.double(), conv.weight.double(), None, conv.stride, conv.padding, conv.dilation,
        False, (0, 0, 0), 8, (False, True, False),
    )[1]  # fmt: skip
    to_channels_last_3d(conv)
    fast = x.bfloat16().contiguous(memory_format=torch.channels_last_3d)
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(fast.float().contiguous(memory_format=torch.channels_last_3d))
    else:
        conv.bfloat16()
        out = conv(fast)
    out.backward(grad_out.to(out.dtype).contiguous(memory_format=torch.channels_last_3d))
    error = (conv.weight.grad.double() - reference).abs().max() / reference.abs().max()
    assert error < 2e-2  # bfloat16 rounding of inputs and products
