"""ViT / ViViT with TokenLearner: every config at tiny size, TokenLearner placement against a
loop implementation of eq. 1, the fuser's identity start, and ViT -> ViViT inflation."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videotl.config import ConfigError, load_config
from videotl.models import build_model
from videotl.models.tokenlearner import TokenLearner
from videotl.models.vit import create_vit, create_vivit, inflate_patch_kernel, load_pretrained

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
VIT_CONFIGS = sorted(str(p.relative_to(CONFIG_DIR)) for d in ("vit", "vivit") for p in (CONFIG_DIR / d).glob("*.yaml"))

# Tiny widths on the configs' own depths and TokenLearner placements: 4 x 4 patches per frame,
# two tubelet time steps for ViViT.
TINY = [
    "VIT.HIDDEN_SIZE",
    "32",
    "VIT.NUM_HEADS",
    "4",
    "VIT.MLP_DIM",
    "64",
    "VIT.PATCH_SIZE",
    "8",
    "MODEL.NUM_CLASSES",
    "5",
    "DATA.TRAIN_JITTER_SCALES",
    "[32, 32]",
    "DATA.TRAIN_CROP_SIZE",
    "32",
    "DATA.TEST_CROP_SIZE",
    "32",
    "DATA.NUM_FRAMES",
    "4",
]
TINY_KW = dict(patch_size=8, dim=32, depth=4, num_heads=4, mlp_dim=64, num_classes=5)


def _input(cfg, batch=2, size=None):
    size = size or cfg.DATA.TRAIN_CROP_SIZE
    if cfg.MODEL.ARCH == "vit":
        return torch.randn(batch, 3, size, size)
    return torch.randn(batch, 3, cfg.DATA.NUM_FRAMES, size, size)


def _block_io(model):
    """Record each block's input and output."""
    inputs, outputs = {}, {}
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0].detach()))
        block.register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out.detach()))
    return inputs, outputs


@pytest.mark.parametrize("name", VIT_CONFIGS)
def test_every_config_builds_and_runs_forward_backward(name):
    cfg = load_config(str(CONFIG_DIR / name), TINY)
    vit = cfg.VIT
    model = build_model(cfg).train()
    assert len(model.blocks) == vit.DEPTH + vit.EXTRA_LAYERS
    inputs, _ = _block_io(model)
    # The classifier starts at zero (as the official fine-tuning): give it weights so every
    # parameter's gradient is non-trivial.
    nn.init.normal_(model.head.weight)
    logits = model(_input(cfg))
    assert logits.shape == (2, 5)
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0

    steps = 1 if cfg.MODEL.ARCH == "vit" else cfg.DATA.NUM_FRAMES // vit.TUBELET_SIZE
    prefix = 1 if vit.CLASSIFIER == "token" else 0
    layer = vit.TOKENLEARNER_LAYER
    for index, x in inputs.items():
        learned = layer >= 0 and index >= layer
        expected = cfg.TOKENLEARNER.NUM_TOKENS * steps if learned else 16 * steps
        assert x.shape[1] == prefix + expected, f"layer {index}"
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(_input(cfg, batch=1, size=cfg.DATA.TEST_CROP_SIZE))).all()


def test_full_size_parameter_counts_match_the_reference_vits():
    # timm's vit_base_patch16_224 / vit_large_patch16_224 (class token, 1000 classes).
    expected = {"vit/vit_b16.yaml": 86_567_656, "vit/vit_l16.yaml": 304_326_632}
    for name, count in expected.items():
        cfg = load_config(
            str(CONFIG_DIR / name), ["DATA.TRAIN_CROP_SIZE", "224", "DATA.TRAIN_JITTER_SCALES", "[224, 224]"]
        )
        with torch.device("meta"):
            model = build_model(cfg)
        assert sum(p.numel() for p in model.parameters()) == count, name
    # "L/16 24+11": 35 layers, TokenLearner after the 12th, 11 layers beyond the base 24.
    with torch.device("meta"):
        model = build_model(load_config(str(CONFIG_DIR / "vit/vit_l16_24p11_tl16at12.yaml")))
    assert len(model.blocks) == 35 and model.tokenlearner_layer == 12 and model.grid == (1, 32, 32)
    assert isinstance(model.tokenlearner, TokenLearner) and model.tokenlearner.num_tokens == 16


