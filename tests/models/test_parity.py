"""Parity with the official code: scenic's own outputs (tests/models/parity/README.md) reproduced in
float64 from its random weights, through the flax converter, for TokenLearner v1 (sum, mean), v1.1,
TokenFuser, four ViT models and four ViViT encoders; and the converter's refusals."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from videotl.config import load_config
from videotl.models import build_model
from videotl.models.attention import Mlp
from videotl.models.components import PartContext, TokenLearnerSpec, build_fuser, build_tokenizer
from videotl.models.convert_flax import FlaxConversionError, flax_to_state_dict, load_flax_weights, read_flax_params
from videotl.models.tokenfuser import TokenFuser
from videotl.models.tokenlearner import TokenLearner, TokenLearnerV11
from videotl.models.vit import VIT_TOKENLEARNER, VisionTransformer, create_vit, create_vivit

FIXTURES = Path(__file__).with_name("parity")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TOLERANCE = dict(atol=1e-10, rtol=1e-10)
VIT_FILES = ["vit_v1_nofuser", "vit_v1_fuser", "vit_v11_nofuser", "vit_v11_fuser"]
VIVIT_FILES = ["vivit_enc_v1_nofuser", "vivit_enc_v1_fuser", "vivit_enc_v11_nofuser", "vivit_enc_v11_fuser"]


def _fixture(name):
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def _params(fixture):
    return {key[len("param/") :]: value for key, value in fixture.items() if key.startswith("param/")}


def _tensor(array):
    return torch.from_numpy(np.ascontiguousarray(array))


# --- modules -------------------------------------------------------------------------------


def _tokenlearner_v1(pooling):
    spec = dataclasses.replace(VIT_TOKENLEARNER, pooling=pooling)
    return build_tokenizer(PartContext(dim=32, tokenlearner=spec))


def _run_tokenizer(module, fixture):
    """Scenic's (n*t, H, W, C) frames -> videotl's (n, C, t, H, W) volume -> tokens as scenic's (n*t, S, C)."""
    n, t = int(fixture["meta/n"]), int(fixture["meta/t"])
    x = _tensor(fixture["in/x"])
    _, h, w, c = x.shape
    tokens, _ = module(x.reshape(n, t, h, w, c).permute(0, 4, 1, 2, 3))
    return tokens.reshape(n * t, -1, c)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_tokenlearner_v1_matches_scenic(pooling):
    fixture = _fixture(f"tl_v1_{pooling}")
    module = _tokenlearner_v1(pooling).double().eval()
    assert isinstance(module, TokenLearner)
    load_flax_weights(module, _params(fixture))
    torch.testing.assert_close(_run_tokenizer(module, fixture), _tensor(fixture["out/y"]), **TOLERANCE)


def test_tokenlearner_v11_matches_scenic():
    fixture = _fixture("tl_v11")
    spec = dataclasses.replace(VIT_TOKENLEARNER, tokenizer="tokenlearner_v11")
    module = build_tokenizer(PartContext(dim=32, tokenlearner=spec)).double().eval()
    load_flax_weights(module, _params(fixture))
    torch.testing.assert_close(_run_tokenizer(module, fixture), _tensor(fixture["out/y"]), **TOLERANCE)


