"""ViT and ViViT (joint space-time) with TokenLearner as named models: the rows of the paper's
Tables 1-8 (``configs/vit/``, ``configs/vivit/``) and the official ImageNet setting.

Names read as the paper writes its models: ``vit_l16_24p11_tl16at18_fuser`` is ViT-L/16 with 24
layers plus 11 after a TokenLearner of 16 tokens inserted after layer 18, with TokenFuser
(Figure 3 (b)); ``vit_b16_21_tl8at10`` has 21 layers in all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from ..settings import setting
from .factory import register_model
from .vit import VisionTransformer, create_vit, create_vivit, load_pretrained

__all__ = ["VIT_SIZES", "ViTSpec", "vit", "vivit"]

logger = logging.getLogger("videotl.models")

# ViT's sizes (Dosovitskiy et al. 2021): hidden size, layers, heads, MLP width.
VIT_SIZES: Dict[str, Tuple[int, int, int, int]] = {
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "l": (1024, 24, 16, 4096),
}


@dataclass(frozen=True)
class ViTSpec:
    """ViT / ViViT settings (config section ``VIT``; ViT-B by default). The sizes follow ViT
    (Dosovitskiy et al. 2021): S = 384 wide, 12 layers, 6 heads, MLP 1536; B = 768, 12, 12, 3072;
    L = 1024, 24, 16, 4096. Each field is the builders' argument of the same name."""

    patch_size: int = setting(16, help="side of the square patch (ViT-B/16: 16)", positive=True)
    tubelet_size: int = setting(2, help="frames per ViViT tubelet (16x16x2); unused by the image model", positive=True)
    dim: int = setting(768, key="HIDDEN_SIZE", help="hidden size (token width)", positive=True)
    depth: int = setting(12, help='the base model\'s layers ("24" in the paper\'s "24+11")', positive=True)
    num_heads: int = setting(12, help="attention heads", positive=True)
    mlp_dim: int = setting(3072, help="hidden width of each layer's MLP", positive=True)
    classifier: str = setting(
        "gap", help="token: a class token is read out; gap: the mean of the final tokens", choices=("token", "gap")
    )
    representation_size: int = setting(
        0, help="width of ViT's pre-logits layer (linear + tanh, JFT pre-training); 0 = none", non_negative=True
    )
    dropout_rate: float = setting(
        0.0,
        help="dropout after the position embeddings, on each residual branch, after the MLP's hidden layer and in "
        "the TokenLearner / TokenFuser MLPs (Scenic's dropout_rate)",
        within=(0.0, 1.0),
    )
    attention_dropout_rate: float = setting(
        0.0, key="ATTENTION_DROPOUT", help="dropout on the attention weights", within=(0.0, 1.0)
    )
    mlp_hidden_dropout: bool = setting(
        True, help="DROPOUT_RATE also after the MLP's hidden layer, as Scenic's MlpBlock; False: only on its output"
    )
    head_bias_init: float = setting(
        0.0, help="initial bias of the classifier (the official ImageNet TokenLearner setting: -10 with sigmoid)"
    )
    extra_layers: int = setting(
        0, help='layers after the TokenLearner ("+11" in "24+11"); they see only the learned tokens', non_negative=True
    )
    tokenlearner_layer: int = setting(
        -1,
        help='TokenLearner after this many layers ("16-TL at 12" -> 12); -1 = a plain ViT / ViViT; built as the '
        "TOKENLEARNER section says (FUSER tokenfuser: Figure 3 (b))",
    )
    init_checkpoint: str = setting(
        "", key="INIT.CHECKPOINT", help="a ViT / ViViT state dict to start from (e.g. image weights for a ViViT)"
    )
    init_inflation: str = setting(
        "central_frame",
        key="INIT.INFLATION",
        help="how a 2D patch kernel becomes a tubelet kernel: central_frame, or average (I3D inflation)",
        choices=("central_frame", "average"),
    )


def _initialise(model: VisionTransformer, checkpoint: str, inflation: str) -> VisionTransformer:
    if checkpoint:
        report = load_pretrained(model, checkpoint, inflation=inflation)
        logger.info(
            "initialised from %s: %d tensors copied, adapted %s, kept init %s, not in the checkpoint %s, unused %s",
            checkpoint,
            len(report["loaded"]),
            report["adapted"],
            report["kept_init"],
            report["missing"],
            report["unused"],
        )
    return model


