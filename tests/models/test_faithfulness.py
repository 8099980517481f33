"""Faithfulness switches and choices (docs/faithfulness.md): flax's initialisation by its formulas,
attention and MLP-hidden dropout where scenic has them, the fuser's mixing weights and token-map
bias against a hand computation, the paper-form defaults of the video model, the official
ImageNet config, and every named preset against the config it names."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videotl.config import ConfigError, load_config
from videotl.engine.solver import SigmoidCrossEntropy, build_loss
from videotl.models import build_model, create_model, list_models, model_entry
from videotl.models.attention import Mlp, MultiHeadSelfAttention
from videotl.models.tokenfuser import TokenFuser
from videotl.models.tokenlearner import TokenLearner, TokenLearnerV11
from videotl.models.vit import EncoderBlock, VisionTransformer, create_vit

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# A ViT config's own depth and placements at a tiny width.
TINY_VIT = ["VIT.HIDDEN_SIZE", "32", "VIT.NUM_HEADS", "4", "VIT.MLP_DIM", "64", "VIT.PATCH_SIZE", "8",
            "DATA.TRAIN_JITTER_SCALES", "[32, 32]", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32"]  # fmt: skip


# --- initialisation: flax's formulas -------------------------------------------------------


def _lecun_std(fan_in):
    return math.sqrt(1.0 / fan_in)


def _xavier_std(fan_in, fan_out):
    return math.sqrt(2.0 / (fan_in + fan_out))


def _check_std(values, std, kind, name):
    """Sample std within 3 % of ``std`` (at least 9,000 values: over 8 standard errors), mean near 0,
    and the distribution's support: uniform on +-sqrt(3) std, or a normal truncated at 2 standard
    deviations of the untruncated normal (2.27 std of the kept values)."""
    values = values.detach().double().flatten()
    n = values.numel()
    assert n >= 9000, name
    assert abs(values.std().item() / std - 1) < 0.03, f"{name}: std {values.std().item():.5f}, formula {std:.5f}"
    assert abs(values.mean().item()) < 4 * std / math.sqrt(n), name
    peak = values.abs().max().item() / std
    if kind == "uniform":
        assert 0.99 * math.sqrt(3) < peak <= math.sqrt(3) + 1e-6, f"{name}: max |w| = {peak:.3f} std"
    else:  # truncated normal
        assert 2.0 < peak <= 2 / 0.87962566103423978 + 1e-6, f"{name}: max |w| = {peak:.3f} std"


@pytest.mark.parametrize("tokenizer", ["tokenlearner", "tokenlearner_v11"])
def test_vit_init_follows_flax_formulas(tokenizer):
    torch.manual_seed(0)
    dim, mlp, tokens, patch = 256, 1024, 32, 8
    model = create_vit(
        image_size=64,
        patch_size=patch,
        dim=dim,
        depth=1,
        num_heads=8,
        mlp_dim=mlp,
        num_classes=10,
        classifier="gap",
        representation_size=128,
        head_bias_init=-10.0,
        tokenlearner_layer=0,
        tokenlearner={
            "tokenizer": tokenizer,
            "num_tokens": tokens,
            "v11_hidden_dim": 512,
            "fuser": "tokenfuser",
            "fuser_hidden_dim": 512,
        },
    )
    p = dict(model.named_parameters())
    # nn.Conv / nn.Dense: lecun normal kernels, zero biases.
    _check_std(p["patch_embed.proj.weight"], _lecun_std(3 * patch * patch), "normal", "patch embedding")
    assert not p["patch_embed.proj.bias"].any()
    _check_std(p["pre_logits.0.weight"], _lecun_std(dim), "normal", "pre-logits")
    assert not p["pre_logits.0.bias"].any()
    # MultiHeadDotProductAttention: xavier uniform over each (dim, heads * head_dim) projection.
    for part, name in zip(p["blocks.0.attn.qkv.weight"].split(dim), ("query", "key", "value")):
        _check_std(part, _xavier_std(dim, dim), "uniform", name)
    _check_std(p["blocks.0.attn.proj.weight"], _xavier_std(dim, dim), "uniform", "attention out")
    assert not p["blocks.0.attn.qkv.bias"].any() and not p["blocks.0.attn.proj.bias"].any()
    # MlpBlock: xavier uniform kernels, N(0, 1e-6) biases.
    _check_std(p["blocks.0.mlp.fc1.weight"], _xavier_std(dim, mlp), "uniform", "mlp fc1")
    _check_std(p["blocks.0.mlp.fc2.weight"], _xavier_std(mlp, dim), "uniform", "mlp fc2")
    assert 0 < p["blocks.0.mlp.fc1.bias"].std().item() < 2e-6
    # AddPositionEmbs: normal(0.02), untruncated.
    pos = p["pos_embed"].detach().flatten()
    assert abs(pos.std().item() / 0.02 - 1) < 0.03 and pos.abs().max().item() > 3 * 0.02
    # The TokenLearner: four lecun-normal 3x3 convs (v1), or a MlpBlock (v1.1).
    tokenlearner = model.tokenlearners[0]
    if tokenizer == "tokenlearner":
        convs = [m for m in tokenlearner.alpha if isinstance(m, nn.Conv2d)]
        for index, conv in enumerate(convs):
            _check_std(conv.weight, _lecun_std((dim if index == 0 else tokens) * 9), "normal", f"alpha conv {index}")
    else:
        _check_std(tokenlearner.mlp.fc1.weight, _xavier_std(dim, 512), "uniform", "v1.1 fc1")
        _check_std(tokenlearner.mlp.fc2.weight, _xavier_std(512, tokens), "uniform", "v1.1 fc2")
        assert 0 < tokenlearner.mlp.fc2.bias.std().item() < 2e-6
    # The TokenFuser: zero token map (weight and bias), xavier MlpBlock for the mixing weights.
    fuser = model.fusers[0]
    assert not fuser.token_mix.weight.any() and not fuser.token_mix.bias.any()
    _check_std(fuser.beta.fc1.weight, _xavier_std(dim, 512), "uniform", "fuser fc1")
    _check_std(fuser.beta.fc2.weight, _xavier_std(512, tokens), "uniform", "fuser fc2")
    # LayerNorms start at (1, 0); the classifier is zero with the official ImageNet bias.
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)) and not module.bias.any()
    assert not p["head.weight"].any() and torch.equal(p["head.bias"], torch.full((10,), -10.0))


def test_a_fused_xavier_init_would_be_caught():
    # The statistic that separates per-projection init from one xavier over (3C, C): 0.71x.
    weight = torch.empty(3 * 256, 256)
    nn.init.xavier_uniform_(weight)
    with pytest.raises(AssertionError):
        _check_std(weight[:256], _xavier_std(256, 256), "uniform", "fused")


# --- dropout positions -----------------------------------------------------------------------


def test_attention_dropout_drops_attention_weights():
    # All tokens equal: every attention weight is 1/N and the output of head h is
    # (sum of the kept weights / (1 - p)) * v_h, a multiple of v_h by k / (N (1 - p)).
    torch.manual_seed(0)
    dim, heads, n, p = 8, 2, 6, 0.5
    attention = MultiHeadSelfAttention(dim=dim, num_heads=heads, attention_dropout=p).double()
    with torch.no_grad():
        attention.proj.weight.copy_(torch.eye(dim))
        attention.proj.bias.zero_()
    x = torch.randn(1, 1, dim, dtype=torch.float64).expand(4, n, dim)
    value = attention.qkv(x)[0, 0, 2 * dim :].reshape(heads, -1)
    attention.eval()
    torch.testing.assert_close(attention(x), value.reshape(1, 1, dim).expand(4, n, dim))
    attention.train()
    out = attention(x).reshape(4, n, heads, -1)
    ratio = out / value
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))  # one factor per (token, head)
    steps = ratio[..., 0] * n * (1 - p)
    torch.testing.assert_close(steps, steps.round())
    assert steps.min() < n and len(steps.round().unique()) > 1


def _vit(**kwargs):
    return create_vit(image_size=32, patch_size=8, dim=32, depth=2, num_heads=4, mlp_dim=64, num_classes=5, **kwargs)


def test_attention_dropout_changes_training_outputs_only():
    torch.manual_seed(0)
    plain = _vit()
    dropping = _vit(attention_dropout_rate=0.3)
    dropping.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    plain.eval(), dropping.eval()
    evaluated = plain.forward_features(x)  # the features: the zero-initialised head hides everything
    torch.testing.assert_close(dropping.forward_features(x), evaluated, rtol=0, atol=0)
    plain.train(), dropping.train()
    torch.testing.assert_close(plain.forward_features(x), evaluated, rtol=0, atol=0)  # nothing else drops
    assert not torch.allclose(dropping.forward_features(x), evaluated)
    cfg = load_config(str(CONFIG_DIR / "vit/vit_b16_tl8at6.yaml"), [*TINY_VIT, "VIT.ATTENTION_DROPOUT", "0.25"])
    model = build_model(cfg)
    assert {block.attn.attention_dropout for block in model.blocks} == {0.25}


@pytest.mark.parametrize("hidden_dropout", [True, False])
def test_mlp_hidden_dropout_sits_after_the_activation(hidden_dropout):
    torch.manual_seed(0)
    block = EncoderBlock(dim=16, num_heads=2, mlp_dim=256, dropout_rate=0.5, mlp_hidden_dropout=hidden_dropout)
    seen = {}

    def record_mlp(module, args, out):
        seen["in"], seen["out"] = args[0], out

    block.mlp.fc2.register_forward_pre_hook(lambda module, args: seen.__setitem__("hidden", args[0]))
    block.mlp.register_forward_hook(record_mlp)
    block.train()
    block(torch.randn(3, 10, 16))
    activated = block.mlp.act(block.mlp.fc1(seen["in"]))
    if hidden_dropout:
        kept = seen["hidden"] != 0
        assert 0.4 < 1 - kept.float().mean().item() < 0.6
        torch.testing.assert_close(seen["hidden"][kept], 2 * activated[kept])
    else:
        torch.testing.assert_close(seen["hidden"], activated, rtol=0, atol=0)
    # The output dropout stays in both forms.
    assert 0.4 < (seen["out"] == 0).float().mean().item() < 0.6


def test_mlp_hidden_dropout_key_reaches_every_layer():
    for value, expected in (("True", 0.1), ("False", 0.0)):
        cfg = load_config(
            str(CONFIG_DIR / "vit/vit_b16.yaml"),
            [*TINY_VIT, "VIT.DROPOUT_RATE", "0.1", "VIT.MLP_HIDDEN_DROPOUT", value],
        )
        model = build_model(cfg)
        assert {(b.mlp.drop1.p, b.mlp.drop2.p) for b in model.blocks} == {(expected, 0.1)}


# --- TokenFuser: mixing weights and token-map bias -------------------------------------------


def _fuser_reference(fuser, tokens, positions):
    """Eq. 2 by hand. tokens (B, T*S, C), positions (B, T, N, C) -> (B, T, N, C) with the residual."""
    b, t, n, c = positions.shape
    s = fuser.num_tokens
    y = F.layer_norm(tokens, (c,), fuser.token_norm.weight, fuser.token_norm.bias, 1e-6)
    weight = fuser.token_mix.weight
    bias = fuser.token_mix.bias if fuser.token_mix.bias is not None else torch.zeros(weight.shape[0]).to(y)
    if fuser.mix == "all":
        y = torch.einsum("uv,bvc->buc", weight, y) + bias[:, None]
    else:
        y = torch.einsum("uv,btvc->btuc", weight, y.reshape(b, t, s, c)) + bias[:, None]
    y = F.layer_norm(y.reshape(b, t, s, c), (c,), fuser.mixed_norm.weight, fuser.mixed_norm.bias, 1e-6)
    if fuser.weights == "linear":
        logits = positions @ fuser.beta.weight.T + fuser.beta.bias
    else:
        x = F.layer_norm(positions, (c,), fuser.input_norm.weight, fuser.input_norm.bias, 1e-6)
        hidden = F.gelu(x @ fuser.beta.fc1.weight.T + fuser.beta.fc1.bias, approximate="tanh")
        logits = hidden @ fuser.beta.fc2.weight.T + fuser.beta.fc2.bias
    return positions + torch.sigmoid(logits) @ y


@pytest.mark.parametrize("form", ["volume", "sequence"])
@pytest.mark.parametrize("mix", ["all", "frame"])
@pytest.mark.parametrize("mix_bias", [False, True])
@pytest.mark.parametrize("weights", ["linear", "mlp"])
def test_tokenfuser_forms_match_a_hand_computation(weights, mix_bias, mix, form):
    torch.manual_seed(0)
    b, t, s, c, h, w = 2, 3, 4, 6, 3, 5
    fuser = TokenFuser(dim=c, num_tokens=s, num_frames=t, mix=mix, weights=weights, mix_bias=mix_bias, hidden_dim=7)
    fuser = fuser.double()
    for parameter in fuser.parameters():
        nn.init.normal_(parameter)  # the token map starts at zero; make every parameter count
    assert isinstance(fuser.beta, Mlp) == (weights == "mlp") and (fuser.token_mix.bias is not None) == mix_bias
    tokens = torch.randn(b, t * s, c, dtype=torch.float64)
    positions = torch.randn(b, t, h * w, c, dtype=torch.float64)
    expected = _fuser_reference(fuser, tokens, positions)
    if form == "volume":
        volume = positions.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        out = fuser(tokens, volume).permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)
    else:
        out = fuser(tokens, positions.reshape(b, t * h * w, c), num_frames=t).reshape(b, t, h * w, c)
    torch.testing.assert_close(out, expected)


def test_fuser_keys_reach_the_video_model(tiny_x3d_overrides):
    changes = [
        "TOKENLEARNER.FUSER_WEIGHTS",
        "mlp",
        "TOKENLEARNER.FUSER_MIX_BIAS",
        "True",
        "TOKENLEARNER.FUSER_MIX",
        "frame",
    ]
    cfg = load_config(str(CONFIG_DIR / "charades_12fps.yaml"), [*tiny_x3d_overrides, *changes])
    fusers = [m for m in build_model(cfg).modules() if isinstance(m, TokenFuser)]
    assert len(fusers) == 2
    for fuser in fusers:
        assert isinstance(fuser.beta, Mlp) and fuser.beta.act.approximate == "tanh"
        assert fuser.token_mix.bias is not None and fuser.mix == "frame"


def test_the_video_models_keep_the_papers_form():
    # Section 6.1 and eq. 1-2: one 1x1 conv alpha, mean pooling, no LayerNorm; TokenFuser mixing all
    # S*T tokens with no bias, beta a linear map + sigmoid.
    for name in ("x2plus1d_m_tokenlearner_charades", "x2plus1d_m_tokenlearner_avid"):
        with torch.device("meta"):
            model = create_model(name)
        tokenlearners = [m for m in model.modules() if isinstance(m, TokenLearner)]
        fusers = [m for m in model.modules() if isinstance(m, TokenFuser)]
        assert len(tokenlearners) == len(fusers) == 3
        for module in tokenlearners:
            (conv,) = module.alpha
            assert conv.kernel_size == (1, 1) and module.pooling == "mean" and isinstance(module.norm, nn.Identity)
        for fuser in fusers:
            assert fuser.mix == "all" and fuser.token_mix.weight.shape == (512, 512)
            assert fuser.token_mix.bias is None and isinstance(fuser.beta, nn.Linear)


def test_v11_on_the_video_path_uses_the_tanh_gelu(tiny_x3d_overrides):
    cfg = load_config(str(CONFIG_DIR / "ablations/tokenlearner_v11.yaml"), tiny_x3d_overrides)
    modules = [m for m in build_model(cfg).modules() if isinstance(m, TokenLearnerV11)]
    assert modules and all(m.mlp.act.approximate == "tanh" for m in modules)


# --- the official ImageNet setting -------------------------------------------------------------


def test_scenic_imagenet_config_is_the_official_setting():
    cfg = load_config("vit/scenic_im1k_b16_tl16at9_v11.yaml")
    vit, tl, solver = cfg.VIT, cfg.TOKENLEARNER, cfg.SOLVER
    assert (vit.PATCH_SIZE, vit.HIDDEN_SIZE, vit.DEPTH, vit.NUM_HEADS, vit.MLP_DIM) == (16, 768, 12, 12, 3072)
    assert cfg.DATA.TRAIN_CROP_SIZE == 224 and vit.TOKENLEARNER_LAYER == 9 and vit.CLASSIFIER == "gap"
    assert (tl.TOKENIZER, tl.NUM_TOKENS, tl.FUSER) == ("tokenlearner_v11", 16, "none")
    assert vit.DROPOUT_RATE == vit.ATTENTION_DROPOUT == 0.0 and vit.HEAD_BIAS_INIT == -10.0
    assert (cfg.MODEL.LOSS_FUNC, cfg.MODEL.HEAD_ACT) == ("bce_one_hot", "sigmoid")
    assert (solver.OPTIMIZING_METHOD, solver.WEIGHT_DECAY, solver.CLIP_GRAD_L2NORM) == ("adamw", 0.3, 1.0)
    devices = 4096 // cfg.TRAIN.BATCH_SIZE_PER_DEVICE
    assert math.isclose(solver.BASE_LR_PER_DEVICE * devices, 5e-3) and math.isclose(
        solver.COSINE_END_LR * devices, 1e-5
    )
    assert round(solver.WARMUP_EPOCHS * (1281167 // 4096)) == 10000 and solver.MAX_EPOCH == 90
    with torch.device("meta"):
        built = build_model(cfg)
        named = create_model("vit_b16_tl16at9_v11_scenic")
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in named.state_dict().items()}
    assert built.tokenlearner_spec == named.tokenlearner_spec and built.head_bias_init == named.head_bias_init


def test_one_hot_bce_is_bce_on_one_hot_targets():
    logits = torch.randn(5, 7)
    labels = torch.tensor([0, 3, 6, 2, 2])
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 7).float())
    torch.testing.assert_close(SigmoidCrossEntropy()(logits, labels), expected)
    torch.testing.assert_close(SigmoidCrossEntropy()(logits, labels.float()), expected)  # as the trainer passes them
    multi_hot = (torch.rand(5, 7) > 0.5).float()
    torch.testing.assert_close(
        SigmoidCrossEntropy()(logits, multi_hot), F.binary_cross_entropy_with_logits(logits, multi_hot)
    )
    cfg = load_config("vit/scenic_im1k_b16_tl16at9_v11.yaml")
    assert isinstance(build_loss(cfg), SigmoidCrossEntropy)
    with pytest.raises(ConfigError, match="DATA.MULTI_LABEL = True does not fit MODEL.LOSS_FUNC = 'bce_one_hot'"):
        load_config("vit/scenic_im1k_b16_tl16at9_v11.yaml", ["DATA.MULTI_LABEL", "True"])
    with pytest.raises(ConfigError, match="MODEL.HEAD_ACT = 'softmax' with MODEL.LOSS_FUNC = 'bce_one_hot'"):
        load_config("vit/scenic_im1k_b16_tl16at9_v11.yaml", ["MODEL.HEAD_ACT", "softmax"])


def test_scenic_imagenet_config_trains_on_an_image_folder(tmp_path):
    from PIL import Image

    from videotl.engine import train

    for split in ("train", "val"):
        for c, name in enumerate(("a", "b", "c")):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (40, 36), (80 * c, 20 * i, 100)).save(folder / f"{i}.png")
    cfg = load_config(
        "vit/scenic_im1k_b16_tl16at9_v11.yaml",
        ["VIT.HIDDEN_SIZE", "32", "VIT.NUM_HEADS", "4", "VIT.MLP_DIM", "64", "VIT.PATCH_SIZE", "8",
         "VIT.DEPTH", "3", "VIT.TOKENLEARNER_LAYER", "2", "TOKENLEARNER.NUM_TOKENS", "4", "MODEL.NUM_CLASSES", "3",
         "DATA.TRAIN_JITTER_SCALES", "[32, 32]", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
         "DATA.PATH_TO_DATA_DIR", str(tmp_path / "data"), "OUTPUT_DIR", str(tmp_path / "out"), "DEVICE", "cpu",
         "TRAIN.BATCH_SIZE_PER_DEVICE", "4", "TEST.BATCH_SIZE_PER_DEVICE", "4", "SOLVER.MAX_EPOCH", "1",
         "SOLVER.WARMUP_EPOCHS", "0.5", "DATA_LOADER.NUM_WORKERS", "0", "TENSORBOARD.ENABLE", "False",
         "LOG_PERIOD", "1"],
    )  # fmt: skip
    train(cfg)
    records = [json.loads(line) for line in (tmp_path / "out" / "stats.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["type"] == "train"]
    evaluation = [r for r in records if r["type"] == "eval"][-1]
    # The zero classifier with bias -10 gives every class the logit -10 before the first step: the
    # one-hot BCE is (log(1 + e^10) + 2 log(1 + e^-10)) / 3 for 3 classes.
    start = (math.log1p(math.exp(10)) + 2 * math.log1p(math.exp(-10))) / 3
    assert len(losses) == 3 and abs(losses[0] - start) < 1e-3 and all(math.isfinite(v) for v in losses)
    assert evaluation["num_videos"] == 12 and 0.0 <= evaluation["top1"] <= 1.0


# --- every named preset is the config it names -------------------------------------------------

PRESETS_WITH_CONFIG = [name for name in list_models() if model_entry(name).default_cfg.get("config")]


@pytest.mark.parametrize("name", PRESETS_WITH_CONFIG)
def test_named_preset_equals_the_config_it_names(name, monkeypatch):
    # Names and shapes only: the ViT family's flax init is slow on the meta device and irrelevant here.
    monkeypatch.setattr(VisionTransformer, "_init_weights", lambda self: None)
    entry = model_entry(name)
    cfg = load_config(entry.default_cfg["config"])
    assert cfg.MODEL.ARCH in list_models()
    with torch.device("meta"):
        from_config = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
        preset = {k: tuple(v.shape) for k, v in create_model(name).state_dict().items()}
    differ = sorted(k for k in set(from_config) | set(preset) if from_config.get(k) != preset.get(k))
    assert not differ, f"{name} vs {entry.default_cfg['config']}: {differ[:5]}"
    data = entry.default_cfg
    assert data["num_classes"] == cfg.MODEL.NUM_CLASSES
    assert (data["crop_size"], data["test_crop_size"]) == (cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
    assert data["num_frames"] == cfg.DATA.NUM_FRAMES
    assert tuple(data["mean"]) == tuple(cfg.DATA.MEAN) and tuple(data["std"]) == tuple(cfg.DATA.STD)


def test_most_presets_name_a_config():
    assert len(PRESETS_WITH_CONFIG) >= 50 and "vit_b16_tl16at9_v11_scenic" in PRESETS_WITH_CONFIG