def test_x3d_path_tokenlearner_v11_is_scenics():
    # The res5 TokenLearner v1.1 of the video model (configs/ablations/tokenlearner_v11.yaml) at
    # width 32: the same function as scenic's TokenLearnerModuleV11 (tanh GELU, LayerNorm eps 1e-6).
    cfg = load_config(
        str(CONFIG_DIR / "ablations/tokenlearner_v11.yaml"),
        ["X3D.STEM_DIM", "4", "X3D.STAGE_DIMS", "[4, 8, 8, 16]", "X3D.STAGE_DEPTHS", "[1, 1, 1, 2]",
         "X3D.BOTTLENECK_FACTOR", "2.0", "X3D.CONV5_DIM", "24", "X3D.HEAD_DIM", "32",
         "RES5.CONVERTED_BLOCKS", "[1]", "MODEL.NUM_CLASSES", "5", "DATA.NUM_FRAMES", "4",
         "DATA.TRAIN_JITTER_SCALES", "[64, 80]", "DATA.TRAIN_CROP_SIZE", "64", "DATA.TEST_CROP_SIZE", "64"],
    )  # fmt: skip
    model = build_model(cfg)
    tokenizers = [m for m in model.modules() if isinstance(m, TokenLearnerV11)]
    assert len(tokenizers) == 1
    module = tokenizers[0].double().eval()
    fixture = _fixture("tl_v11")
    load_flax_weights(module, _params(fixture))
    torch.testing.assert_close(_run_tokenizer(module, fixture), _tensor(fixture["out/y"]), **TOLERANCE)


def _vit_fuser(dim=32, frames=2):
    spec = dataclasses.replace(VIT_TOKENLEARNER, fuser="tokenfuser")
    return build_fuser(PartContext(dim=dim, num_frames=frames, tokenlearner=spec))


def test_tokenfuser_matches_scenic_with_its_intermediates():
    fixture = _fixture("fuser")
    n, t = int(fixture["meta/n"]), int(fixture["meta/t"])
    fuser = _vit_fuser(frames=t).double().eval()
    load_flax_weights(fuser, _params(fixture))
    tokens, original = _tensor(fixture["in/tokens"]), _tensor(fixture["in/original"])
    c = tokens.shape[-1]
    sequence = original.reshape(n, -1, c)
    out = fuser(tokens.reshape(n, -1, c), sequence, num_frames=t) - sequence  # scenic adds the residual outside
    torch.testing.assert_close(out.reshape(original.shape), _tensor(fixture["out/y"]), **TOLERANCE)
    # The token path after fuser_mix_norm2 and the mixing weights' logits before the sigmoid.
    mixed = fuser._mixed_tokens(tokens.reshape(n, -1, c), t).reshape(n * t, -1, c)
    torch.testing.assert_close(mixed, _tensor(fixture["out/mixed"]), **TOLERANCE)
    logits = fuser.beta(fuser.input_norm(original))
    torch.testing.assert_close(logits, _tensor(fixture["out/mix_logits"]), **TOLERANCE)


# --- whole models --------------------------------------------------------------------------


def _vit_for(fixture):
    meta = {key[len("meta/") :]: value.item() for key, value in fixture.items() if key.startswith("meta/")}
    tokenlearner = {
        "tokenizer": "tokenlearner_v11" if meta["use_v11"] else "tokenlearner",
        "num_tokens": meta["num_tokens"],
        "fuser": "tokenfuser" if meta["fuse"] else "none",
    }
    common = dict(
        dim=meta["dim"],
        depth=meta["layers"],
        num_heads=meta["heads"],
        mlp_dim=meta["mlp"],
        classifier="gap",
        tokenlearner_layer=meta["loc"],
        tokenlearner=tokenlearner,
    )
    if "patch" in meta:
        image = fixture["in/x"].shape[1]
        return create_vit(image_size=image, patch_size=meta["patch"], num_classes=meta["classes"], **common)
    # The encoder alone: a ViViT whose tubelet grid is (t, h, w), 2 frames per tubelet, patch 4.
    return create_vivit(
        num_frames=2 * meta["t"], image_size=4 * meta["h"], patch_size=4, tubelet_size=2, num_classes=3, **common
    )


def _encoder_output(model, fixture):
    """Run the model's encoder on scenic's embedded tokens (n, t*h*w, C), time-major as its own."""
    t, h, w = (int(fixture[f"meta/{k}"]) for k in "thw")
    x = _tensor(fixture["in/x"])
    model.patch_embed.proj = nn.Identity()  # the tokens come embedded
    return model.forward_features(x.transpose(1, 2).reshape(x.shape[0], x.shape[2], t, h, w))