def vit(
    *,
    num_classes: int = 1000,
    image_size: int = 384,
    patch_size: int = 16,
    dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    mlp_dim: int = 3072,
    classifier: str = "token",
    init_checkpoint: str = "",
    init_inflation: str = "central_frame",
    **kwargs: Any,
) -> VisionTransformer:
    """ViT (ViT-B/16 by default, reading a class token as ViT does) on ``image_size``^2 images, with
    TokenLearner and TokenFuser as :class:`VisionTransformer` takes them (``tokenlearner_layer``,
    ``extra_layers``, ``tokenlearner``, ``classifier``, dropouts).

    ::

        image -> patches p x p -> + position -> [layers 0..k-1] -> TokenLearner (S tokens)
              -> [layers k.. over S tokens | TokenLearner -> layer -> TokenFuser (+) per layer]
              -> LayerNorm -> class token | mean -> head

    ``init_checkpoint`` loads weights with :func:`load_pretrained` (resampling the position embedding).
    """
    model = create_vit(
        image_size=image_size,
        patch_size=patch_size,
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
        classifier=classifier,
        **kwargs,
    )
    return _initialise(model, init_checkpoint, init_inflation)


def vivit(
    *,
    num_classes: int = 400,
    num_frames: int = 32,
    image_size: int = 224,
    patch_size: int = 16,
    tubelet_size: int = 2,
    dim: int = 1024,
    depth: int = 24,
    num_heads: int = 16,
    mlp_dim: int = 4096,
    classifier: str = "token",
    init_checkpoint: str = "",
    init_inflation: str = "central_frame",
    **kwargs: Any,
) -> VisionTransformer:
    """ViViT with joint space-time attention (ViViT-L/16x2 with a class token by default) on
    ``num_frames`` x ``image_size``^2 clips, tubelets ``tubelet_size`` x ``patch_size``^2, with
    TokenLearner as in :func:`vit`; an image checkpoint's patch kernel is inflated by ``init_inflation``.

    ::

        clip -> tubelets t x p x p -> + position -> [layers 0..k-1] -> TokenLearner (S tokens per step)
             -> [layers k.. over T'S tokens | ... TokenFuser per step] -> LayerNorm -> pool -> head
    """
    model = create_vivit(
        num_frames=num_frames,
        image_size=image_size,
        patch_size=patch_size,
        tubelet_size=tubelet_size,
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
        classifier=classifier,
        **kwargs,
    )
    return _initialise(model, init_checkpoint, init_inflation)


_IMAGENET = {
    "num_frames": 1,
    "num_classes": 1000,
    "multi_label": False,
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
}
_KINETICS = {"num_frames": 32, "fps": 12.5, "crop_size": 224, "test_crop_size": 224, "num_classes": 400,
             "multi_label": False, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # fmt: skip

register_model(vit, family="vit", config_adapter="vit", default_cfg={**_IMAGENET, "crop_size": 384,
               "test_crop_size": 384, "config": "vit/vit_b16.yaml"})  # fmt: skip
register_model(
    vivit, family="vivit", config_adapter="vivit", default_cfg={**_KINETICS, "config": "vivit/vivit_l16.yaml"}
)


def _register(name: str, family: str, size: str, patch: int, *, layer: int = -1, tokens: int = 8, extra: int = 0,
              fuser: bool = False, num_classes: int = 0) -> None:  # fmt: skip
    dim, depth, heads, mlp = VIT_SIZES[size]
    video = family == "vivit"
    crop = 224 if video else (512 if size == "l" else 384)
    preset: Dict[str, Any] = {
        "patch_size": patch,
        "dim": dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_dim": mlp,
        "image_size": crop,
        "num_classes": num_classes or (400 if video else 1000),
        # The plain models read out a class token; the TokenLearner models pool ("gap"), as the official code.
        "classifier": "gap" if layer >= 0 else "token",
        "tokenlearner_layer": layer,
        "extra_layers": extra,
        "tokenlearner": {"num_tokens": tokens, "fuser": "tokenfuser" if fuser else "none"},
    }
    builder = vivit if video else vit

    def build(**kwargs: Any) -> VisionTransformer:
        merged = {**preset, **kwargs}
        if isinstance(kwargs.get("tokenlearner"), dict):
            merged["tokenlearner"] = {**preset["tokenlearner"], **kwargs["tokenlearner"]}
        return builder(**merged)

    size_name = f"{size.upper()}/{patch}"
    total = f"{depth}+{extra}" if extra else f"{depth}"
    placement = f", {tokens}-TokenLearner at {layer}" if layer >= 0 else ""
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"{'ViViT' if video else 'ViT'}-{size_name}, {total} layers{placement}{' with TokenFuser' if fuser else ''}."
    )
    folder = "vivit" if video else "vit"
    default = _KINETICS if video else {**_IMAGENET, "crop_size": crop, "test_crop_size": crop}
    register_model(
        build,
        family=family,
        default_cfg={**default, "num_classes": preset["num_classes"], "config": f"{folder}/{name}.yaml"},
    )


