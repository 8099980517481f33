"""Config -> model. The only file in ``videotl.models`` that reads the config.

A model family registers a builder with ``@register_model("name")``; ``MODEL.ARCH`` picks it.
"""

from typing import Callable, Dict, Optional

from fvcore.common.config import CfgNode
from torch import nn

from .attention import MultiHeadSelfAttention
from .backbones import VideoClassifier, create_x3d_family, x2plus1d_middles, x3d_middles
from .blocks import AxisSelfAttention, TemporalMlpMixer, TokenLearnerModule, create_res5_middle
from .tokenfuser import BroadcastFuser, MaskUnpoolFuser, TokenFuser
from .tokenlearner import DenseTokenizer, FixedGridTokenizer, PoolMlpTokenizer, TokenLearner, TokenLearnerV11
from .vector_transformer import TokenTransformerLayer, VectorAttention

MODEL_REGISTRY: Dict[str, Callable[[CfgNode], nn.Module]] = {}

# The backbone's total spatial stride (stem 2 x four stages 2): res5 sees crop / 32.
X3D_SPATIAL_STRIDE = 32


def register_model(name: str):
    def register(builder: Callable[[CfgNode], nn.Module]) -> Callable[[CfgNode], nn.Module]:
        MODEL_REGISTRY[name] = builder
        return builder

    return register