@pytest.mark.parametrize("name", VIT_FILES)
def test_vit_matches_scenic(name):
    fixture = _fixture(name)
    model = _vit_for(fixture).double().eval()
    report = load_flax_weights(model, _params(fixture))
    assert report["missing"] == []
    logits = model(_tensor(fixture["in/x"]).permute(0, 3, 1, 2))
    torch.testing.assert_close(logits, _tensor(fixture["out/y"]), **TOLERANCE)


@pytest.mark.parametrize("name", VIVIT_FILES)
def test_vivit_encoder_matches_scenic(name):
    fixture = _fixture(name)
    model = _vit_for(fixture).double().eval()
    report = load_flax_weights(model, _params(fixture), strict=False)
    # The encoder alone has no patch embedding and no classifier.
    assert sorted(report["missing"]) == ["head.bias", "head.weight", "patch_embed.proj.bias", "patch_embed.proj.weight"]
    torch.testing.assert_close(_encoder_output(model, fixture), _tensor(fixture["out/y"]), **TOLERANCE)


def test_scenic_imagenet_config_is_scenics_model_at_tiny_width():
    # configs/vit/scenic_im1k_b16_tl16at9_v11.yaml with only the sizes of the fixture changed: every
    # flax parameter of scenic's TokenLearnerViT (v1.1, no fuser, gap) finds its place, and the
    # logits are scenic's.
    fixture = _fixture("vit_v11_nofuser")
    cfg = load_config(
        str(CONFIG_DIR / "vit/scenic_im1k_b16_tl16at9_v11.yaml"),
        ["VIT.HIDDEN_SIZE", "64", "VIT.NUM_HEADS", "4", "VIT.MLP_DIM", "128", "VIT.DEPTH", "4",
         "VIT.PATCH_SIZE", "4", "VIT.TOKENLEARNER_LAYER", "2", "TOKENLEARNER.NUM_TOKENS", "8",
         "MODEL.NUM_CLASSES", "10", "DATA.TRAIN_JITTER_SCALES", "[32, 32]", "DATA.TRAIN_CROP_SIZE", "32",
         "DATA.TEST_CROP_SIZE", "32"],
    )  # fmt: skip
    model = build_model(cfg)
    assert model.head.bias.unique().tolist() == [-10.0]  # the official init_head_bias
    model = model.double().eval()
    assert load_flax_weights(model, _params(fixture))["missing"] == []
    logits = model(_tensor(fixture["in/x"]).permute(0, 3, 1, 2))
    torch.testing.assert_close(logits, _tensor(fixture["out/y"]), **TOLERANCE)


# --- the tests fail when a weight or an activation is wrong --------------------------------


def _vit_error(name, params=None, change=None):
    fixture = _fixture(name)
    model = _vit_for(fixture).double().eval()
    load_flax_weights(model, params if params is not None else _params(fixture))
    if change is not None:
        change(model)
    logits = model(_tensor(fixture["in/x"]).permute(0, 3, 1, 2))
    return (logits - _tensor(fixture["out/y"])).abs().max().item()


@pytest.mark.parametrize(
    "flax_name",
    [
        "Transformer/TokenFuser_0/token_masking/Dense_0/kernel",  # square (64, 64)
        "Transformer/TokenFuser_1/Dense_0/kernel",  # the token map, square (8, 8)
        "Transformer/TokenLearnerModuleV11_0/token_masking/Dense_0/kernel",
    ],
)
def test_a_transposed_square_weight_breaks_parity(flax_name):
    params = _params(_fixture("vit_v11_fuser"))
    assert params[flax_name].shape[0] == params[flax_name].shape[1]
    assert _vit_error("vit_v11_fuser") < 1e-10
    params[flax_name] = params[flax_name].T.copy()
    assert _vit_error("vit_v11_fuser", params) > 1e-6


