"""The X3D family as named models: X(2+1)D-M (the paper's backbone), X3D-M, and X(2+1)D-M with the
paper's res5 modules (the Charades and AViD models, the ablations of Tables 11-13).

::

    clip (B, 3, T, H, W)
      -> stem: 1x3x3 conv 3 -> 24 /2 -> depthwise 5x1x1 -> BN -> ReLU
      -> res2 .. res4: bottlenecks  1x1x1 -> BN -> ReLU -> middle -> 1x1x1 -> BN (+ shortcut) -> ReLU
             X(2+1)D middle: 1x3x3 conv -> BN -> ReLU -> 3x1x1 conv -> BN -> ReLU
      -> res5: the same, except the converted blocks, whose middle is
             [spatial op -> BN -> ReLU] -> temporal op -> BN -> ReLU
             spatial op: 1x3x3 conv | spatial MHSA | none
             temporal op: 3x1x1 conv | TokenLearner -> Vector Transformer -> TokenFuser | joint MHSA | ...
      -> head: 1x1x1 192 -> 432 -> BN -> ReLU -> pool -> 432 -> 2048 -> ReLU -> dropout -> classes
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Sequence, Tuple, Union

from ..settings import setting
from .backbones import VideoClassifier, create_x3d_family, x2plus1d_middles, x3d_middles
from .blocks import create_res5_middle
from .components import RES5_SPATIAL_OPS, RES5_TEMPORAL_OPS, PartContext, TokenLearnerSpec, tokenlearner_spec
from .factory import register_model

__all__ = ["X3D_SPATIAL_STRIDE", "X3D_STAGE_STRIDES", "Res5Spec", "X3DSpec", "x2plus1d", "x3d"]

# The backbone's total spatial stride (stem 2 x four stages 2): res5 sees crop / 32.
X3D_SPATIAL_STRIDE = 32
# The spatial stride of each stage's first block in X3D (and the paper's X(2+1)D).
X3D_STAGE_STRIDES = (2, 2, 2, 2)

TokenLearnerArg = Union[None, TokenLearnerSpec, Mapping[str, Any]]


@dataclass(frozen=True)
class X3DSpec:
    """The X3D family's widths and depths (config section ``X3D``; X3D-M by default). X(2+1)D
    shares every one with X3D; only the X3D reference reads ``se_ratio``."""

    stem_dim: int = setting(24, help="width of the stem", positive=True)
    stage_depths: Tuple[int, ...] = setting((3, 5, 11, 7), help="blocks per stage (res2..res5)", positive=True)
    stage_dims: Tuple[int, ...] = setting((24, 48, 96, 192), help="output width per stage", positive=True)
    spatial_strides: Tuple[int, ...] = setting(
        X3D_STAGE_STRIDES,
        help="spatial stride of each stage's first block; with the stem's 2, res5 sees crop / 32",
        choices=(1, 2),
    )
    bottleneck_factor: float = setting(
        2.25, help="inner (expanded) width of a block = round(stage width x this): 54/108/216/432", positive=True
    )
    conv5_dim: int = setting(432, help="width of the 1x1x1 conv after res5", positive=True)
    head_dim: int = setting(2048, help="width of the head's hidden layer", positive=True)
    se_ratio: float = setting(0.0625, help="squeeze-excitation ratio (the X3D reference only)", within=(0.0, 1.0))


@dataclass(frozen=True)
class Res5Spec:
    """The res5 stage's module and which of its blocks carry it (config section ``RES5``; builder
    arguments ``res5_<field>``)."""

    spatial: str = setting(
        "conv2d", help="what replaces the 1x3x3 conv of a converted block", choices=lambda: RES5_SPATIAL_OPS.names()
    )
    temporal: str = setting(
        "conv1d", help="what replaces the 3x1x1 conv of a converted block", choices=lambda: RES5_TEMPORAL_OPS.names()
    )
    converted_blocks: Tuple[int, ...] = setting(
        (-3, -2, -1),
        help="res5 blocks that get the module (negative counts from the end); three of seven fits Table 10",
    )
    num_heads: int = setting(8, help="heads of the MHSA variants (joint, spatial, temporal)", positive=True)


def x2plus1d(
    *,
    num_classes: int = 157,
    stem_dim: int = 24,
    stage_dims: Sequence[int] = (24, 48, 96, 192),
    stage_depths: Sequence[int] = (3, 5, 11, 7),
    bottleneck_factor: float = 2.25,
    conv5_dim: int = 432,
    head_dim: int = 2048,
    dropout_rate: float = 0.5,
    res5_spatial: str = "conv2d",
    res5_temporal: str = "conv1d",
    res5_converted_blocks: Sequence[int] = (-3, -2, -1),
    res5_num_heads: int = 8,
    tokenlearner: TokenLearnerArg = None,
    num_frames: int = 64,
    crop_size: int = 224,
    spatial_strides: Sequence[int] = X3D_STAGE_STRIDES,
) -> VideoClassifier:
    """X(2+1)D (X3D-M widths and depths, full 1x3x3 + 3x1x1 convs, no SE, no swish).

    ::

        res5 block i in res5_converted_blocks:
            1x1x1 -> BN -> ReLU -> [res5_spatial -> BN -> ReLU] -> res5_temporal -> BN -> ReLU -> 1x1x1 -> BN (+) ReLU

    ``res5_spatial`` / ``res5_temporal`` name :data:`RES5_SPATIAL_OPS` / :data:`RES5_TEMPORAL_OPS`
    entries (``conv2d`` + ``conv1d`` is the plain backbone, ``conv2d`` + ``tokenlearner`` the
    Charades model); ``tokenlearner`` is a :class:`TokenLearnerSpec` (or a mapping of its fields).
    ``num_frames`` and ``crop_size`` are the training clip's, for layers built for a size (the
    TokenFuser's S*T map, the MLP-Mixer, the dense tokenizer). ``spatial_strides`` is each stage's
    first-block stride: ``(2, 2, 2, 1)`` keeps res5 at crop / 16 (a finer grid for TokenLearner).
    """
    spec = tokenlearner_spec(tokenlearner)
    spatial_factory = RES5_SPATIAL_OPS.get(res5_spatial)
    temporal_factory = RES5_TEMPORAL_OPS.get(res5_temporal)
    side = crop_size // (2 * math.prod(spatial_strides))
    plain = res5_spatial == "conv2d" and res5_temporal == "conv1d"

    def context(dim: int, stride: int = 1) -> PartContext:
        return PartContext(
            dim=dim,
            num_frames=num_frames,
            spatial_size=(side, side),
            num_heads=res5_num_heads,
            stride=stride,
            tokenlearner=spec,
        )

    def res5_middle(*, dim: int, stride: int):
        return create_res5_middle(
            dim=dim,
            stride=stride,
            spatial_op=None if res5_spatial == "none" else lambda *, dim, stride: spatial_factory(context(dim, stride)),
            temporal_op=lambda *, dim: temporal_factory(context(dim)),
        )

    return create_x3d_family(
        middle_builder=x2plus1d_middles,
        res5_middle_builder=None if plain else res5_middle,
        res5_converted_blocks=res5_converted_blocks,
        res5_middle_takes_stride=res5_spatial != "none",
        spatial_strides=spatial_strides,
        stem_dim=stem_dim,
        stage_dims=stage_dims,
        stage_depths=stage_depths,
        bottleneck_factor=bottleneck_factor,
        conv5_dim=conv5_dim,
        head_dim=head_dim,
        num_classes=num_classes,
        dropout_rate=dropout_rate,
    )


def x3d(
    *,
    num_classes: int = 400,
    stem_dim: int = 24,
    stage_dims: Sequence[int] = (24, 48, 96, 192),
    stage_depths: Sequence[int] = (3, 5, 11, 7),
    bottleneck_factor: float = 2.25,
    conv5_dim: int = 432,
    head_dim: int = 2048,
    dropout_rate: float = 0.5,
    se_ratio: float = 0.0625,
    spatial_strides: Sequence[int] = X3D_STAGE_STRIDES,
) -> VideoClassifier:
    """X3D as published (pytorchvideo's ``create_x3d``): depthwise 3x3x3, SE on alternate blocks, swish.

    ::

        block: 1x1x1 -> BN -> ReLU -> depthwise 3x3x3 -> BN -> [SE] -> swish -> 1x1x1 -> BN (+) ReLU
    """
    return create_x3d_family(
        middle_builder=x3d_middles(se_ratio),
        spatial_strides=spatial_strides,
        stem_dim=stem_dim,
        stage_dims=stage_dims,
        stage_depths=stage_depths,
        bottleneck_factor=bottleneck_factor,
        conv5_dim=conv5_dim,
        head_dim=head_dim,
        num_classes=num_classes,
        dropout_rate=dropout_rate,
    )


def _merge(preset: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """A preset's keyword arguments changed by ``overrides``; a ``tokenlearner`` mapping changes
    single fields of the preset's spec."""
    merged = {**preset, **overrides}
    value = overrides.get("tokenlearner")
    if isinstance(value, Mapping):
        merged["tokenlearner"] = dataclasses.replace(tokenlearner_spec(preset.get("tokenlearner")), **value)
    return merged


# The families themselves: every argument from the config (MODEL.ARCH x2plus1d / x3d).
register_model(
    x2plus1d,
    family="x3d",
    config_adapter="x2plus1d",
    default_cfg={"num_frames": 64, "crop_size": 224, "num_classes": 157, "multi_label": True,
                 "config": "baselines/x2plus1d_m.yaml"},
)  # fmt: skip
# X3D as published classifies Kinetics-400; baselines/x3d_m.yaml is the same network on Charades
# (157 classes, 64 frames), so neither entry names it as its config.
register_model(x3d, family="x3d", config_adapter="x3d", default_cfg={"num_frames": 16, "fps": 6.0})

_CHARADES = {"num_frames": 64, "fps": 12.0, "crop_size": 224, "test_crop_size": 256, "num_classes": 157,
             "multi_label": True}  # fmt: skip


@register_model(family="x3d", default_cfg={**_CHARADES, "config": "baselines/x2plus1d_m.yaml"})
def x2plus1d_m(**kwargs: Any) -> VideoClassifier:
    """X(2+1)D-M, the paper's backbone (Table 9/10 "Backbone"), for Charades (157 classes)."""
    return x2plus1d(**kwargs)


@register_model(family="x3d", default_cfg={"num_frames": 16, "fps": 6.0})
def x3d_m(**kwargs: Any) -> VideoClassifier:
    """X3D-M as published (Kinetics-400 classes, 16 frames), the reference pytorchvideo matches."""
    return x3d(**kwargs)


# The paper's two TokenLearner models: res5 blocks 4, 5, 6 converted (docs/architecture.md says why).
CHARADES_MODEL: Dict[str, Any] = {
    "res5_spatial": "conv2d",
    "res5_temporal": "tokenlearner",
    "res5_converted_blocks": (4, 5, 6),
    "tokenlearner": TokenLearnerSpec(),
}
AVID_MODEL: Dict[str, Any] = {**CHARADES_MODEL, "res5_spatial": "none", "num_classes": 887}


@register_model(family="x3d", default_cfg={**_CHARADES, "config": "charades_12fps.yaml"})
def x2plus1d_m_tokenlearner_charades(**kwargs: Any) -> VideoClassifier:
    """The paper's Charades model (Table 9): Conv2D + TokenLearner + Vector Transformer + TokenFuser."""
    return x2plus1d(**_merge(CHARADES_MODEL, kwargs))


@register_model(
    family="x3d", default_cfg={**_CHARADES, "num_classes": 887, "multi_label": False, "config": "avid.yaml"}
)
def x2plus1d_m_tokenlearner_avid(**kwargs: Any) -> VideoClassifier:
    """The paper's AViD model (Table 10): TokenLearner without Conv2D in three res5 blocks, 887 classes."""
    return x2plus1d(**_merge(AVID_MODEL, kwargs))


# Tables 11-13 and the tokenizer / fuser alternatives on Charades at 6 fps (configs/ablations/).
ABLATIONS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "conv2d_conv1d": ("Conv2D + Conv1D (the X(2+1)D block)", {"res5_temporal": "conv1d"}),
    "conv2d_joint_mhsa": ("Conv2D + joint space-time MHSA", {"res5_temporal": "joint_mhsa"}),
    "conv2d_mlp_mixer": ("Conv2D + MLP-Mixer over time", {"res5_temporal": "mlp_mixer"}),
    "conv2d_temporal_transformer": ("Conv2D + temporal MHSA", {"res5_temporal": "temporal_mhsa"}),
    "conv2d_tokenlearner": ("Conv2D + TokenLearner + VectT + TokenFuser", {}),
    "dense_tokens": ("Conv2D + dense-layer tokens + VectT + TokenFuser", {"tokenlearner": {"tokenizer": "dense"}}),
    "fixed_grid": ("Conv2D + fixed-grid tokens + VectT + TokenFuser", {"tokenlearner": {"tokenizer": "fixed_grid"}}),
    "joint_mhsa": ("Joint space-time MHSA", {"res5_spatial": "none", "res5_temporal": "joint_mhsa"}),
    "pool_mlp_tokens": (
        "Conv2D + pool-and-MLP tokens + VectT + TokenFuser",
        {"tokenlearner": {"tokenizer": "pool_mlp"}},
    ),
    "spatial_temporal_transformer": (
        "Spatial MHSA + temporal MHSA",
        {"res5_spatial": "spatial_mhsa", "res5_temporal": "temporal_mhsa"},
    ),
    "spatial_tokenlearner": ("Spatial MHSA + TokenLearner + VectT + TokenFuser", {"res5_spatial": "spatial_mhsa"}),
    "tokenlearner": ("TokenLearner + VectT + TokenFuser (no Conv2D)", {"res5_spatial": "none"}),
    "tokenlearner_mhsa": ("Conv2D + TokenLearner + MHSA + TokenFuser", {"tokenlearner": {"transformer": "mhsa"}}),
    "tokenlearner_v11": (
        "Conv2D + TokenLearner v1.1 + VectT + TokenFuser",
        {"tokenlearner": {"tokenizer": "tokenlearner_v11"}},
    ),
    "unpool_masks": ("Conv2D + TokenLearner + VectT + mask unpooling", {"tokenlearner": {"fuser": "unpool_masks"}}),
    "vector_broadcast": ("Conv2D + TokenLearner + VectT + broadcasting", {"tokenlearner": {"fuser": "broadcast"}}),
}


def _ablation_builder(variant: str, description: str, changes: Dict[str, Any]):
    preset = _merge(CHARADES_MODEL, changes)

    def build(**kwargs: Any) -> VideoClassifier:
        return x2plus1d(**_merge(preset, kwargs))

    build.__name__ = build.__qualname__ = f"x2plus1d_m_{variant}"
    build.__doc__ = f"Ablation: {description} in res5 blocks 4-6 (configs/ablations/{variant}.yaml)."
    return build


for _variant, (_description, _changes) in ABLATIONS.items():
    register_model(
        _ablation_builder(_variant, _description, _changes),
        family="x3d",
        default_cfg={**_CHARADES, "fps": 6.0, "config": f"ablations/{_variant}.yaml"},
    )