def _eq1_loop(tokenlearner: TokenLearner, x: torch.Tensor, grid) -> torch.Tensor:
    """Eq. 1 with the official alpha, one frame and one token at a time:
    z_i = sum_p sigmoid(alpha_i(LayerNorm(X_t)))[p] * X_t[p]."""
    t_steps, h, w = grid
    convs = [m for m in tokenlearner.alpha if isinstance(m, nn.Conv2d)]
    norm = tokenlearner.norm
    out = []
    for b in range(x.shape[0]):
        tokens = []
        for t in range(t_steps):
            frame = x[b, t * h * w : (t + 1) * h * w]  # (HW, C)
            normed = F.layer_norm(frame, frame.shape[-1:], norm.weight, norm.bias, norm.eps)
            a = normed.T.reshape(1, -1, h, w)
            for j, conv in enumerate(convs):
                if j:
                    a = F.gelu(a, approximate="tanh")
                a = F.conv2d(a, conv.weight, padding=1)
            maps = torch.sigmoid(a).reshape(-1, h * w)  # (S, HW)
            for s in range(maps.shape[0]):
                tokens.append((maps[s][:, None] * frame).sum(dim=0))
        out.append(torch.stack(tokens))
    return torch.stack(out)


@pytest.mark.parametrize("family", ["vit", "vivit"])
def test_tokenlearner_at_k_keeps_the_first_k_layers_and_learns_s_tokens_per_step(family):
    k, s = 2, 3
    make = (
        (lambda **kw: create_vit(image_size=32, **kw))
        if family == "vit"
        else (lambda **kw: create_vivit(num_frames=6, image_size=32, tubelet_size=2, **kw))
    )
    plain = make(**TINY_KW).eval()
    learned = make(**TINY_KW, tokenlearner_layer=k, tokenlearner={"num_tokens": s}, extra_layers=1).eval()
    result = learned.load_state_dict(plain.state_dict(), strict=False)
    assert all(key.startswith(("tokenlearner.", "blocks.4.")) for key in result.missing_keys)
    assert not result.unexpected_keys
    x = torch.randn(2, 3, 32, 32) if family == "vit" else torch.randn(2, 3, 6, 32, 32)
    _, plain_out = _block_io(plain)
    learned_in, learned_out = _block_io(learned)
    with torch.no_grad():
        plain(x)
        learned(x)
    steps = 1 if family == "vit" else 3
    for i in range(k):
        assert torch.equal(learned_out[i], plain_out[i]), f"layer {i} changed"
    for i in range(k, 5):
        assert learned_out[i].shape == (2, s * steps, 32)
    expected = _eq1_loop(learned.tokenlearner, learned_out[k - 1], learned.grid)
    torch.testing.assert_close(learned_in[k], expected, rtol=1e-5, atol=1e-5)


def test_class_token_is_kept_beside_the_learned_tokens():
    model = create_vit(
        image_size=32, **TINY_KW, classifier="token", tokenlearner_layer=1, tokenlearner={"num_tokens": 4}
    ).eval()
    inputs, outputs = _block_io(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert inputs[1].shape == (2, 1 + 4, 32)
    # The class token reaches the TokenLearner's layer untouched by it.
    torch.testing.assert_close(inputs[1][:, 0], outputs[0][:, 0])


@pytest.mark.parametrize("v11", [False, True])
def test_tokenfuser_layers_start_as_identity_and_restore_the_token_count(v11):
    k = 2
    model = create_vivit(
        num_frames=4,
        image_size=32,
        tubelet_size=2,
        **TINY_KW,
        tokenlearner_layer=k,
        tokenlearner={
            "num_tokens": 3,
            "fuser": "tokenfuser",
            "tokenizer": "tokenlearner_v11" if v11 else "tokenlearner",
        },
    ).eval()
    assert len(model.tokenlearners) == len(model.fusers) == 2
    inputs, outputs = _block_io(model)
    with torch.no_grad():
        features = model.forward_features(torch.randn(2, 3, 4, 32, 32))
    assert inputs[k].shape == inputs[k + 1].shape == (2, 3 * 2, 32)
    assert features.shape == (2, 2 * 16, 32)
    # Zero token map -> zero fuser output -> the fused layers add nothing yet.
    torch.testing.assert_close(features, model.norm(outputs[k - 1]))


def test_fuser_mixes_per_step_or_across_all_tokens():
    per_step = create_vivit(
        num_frames=4,
        image_size=32,
        tubelet_size=2,
        **TINY_KW,
        tokenlearner_layer=2,
        tokenlearner={"num_tokens": 3, "fuser": "tokenfuser"},
    )
    across = create_vivit(
        num_frames=4,
        image_size=32,
        tubelet_size=2,
        **TINY_KW,
        tokenlearner_layer=2,
        tokenlearner={"num_tokens": 3, "fuser": "tokenfuser", "fuser_mix": "all"},
    )
    assert per_step.fusers[0].token_mix.weight.shape == (3, 3)
    assert across.fusers[0].token_mix.weight.shape == (6, 6)
    nn.init.normal_(across.fusers[0].token_mix.weight)
    across(torch.randn(1, 3, 4, 32, 32)).sum().backward()


def test_image_model_takes_one_frame_clips_and_other_resolutions():
    model = create_vit(image_size=32, **TINY_KW, tokenlearner_layer=2).eval()
    nn.init.normal_(model.head.weight)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model(image[:, :, None]))
        assert model(torch.randn(1, 3, 48, 48)).shape == (1, 5)