def test_a_transposed_conv_kernel_breaks_parity():
    params = _params(_fixture("vit_v1_fuser"))
    name = "Transformer/TokenLearnerModule_0/Conv_2/kernel"  # (3, 3, 8, 8): in and out swapped
    params[name] = params[name].transpose(0, 1, 3, 2).copy()
    assert _vit_error("vit_v1_fuser", params) > 1e-6


def _use_exact_gelu(model):
    for module in model.modules():
        if isinstance(module, Mlp):
            module.act = nn.GELU()
        if isinstance(module, TokenLearner):
            module.alpha = nn.Sequential(*[nn.GELU() if isinstance(m, nn.GELU) else m for m in module.alpha])


@pytest.mark.parametrize("name", ["vit_v1_fuser", "vit_v11_fuser"])
def test_the_exact_gelu_breaks_parity(name):
    assert _vit_error(name, change=_use_exact_gelu) > 1e-6


def test_mean_instead_of_sum_pooling_breaks_parity():
    def mean_pooling(model):
        for module in model.modules():
            if isinstance(module, TokenLearner):
                module.pooling = "mean"

    assert _vit_error("vit_v1_nofuser", change=mean_pooling) > 1e-6


def test_a_transposed_rectangular_kernel_is_refused_with_its_name():
    params = _params(_fixture("vit_v11_nofuser"))
    name = "Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel"
    params[name] = params[name].T.copy()
    model = _vit_for(_fixture("vit_v11_nofuser"))
    with pytest.raises(
        FlaxConversionError, match=rf"^{name}: converts to blocks.1.mlp.fc1.weight of shape \(64, 128\)"
    ):
        flax_to_state_dict(params, model)


# --- the converter's contract ----------------------------------------------------------------


def test_conversion_layouts_by_hand():
    # Dense (in, out) -> weight (out, in); q / k / v (C, heads, head_dim) -> rows of the fused
    # qkv weight, heads major; out (heads, head_dim, C) -> proj (C, heads * head_dim).
    params = _params(_fixture("vit_v1_nofuser"))
    model = _vit_for(_fixture("vit_v1_nofuser")).double()
    state = flax_to_state_dict(params, model)
    block = "Transformer/encoderblock_0/"
    attention = block + "MultiHeadDotProductAttention_0/"
    qkv = state["blocks.0.attn.qkv.weight"].numpy()
    for part, name in enumerate(("query", "key", "value")):
        kernel = params[f"{attention}{name}/kernel"]  # (64, 4, 16)
        for head in range(4):
            rows = qkv[part * 64 + head * 16 : part * 64 + (head + 1) * 16]
            np.testing.assert_array_equal(rows, kernel[:, head, :].T)
    np.testing.assert_array_equal(
        state["blocks.0.attn.proj.weight"].numpy()[:, 16:32], params[f"{attention}out/kernel"][1].T
    )
    np.testing.assert_array_equal(
        state["blocks.0.mlp.fc2.weight"].numpy(), params[f"{block}MlpBlock_0/Dense_1/kernel"].T
    )
    conv = state["tokenlearner.alpha.2.weight"].numpy()  # Conv_1, (out, in, kh, kw)
    flax_conv = params["Transformer/TokenLearnerModule_0/Conv_1/kernel"]  # (kh, kw, in, out)
    assert conv[3, 5, 0, 2] == flax_conv[0, 2, 5, 3]
    np.testing.assert_array_equal(
        state["patch_embed.proj.weight"].numpy()[7, 1], params["embedding/kernel"][:, :, 1, 7]
    )


