"""Every config builds and trains a step at tiny size; full-size structure and parity with X3D-M."""

from pathlib import Path

import pytest
import torch
from torch import nn

from videotl.config import load_config
from videotl.models import build_model
from videotl.models.blocks import TokenLearnerModule

from .conftest import TINY_X3D

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
X3D_FAMILY = ("x2plus1d", "x3d")


def _x3d_family_configs():
    """Every config of the X3D family (the ViT / ViViT ones run at tiny size in test_vit.py)."""
    names = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))
    return [n for n in names if load_config(str(CONFIG_DIR / n)).MODEL.ARCH in X3D_FAMILY]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_config_belongs_to_a_tested_family():
    names = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))
    archs = {load_config(str(CONFIG_DIR / n)).MODEL.ARCH for n in names}
    assert archs <= set(X3D_FAMILY) | {"vit", "vivit"}
    assert len(_x3d_family_configs()) >= 20


@pytest.mark.parametrize("name", _x3d_family_configs())
def test_every_config_builds_and_runs_forward_backward(name):
    cfg = load_config(str(CONFIG_DIR / name), TINY_X3D)
    model = build_model(cfg).train()
    clip = torch.randn(2, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)
    logits = model(clip)
    assert logits.shape == (2, cfg.MODEL.NUM_CLASSES)
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # The TokenFuser's token map starts at zero (identity block), so the tensors feeding it still
    # receive gradients; nothing may be disconnected from the loss.
    assert not missing, f"parameters without gradient: {missing}"
    model.eval()
    with torch.no_grad():
        test_clip = torch.randn(1, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
        assert torch.isfinite(model(test_clip)).all()


def test_x2plus1d_m_full_size_layout():
    cfg = load_config(str(CONFIG_DIR / "baselines/x2plus1d_m.yaml"), ["MODEL.NUM_CLASSES", "887"])
    model = build_model(cfg)
    assert [len(stage) for stage in model.stages] == [3, 5, 11, 7]
    convs = [m for m in model.stages.modules() if isinstance(m, nn.Conv3d)]
    spatial = [m for m in convs if m.kernel_size == (1, 3, 3)]
    temporal = [m for m in convs if m.kernel_size == (3, 1, 1)]
    assert len(spatial) == len(temporal) == 26
    assert all(m.groups == 1 and m.in_channels == m.out_channels for m in spatial + temporal)
    assert [m.in_channels for m in spatial if m.stride == (1, 2, 2)] == [54, 108, 216, 432]
    assert not any(isinstance(m, (nn.SiLU, nn.Sigmoid)) for m in model.modules())
    # 27.1M parameters at 887 classes (the reference notes' count of this layout).
    assert _count(model) == 27_116_715
    head = model.head
    assert (head.conv5.conv.in_channels, head.conv5.conv.out_channels) == (192, 432)
    assert head.lin5.weight.shape == (2048, 432) and head.proj.weight.shape == (887, 2048)


def test_charades_and_avid_res5_conversion():
    charades = build_model(load_config(str(CONFIG_DIR / "charades_12fps.yaml")))
    avid = build_model(load_config(str(CONFIG_DIR / "avid.yaml")))
    for model, keeps_conv2d in ((charades, True), (avid, False)):
        res5 = model.stages[3]
        converted = [
            i for i, block in enumerate(res5) if any(isinstance(m, TokenLearnerModule) for m in block.modules())
        ]
        assert converted == [4, 5, 6]
        middle = res5[6].middle
        assert ("spatial" in middle._modules) == keeps_conv2d
        assert not any(isinstance(m, nn.Conv3d) and m.kernel_size == (3, 1, 1) for m in res5[6].modules())
    # Paper Table 11: TokenLearner 0.81M, Conv2D + TokenLearner 2.49M (ours within 3%).
    tokenlearner = _count(charades.stages[3][6].middle.temporal.op)
    conv2d_tokenlearner = _count(charades.stages[3][6].middle)
    assert tokenlearner == pytest.approx(0.81e6, rel=0.03)
    assert conv2d_tokenlearner == pytest.approx(2.49e6, rel=0.03)
    # Without the Conv2D, a converted first res5 block would have to stride in conv_a; ours are
    # blocks 4-6, so the strided block 0 stays a plain X(2+1)D block in both.
    assert avid.stages[3][0].middle.spatial.conv.stride == (1, 2, 2)


def test_full_size_forward_on_meta_device():
    cfg = load_config(str(CONFIG_DIR / "charades_12fps.yaml"))
    with torch.device("meta"):
        model = build_model(cfg)
        assert model(torch.empty(2, 3, 64, 256, 256)).shape == (2, 157)
        assert model(torch.empty(2, 3, 64, 224, 224)).shape == (2, 157)


def test_stride_moves_to_conv_a_when_a_converted_block_has_no_spatial_op(tiny_x3d_overrides):
    cfg = load_config(
        "",
        tiny_x3d_overrides + ["RES5.SPATIAL", "none", "RES5.TEMPORAL", "tokenlearner", "RES5.CONVERTED_BLOCKS", "[0]"],
    )
    block = build_model(cfg).stages[3][0]
    assert block.conv_a.conv.stride == (1, 2, 2)
    assert "spatial" not in block.middle._modules
    out = block(torch.randn(1, 8, 4, 4, 4))
    assert out.shape == (1, 16, 4, 2, 2)


# -- X3D-M reference against pytorchvideo ---------------------------------------------------


def test_x3d_m_parameter_count_matches_pytorchvideo():
    from pytorchvideo.models.x3d import create_x3d

    ours = build_model(load_config(str(CONFIG_DIR / "baselines/x3d_m.yaml"), ["MODEL.NUM_CLASSES", "400"]))
    theirs = create_x3d(model_num_class=400)
    assert _count(ours) == _count(theirs) == 3_794_274


def test_x3d_output_matches_pytorchvideo_with_copied_weights():
    from pytorchvideo.models.x3d import create_x3d

    frames, crop, classes = 4, 64, 11
    torch.manual_seed(0)
    theirs = create_x3d(
        input_clip_length=frames, input_crop_size=crop, model_num_class=classes, head_activation=None
    ).eval()
    ours = build_model(
        load_config(
            str(CONFIG_DIR / "baselines/x3d_m.yaml"), ["MODEL.NUM_CLASSES", str(classes), "DATA.NUM_FRAMES", "4"]
        )
    ).eval()
    their_state, our_state = theirs.state_dict(), ours.state_dict()
    assert len(their_state) == len(our_state)
    # Both walk stem -> blocks (shortcut, conv_a, middle, conv_c) -> head in the same order.
    copied = {}
    for (their_name, tensor), (our_name, target) in zip(their_state.items(), our_state.items()):
        assert tensor.numel() == target.numel(), (their_name, our_name)
        # Re-randomise BN statistics so the check is not passed by identity-initialised norms.
        if their_name.endswith("running_var"):
            tensor = tensor.uniform_(0.5, 1.5)
        elif their_name.endswith("running_mean"):
            tensor = tensor.normal_(0, 0.1)
        copied[our_name] = tensor.reshape(target.shape).clone()
    ours.load_state_dict(copied)
    theirs.load_state_dict(their_state)
    clip = torch.randn(2, 3, frames, crop, crop)
    with torch.no_grad():
        expected = theirs(clip)
        got = ours(clip)
    torch.testing.assert_close(got, expected.reshape(got.shape), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("strides, side", [("[2, 2, 2, 2]", 2), ("[2, 2, 2, 1]", 4), ("[2, 2, 1, 1]", 8)])
def test_stage_strides_set_the_token_grid(strides, side):
    from videotl.visualization.token_maps import capture_token_maps

    # A 64 px crop through the stem's stride 2 and the stages' strides: 64 / (2 * prod(strides)).
    cfg = load_config("", [*TINY_X3D, "RES5.TEMPORAL", "tokenlearner", "X3D.SPATIAL_STRIDES", strides])
    model = build_model(cfg).eval()
    with torch.no_grad(), capture_token_maps(model) as captured:
        logits = model(torch.randn(1, 3, 4, 64, 64))
    assert logits.shape == (1, 5)
    assert captured and all(tuple(entry.maps.shape[-2:]) == (side, side) for entry in captured)


def test_stage_strides_are_checked():
    from videotl.config import ConfigError

    with pytest.raises(ConfigError, match=r"X3D.SPATIAL_STRIDES = \[2, 3, 2, 2\]: each must be one of 1, 2"):
        load_config("", [*TINY_X3D, "X3D.SPATIAL_STRIDES", "[2, 3, 2, 2]"])
    with pytest.raises(
        ConfigError, match="X3D.SPATIAL_STRIDES has 3 entries but X3D.STAGE_DIMS has 4: give one per stage width"
    ):
        load_config("", [*TINY_X3D, "X3D.SPATIAL_STRIDES", "[2, 2, 2]"])


def _alpha_spreads(tokenizer: str, init: str):
    """fan_in x variance of each weight of the tokenizers' alpha, with (fan_in, fan_out)."""
    overrides = [*TINY_X3D, "RES5.TEMPORAL", "tokenlearner", "TOKENLEARNER.TOKENIZER", tokenizer]
    model = build_model(load_config("", [*overrides, "TOKENLEARNER.ALPHA_INIT", init]))
    tokenizers = [m for m in model.modules() if type(m).__name__ in ("TokenLearner", "TokenLearnerV11")]
    weights = [p.detach() for t in tokenizers for n, p in t.named_parameters() if n.endswith("weight") and p.dim() >= 2]
    assert len(weights) == (2 if tokenizer == "tokenlearner" else 4)  # two converted blocks
    return [(w[0].numel() * float(w.var()), w[0].numel(), w.shape[0]) for w in weights]


def test_alpha_init_flax_draws_the_official_code_s_initial_weights():
    torch.manual_seed(0)
    # PyTorch's default, uniform(+-1/sqrt(fan_in)): fan_in x variance = 1/3 for convs and linears.
    for tokenizer in ("tokenlearner", "tokenlearner_v11"):
        assert [s for s, _, _ in _alpha_spreads(tokenizer, "torch")] == pytest.approx(
            [1 / 3] * 2 * (1 + (tokenizer != "tokenlearner")), rel=0.2
        )
    # Flax: the alpha convs lecun-normal (variance 1/fan_in); v1.1's MLP as scenic's MlpBlock,
    # xavier-uniform (variance 2/(fan_in + fan_out)).
    assert [s for s, _, _ in _alpha_spreads("tokenlearner", "flax")] == pytest.approx([1.0, 1.0], rel=0.2)
    for spread, fan_in, fan_out in _alpha_spreads("tokenlearner_v11", "flax"):
        assert spread == pytest.approx(2 * fan_in / (fan_in + fan_out), rel=0.2)