def test_patch_kernel_inflation():
    weight = torch.randn(8, 3, 4, 4)
    central = inflate_patch_kernel(weight, tubelet_size=3, mode="central_frame")
    assert torch.equal(central[:, :, 1], weight) and not central[:, :, [0, 2]].any()
    average = inflate_patch_kernel(weight, tubelet_size=2, mode="average")
    torch.testing.assert_close(average.sum(dim=2), weight)


def test_position_embedding_is_resampled_bilinearly_for_a_new_resolution():
    small = create_vit(image_size=32, **TINY_KW, classifier="token")
    large = create_vit(image_size=48, **TINY_KW, classifier="token")
    report = load_pretrained(large, small.state_dict())
    assert "pos_embed" in report["adapted"] and report["kept_init"] == ["head.weight", "head.bias"]
    grid = small.pos_embed[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = (
        F.interpolate(grid, size=(6, 6), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).reshape(1, 36, 32)
    )
    torch.testing.assert_close(large.pos_embed[:, 1:].detach(), expected.detach())
    torch.testing.assert_close(large.pos_embed[:, :1], small.pos_embed[:, :1])
    torch.testing.assert_close(large.blocks[3].mlp.fc2.weight, small.blocks[3].mlp.fc2.weight)


VARIANTS = {
    "plain": {},
    "tokenlearner": {"VIT.TOKENLEARNER_LAYER": "2"},
    "tokenlearner_v11_fuser": {
        "VIT.TOKENLEARNER_LAYER": "2",
        "TOKENLEARNER.TOKENIZER": "tokenlearner_v11",
        "TOKENLEARNER.FUSER": "tokenfuser",
    },
}


@pytest.mark.parametrize("inflation", ["central_frame", "average"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_inflated_vivit_reproduces_the_vit_on_a_clip_of_identical_frames(tmp_path, inflation, variant):
    options = VARIANTS[variant]
    layer = int(options.get("VIT.TOKENLEARNER_LAYER", "-1"))
    image_model = create_vit(
        image_size=32,
        **TINY_KW,
        classifier="gap",
        tokenlearner_layer=layer,
        tokenlearner={
            "num_tokens": 4,
            "tokenizer": options.get("TOKENLEARNER.TOKENIZER", "tokenlearner"),
            "fuser": options.get("TOKENLEARNER.FUSER", "none"),
        },
    ).eval()
    # Random weights everywhere, the fuser's zero token map included, so nothing is trivially zero.
    with torch.no_grad():
        for p in image_model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    checkpoint = tmp_path / "vit.pyth"
    torch.save({"model": image_model.state_dict()}, checkpoint)

    overrides = [
        *TINY,
        "VIT.DEPTH",
        "4",
        "VIT.CLASSIFIER",
        "gap",
        "TOKENLEARNER.NUM_TOKENS",
        "4",
        "VIT.INIT.CHECKPOINT",
        str(checkpoint),
        "VIT.INIT.INFLATION",
        inflation,
    ]
    for key, value in options.items():
        overrides += [key, value]
    cfg = load_config(str(CONFIG_DIR / "vivit/vivit_b16.yaml"), overrides)
    video_model = build_model(cfg).eval()
    assert video_model.grid == (2, 4, 4)
    # The temporal part of the inflated position embedding is zero: every step has the image's table.
    steps = video_model.pos_embed.reshape(2, 16, 32)
    torch.testing.assert_close(steps[0], image_model.pos_embed[0])
    torch.testing.assert_close(steps[1], image_model.pos_embed[0])

    image = torch.randn(2, 3, 32, 32)
    clip = image[:, :, None].expand(-1, -1, 4, -1, -1).contiguous()
    with torch.no_grad():
        expected = image_model.pool(image_model.forward_features(image))
        got = video_model.pool(video_model.forward_features(clip))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # A different clip (frames not identical) gives another answer: the check is not vacuous.
    with torch.no_grad():
        other = video_model.pool(video_model.forward_features(clip + torch.randn_like(clip)))
    assert not torch.allclose(other, expected, atol=1e-3)


def test_vivit_fuser_over_all_tokens_inflates_an_image_fuser_block_diagonally():
    image_model = create_vit(
        image_size=32,
        **TINY_KW,
        tokenlearner_layer=2,
        tokenlearner={"num_tokens": 3, "fuser": "tokenfuser", "fuser_mix": "all"},
    )
    video_model = create_vivit(
        num_frames=4,
        image_size=32,
        tubelet_size=2,
        **TINY_KW,
        tokenlearner_layer=2,
        tokenlearner={"num_tokens": 3, "fuser": "tokenfuser", "fuser_mix": "all"},
    )
    nn.init.normal_(image_model.fusers[0].token_mix.weight)
    report = load_pretrained(video_model, image_model.state_dict())
    assert "fusers.0.token_mix.weight" in report["adapted"]
    mix = video_model.fusers[0].token_mix.weight
    torch.testing.assert_close(
        mix, torch.block_diag(image_model.fusers[0].token_mix.weight, image_model.fusers[0].token_mix.weight)
    )


def test_checkpoint_of_another_width_is_refused_with_the_key():
    small = create_vit(image_size=32, **TINY_KW)
    wide = create_vit(image_size=32, **{**TINY_KW, "dim": 64})
    with pytest.raises(ValueError, match="HIDDEN_SIZE"):
        load_pretrained(wide, small.state_dict())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["TOKENLEARNER.FUSER", "tokenfuser"], "FUSER = 'tokenfuser' needs a TokenLearner"),
        (["VIT.EXTRA_LAYERS", "3"], "EXTRA_LAYERS = 3"),
        (["VIT.TOKENLEARNER_LAYER", "13"], "TOKENLEARNER_LAYER = 13"),
        (["VIT.NUM_HEADS", "5"], "not divisible"),
        (["VIT.INIT.CHECKPOINT", "/nonexistent/vit.pyth"], "file not found"),
        (["VIT.CLASSIFIER", "max"], "VIT.CLASSIFIER"),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(CONFIG_DIR / "vit/vit_b16.yaml"), overrides)


def test_vit_config_trains_and_evaluates_on_an_image_folder(tmp_path):
    from PIL import Image

    from videotl.engine import train

    for split in ("train", "val"):
        for c, name in enumerate(("a", "b", "c")):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (40, 36), (80 * c, 20 * i, 100)).save(folder / f"{i}.png")
    cfg = load_config(
        str(CONFIG_DIR / "vit/vit_b16_tl8at6_fuser.yaml"),
        [
            *TINY,
            "MODEL.NUM_CLASSES",
            "3",
            "DATA.PATH_TO_DATA_DIR",
            str(tmp_path / "data"),
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "DEVICE",
            "cpu",
            "TRAIN.BATCH_SIZE_PER_DEVICE",
            "4",
            "TEST.BATCH_SIZE_PER_DEVICE",
            "4",
            "SOLVER.MAX_ITER",
            "0",
            "SOLVER.MAX_EPOCH",
            "1",
            "DATA_LOADER.NUM_WORKERS",
            "0",
            "TENSORBOARD.ENABLE",
            "False",
        ],
    )
    train(cfg)
    assert (tmp_path / "out" / "checkpoints" / "checkpoint_epoch_00001.pyth").is_file()
    records = [json.loads(line) for line in (tmp_path / "out" / "stats.jsonl").read_text().splitlines()]
    evaluation = [r for r in records if r["type"] == "eval"][-1]
    assert evaluation["num_videos"] == 12 and evaluation["num_failed_videos"] == 0 and 0.0 <= evaluation["top1"] <= 1.0