def test_nested_trees_checkpoint_roots_and_msgpack_files_read_alike(tmp_path):
    msgpack = pytest.importorskip("msgpack")
    flat = _params(_fixture("tl_v11"))
    nested = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def pack(value):  # flax.serialization's encoding of an array leaf
        if isinstance(value, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((value.shape, value.dtype.name, value.tobytes("C"))))
        return value

    path = tmp_path / "checkpoint.msgpack"
    path.write_bytes(msgpack.packb({"params": nested, "step": 7}, default=pack, use_bin_type=True))
    for source in (nested, {"optimizer": {"target": nested}}, path):
        read = read_flax_params(source)
        assert sorted(read) == sorted(flat)
        for name in flat:
            np.testing.assert_array_equal(read[name], flat[name])
    module = TokenLearnerV11(dim=32, num_tokens=8).double()
    load_flax_weights(module, path)
    torch.testing.assert_close(module.mlp.fc1.weight, _tensor(flat["token_masking/Dense_0/kernel"].T))


def test_npz_files_read_from_their_param_root():
    assert sorted(read_flax_params(FIXTURES / "tl_v1_sum.npz")) == sorted(_params(_fixture("tl_v1_sum")))


@pytest.mark.parametrize(
    "build, message",
    [
        # Settings that differ from scenic's show as the parameter that does not fit, with the key.
        (lambda: create_vit(image_size=32, patch_size=4, dim=64, depth=4, num_heads=4, mlp_dim=128, num_classes=10,
                            classifier="gap", tokenlearner_layer=2,
                            tokenlearner={"fuser": "tokenfuser", "fuser_mix_bias": False, "tokenizer": "tokenlearner_v11", "num_tokens": 8}),
         r"^Transformer/TokenFuser_0/Dense_0/bias: the model has no fusers.0.token_mix.bias"),
        (lambda: create_vit(image_size=32, patch_size=4, dim=64, depth=4, num_heads=4, mlp_dim=128, num_classes=10,
                            classifier="gap", tokenlearner_layer=2,
                            tokenlearner={"fuser": "tokenfuser", "tokenizer": "tokenlearner", "num_tokens": 8}),
         r"^Transformer/TokenLearnerModuleV11_0: Scenic's TokenLearnerModuleV11, .*tokenlearner_v11"),
        (lambda: create_vit(image_size=32, patch_size=4, dim=64, depth=4, num_heads=4, mlp_dim=128, num_classes=10,
                            classifier="gap", tokenlearner_layer=2, tokenlearner={"num_tokens": 8}),
         r"^Transformer/TokenLearnerModuleV11_0: .*TokenLearner \(TOKENLEARNER.TOKENIZER tokenlearner_v11\)"),
        (lambda: create_vit(image_size=32, patch_size=4, dim=64, depth=3, num_heads=4, mlp_dim=128, num_classes=10,
                            classifier="gap", tokenlearner_layer=2,
                            tokenlearner={"fuser": "tokenfuser", "tokenizer": "tokenlearner_v11", "num_tokens": 8}),
         r"^Transformer/encoderblock_3/: the model has 3 layers"),
        (lambda: create_vit(image_size=32, patch_size=4, dim=64, depth=4, num_heads=4, mlp_dim=128, num_classes=7,
                            classifier="gap", tokenlearner_layer=2,
                            tokenlearner={"fuser": "tokenfuser", "tokenizer": "tokenlearner_v11", "num_tokens": 8}),
         r"^output_projection/kernel: converts to head.weight of shape \(10, 64\), but the model's is \(7, 64\); MODEL.NUM_CLASSES"),
    ],
)  # fmt: skip
def test_settings_that_differ_are_named(build, message):
    with pytest.raises(FlaxConversionError, match=message):
        flax_to_state_dict(_params(_fixture("vit_v11_fuser")), build())


def test_a_video_fuser_mixing_all_tokens_is_refused_with_the_key():
    # Scenic's video fuser mixes each time step's S tokens; the paper's mixes all S*T.
    fixture = _fixture("vivit_enc_v11_fuser")
    model = create_vivit(num_frames=4, image_size=16, patch_size=4, tubelet_size=2, dim=64, depth=4, num_heads=4,
                         mlp_dim=128, num_classes=3, classifier="gap", tokenlearner_layer=2,
                         tokenlearner={"tokenizer": "tokenlearner_v11", "fuser": "tokenfuser", "fuser_mix": "all"})  # fmt: skip
    with pytest.raises(FlaxConversionError, match=r"^TokenFuser_0/Dense_0/kernel: .* \(16, 16\); .*FUSER_MIX frame"):
        load_flax_weights(model, _params(fixture), strict=False)