# Tables 1-5 (ViT on ImageNet) and 6-8 (ViViT on Kinetics): (name, size, patch, placement...).
for _name, _size, _patch, _options in [
    ("vit_s32", "s", 32, {}),
    ("vit_s32_tl8at6", "s", 32, {"layer": 6}),
    ("vit_s32_22_tl8at11", "s", 32, {"layer": 11, "extra": 10}),
    ("vit_b32", "b", 32, {}),
    ("vit_b32_20_tl8at10", "b", 32, {"layer": 10, "extra": 8}),
    ("vit_b16", "b", 16, {}),
    ("vit_b16_tl8at6", "b", 16, {"layer": 6}),
    ("vit_b16_tl16at6", "b", 16, {"layer": 6, "tokens": 16}),
    ("vit_b16_tl8at6_fuser", "b", 16, {"layer": 6, "fuser": True}),
    ("vit_b16_tl16at6_fuser", "b", 16, {"layer": 6, "tokens": 16, "fuser": True}),
    ("vit_b16_21_tl8at10", "b", 16, {"layer": 10, "extra": 9}),
    ("vit_b16_21_tl16at10", "b", 16, {"layer": 10, "tokens": 16, "extra": 9}),
    ("vit_l16", "l", 16, {}),
    ("vit_l16_tl8at18", "l", 16, {"layer": 18}),
    ("vit_l16_tl8at18_fuser", "l", 16, {"layer": 18, "fuser": True}),
    ("vit_l16_tl16at12", "l", 16, {"layer": 12, "tokens": 16}),
    ("vit_l16_tl16at12_fuser", "l", 16, {"layer": 12, "tokens": 16, "fuser": True}),
    ("vit_l16_24p6_tl8at18", "l", 16, {"layer": 18, "extra": 6}),
    ("vit_l16_24p11_tl16at12", "l", 16, {"layer": 12, "tokens": 16, "extra": 11}),
    ("vit_l14", "l", 14, {}),
    ("vit_l14_24p11_tl16at18", "l", 14, {"layer": 18, "tokens": 16, "extra": 11}),
    ("vit_l10", "l", 10, {}),
    ("vit_l10_24p11_tl16at18", "l", 10, {"layer": 18, "tokens": 16, "extra": 11}),
    ("vit_l10_24p11_tl16at18_fuser", "l", 10, {"layer": 18, "tokens": 16, "extra": 11, "fuser": True}),
    ("vit_l8", "l", 8, {}),
    ("vit_l8_24p11_tl16at18", "l", 8, {"layer": 18, "tokens": 16, "extra": 11}),
]:
    _register(_name, "vit", _size, _patch, **_options)

for _name, _size, _patch, _options in [
    ("vivit_b16", "b", 16, {}),
    ("vivit_l16", "l", 16, {}),
    ("vivit_l16_tl16at12", "l", 16, {"layer": 12, "tokens": 16}),
    ("vivit_l16_24p6_tl8at18", "l", 16, {"layer": 18, "extra": 6}),
    ("vivit_l14_24p11_tl16at18", "l", 14, {"layer": 18, "tokens": 16, "extra": 11}),
    ("vivit_l10_24p11_tl16at18", "l", 10, {"layer": 18, "tokens": 16, "extra": 11}),
    (
        "vivit_l10_24p11_tl16at18_fuser",
        "l",
        10,
        {"layer": 18, "tokens": 16, "extra": 11, "fuser": True, "num_classes": 600},
    ),
]:
    _register(_name, "vivit", _size, _patch, **_options)


# The official code's ImageNet setting (scenic/projects/token_learner/configs/im1k_token_learner_config.py):
# ViT-B/16 at 224, TokenLearner v1.1 with 16 tokens after layer 9, no TokenFuser, no dropout.
@register_model(
    family="vit",
    default_cfg={**_IMAGENET, "crop_size": 224, "test_crop_size": 224, "multi_label": True,
                 "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                 "config": "vit/scenic_im1k_b16_tl16at9_v11.yaml"},
)  # fmt: skip
def vit_b16_tl16at9_v11_scenic(**kwargs: Any) -> VisionTransformer:
    """ViT-B/16 with TokenLearner v1.1 (16 tokens after layer 9): the official ImageNet TokenLearner setting."""
    preset: Dict[str, Any] = {
        "image_size": 224,
        "classifier": "gap",
        "tokenlearner_layer": 9,
        "head_bias_init": -10.0,
        "tokenlearner": {"tokenizer": "tokenlearner_v11", "num_tokens": 16},
    }
    return vit(**{**preset, **kwargs})