def build_model(cfg: CfgNode) -> nn.Module:
    """Build the network ``cfg.MODEL.ARCH`` names; it returns logits (B, MODEL.NUM_CLASSES)."""
    arch = cfg.MODEL.ARCH
    if arch not in MODEL_REGISTRY:
        raise KeyError(f"MODEL.ARCH = {arch!r} has no registered builder; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[arch](cfg)


def build_tokenizer(cfg: CfgNode, *, dim: int) -> nn.Module:
    tl = cfg.TOKENLEARNER
    if tl.TOKENIZER == "tokenlearner":
        return TokenLearner(
            dim=dim,
            num_tokens=tl.NUM_TOKENS,
            alpha_layers=tl.ALPHA_LAYERS,
            alpha_kernel=tl.ALPHA_KERNEL,
            pooling=tl.POOLING,
        )
    if tl.TOKENIZER == "tokenlearner_v11":
        return TokenLearnerV11(dim=dim, num_tokens=tl.NUM_TOKENS)
    if tl.TOKENIZER == "fixed_grid":
        return FixedGridTokenizer(num_tokens=tl.NUM_TOKENS)
    if tl.TOKENIZER == "dense":
        side = cfg.DATA.TRAIN_CROP_SIZE // X3D_SPATIAL_STRIDE
        return DenseTokenizer(num_tokens=tl.NUM_TOKENS, spatial_size=(side, side))
    if tl.TOKENIZER == "pool_mlp":
        return PoolMlpTokenizer(dim=dim, num_tokens=tl.NUM_TOKENS)
    raise KeyError(f"TOKENLEARNER.TOKENIZER = {tl.TOKENIZER!r}")


def build_token_transformer(cfg: CfgNode, *, dim: int) -> nn.Module:
    tl = cfg.TOKENLEARNER
    if tl.TRANSFORMER == "vector":
        attention = VectorAttention(
            dim=dim, attention_dim=tl.DIM, chunk_size=tl.CHUNK_SIZE, implementation=tl.ATTENTION_IMPL
        )
    else:
        attention = MultiHeadSelfAttention(dim=dim, num_heads=tl.NUM_HEADS, attention_dim=tl.DIM)
    return TokenTransformerLayer(dim=dim, attention=attention, mlp_ratio=tl.MLP_RATIO)


def build_fuser(cfg: CfgNode, *, dim: int) -> nn.Module:
    tl = cfg.TOKENLEARNER
    if tl.FUSER == "tokenfuser":
        return TokenFuser(dim=dim, num_tokens=tl.NUM_TOKENS, num_frames=cfg.DATA.NUM_FRAMES, mix=tl.FUSER_MIX)
    if tl.FUSER == "broadcast":
        return BroadcastFuser(num_tokens=tl.NUM_TOKENS)
    return MaskUnpoolFuser(num_tokens=tl.NUM_TOKENS)


def build_tokenlearner_module(cfg: CfgNode, *, dim: int) -> TokenLearnerModule:
    return TokenLearnerModule(
        tokenizer=build_tokenizer(cfg, dim=dim),
        transformer=build_token_transformer(cfg, dim=dim),
        fuser=build_fuser(cfg, dim=dim),
    )


def _res5_temporal_op(cfg: CfgNode) -> Callable[..., nn.Module]:
    kind, heads = cfg.RES5.TEMPORAL, cfg.RES5.NUM_HEADS
    if kind == "conv1d":
        return lambda *, dim: nn.Conv3d(dim, dim, (3, 1, 1), padding=(1, 0, 0), bias=False)
    if kind == "tokenlearner":
        return lambda *, dim: build_tokenlearner_module(cfg, dim=dim)
    if kind == "joint_mhsa":
        return lambda *, dim: AxisSelfAttention(dim=dim, num_heads=heads, axes="thw")
    if kind == "temporal_mhsa":
        return lambda *, dim: AxisSelfAttention(dim=dim, num_heads=heads, axes="t")
    if kind == "mlp_mixer":
        return lambda *, dim: TemporalMlpMixer(dim=dim, num_frames=cfg.DATA.NUM_FRAMES)
    raise KeyError(f"RES5.TEMPORAL = {kind!r}")


def _res5_spatial_op(cfg: CfgNode) -> Optional[Callable[..., nn.Module]]:
    kind = cfg.RES5.SPATIAL
    if kind == "conv2d":
        return lambda *, dim, stride: nn.Conv3d(
            dim, dim, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
    if kind == "spatial_mhsa":
        return lambda *, dim, stride: AxisSelfAttention(dim=dim, num_heads=cfg.RES5.NUM_HEADS, axes="hw")
    return None


def _x3d_family_kwargs(cfg: CfgNode) -> dict:
    x3d = cfg.X3D
    return dict(
        stem_dim=x3d.STEM_DIM,
        stage_dims=x3d.STAGE_DIMS,
        stage_depths=x3d.STAGE_DEPTHS,
        bottleneck_factor=x3d.BOTTLENECK_FACTOR,
        conv5_dim=x3d.CONV5_DIM,
        head_dim=x3d.HEAD_DIM,
        num_classes=cfg.MODEL.NUM_CLASSES,
        dropout_rate=cfg.MODEL.DROPOUT_RATE,
    )


@register_model("x2plus1d")
def build_x2plus1d(cfg: CfgNode) -> VideoClassifier:
    """X(2+1)D-M; with ``RES5.TEMPORAL != conv1d`` (or ``RES5.SPATIAL != conv2d``) the listed res5
    blocks carry the TokenLearner module or an ablation instead of their convs."""
    plain = cfg.RES5.SPATIAL == "conv2d" and cfg.RES5.TEMPORAL == "conv1d"
    res5_builder = None
    if not plain:
        spatial, temporal = _res5_spatial_op(cfg), _res5_temporal_op(cfg)

        def res5_builder(*, dim, stride):
            return create_res5_middle(dim=dim, stride=stride, spatial_op=spatial, temporal_op=temporal)

    return create_x3d_family(
        middle_builder=x2plus1d_middles,
        res5_middle_builder=res5_builder,
        res5_converted_blocks=cfg.RES5.CONVERTED_BLOCKS,
        res5_middle_takes_stride=cfg.RES5.SPATIAL == "conv2d",
        **_x3d_family_kwargs(cfg),
    )


@register_model("x3d")
def build_x3d(cfg: CfgNode) -> VideoClassifier:
    """The X3D reference: depthwise 3x3x3, SE on alternate blocks, swish (pytorchvideo's layout)."""
    return create_x3d_family(middle_builder=x3d_middles(cfg.X3D.SE_RATIO), **_x3d_family_kwargs(cfg))