def test_a_baseline_vit_tree_with_a_class_token_converts():
    # scenic's baseline ViT: the same encoder names, a "cls" token and its position in the embedding.
    params = {k: v for k, v in _params(_fixture("vit_v1_nofuser")).items() if "TokenLearnerModule" not in k}
    pos = params["Transformer/posembed_input/pos_embedding"]
    params["Transformer/posembed_input/pos_embedding"] = np.concatenate([pos[:, :1], pos], axis=1)
    params["cls"] = np.random.default_rng(0).normal(size=(1, 1, 64))
    model = create_vit(image_size=32, patch_size=4, dim=64, depth=4, num_heads=4, mlp_dim=128, num_classes=10,
                       classifier="token").double()  # fmt: skip
    assert load_flax_weights(model, params)["missing"] == []
    np.testing.assert_array_equal(model.cls_token.detach().numpy(), params["cls"])


def test_a_tokenlearner_without_layernorm_is_named():
    model = create_vit(image_size=32, patch_size=4, dim=64, depth=4, num_heads=4, mlp_dim=128, num_classes=10,
                       classifier="gap", tokenlearner_layer=2, tokenlearner={"layernorm": False})  # fmt: skip
    with pytest.raises(
        FlaxConversionError, match=r"LayerNorm_0/scale: the model has no tokenlearner.norm.weight; .*LAYERNORM True"
    ):
        flax_to_state_dict(_params(_fixture("vit_v1_nofuser")), model)


def test_strict_loading_names_the_first_missing_parameter():
    model = _vit_for(_fixture("vivit_enc_v1_nofuser"))
    with pytest.raises(
        FlaxConversionError, match=r"^patch_embed.proj.weight: not in the flax parameters \(and 3 more\)"
    ):
        load_flax_weights(model, _params(_fixture("vivit_enc_v1_nofuser")))


def test_a_foreign_parameter_is_refused():
    params = {**_params(_fixture("fuser")), "Dense_7/kernel": np.zeros((2, 2))}
    with pytest.raises(FlaxConversionError, match=r"^Dense_7/kernel: no counterpart in TokenFuser"):
        load_flax_weights(_vit_fuser(), params)


def test_unsupported_modules_and_files_give_one_line_errors(tmp_path):
    with pytest.raises(FlaxConversionError, match="no flax counterpart for Linear"):
        flax_to_state_dict({"kernel": np.zeros((2, 2))}, nn.Linear(2, 2))
    with pytest.raises(FlaxConversionError, match="file not found"):
        read_flax_params(tmp_path / "missing.msgpack")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(FlaxConversionError, match=r"bad.npz: not a readable .npz file"):
        read_flax_params(bad)
    with pytest.raises(FlaxConversionError, match="nothing under 'params'"):
        read_flax_params({"a": np.zeros(1)}, subtree="params")


def test_the_paper_form_fuser_is_not_scenics():
    # The video model's fuser (linear weights, no token-map bias, mixing all S*T tokens) has a
    # different parameter set: the converter names the first one that does not fit.
    paper = TokenFuser(dim=32, num_tokens=8, num_frames=2)
    with pytest.raises(FlaxConversionError, match=r"^fuser_mix_norm1|^Dense_0/kernel"):
        load_flax_weights(paper, _params(_fixture("fuser")))
    assert TokenLearnerSpec().fuser_weights == "linear" and not TokenLearnerSpec().fuser_mix_bias
    assert isinstance(_vit_for(_fixture("vit_v1_fuser")), VisionTransformer)
