"""The TokenLearner settings both model families share, and the registries of the parts a res5
block or a ViT layer is assembled from: tokenizers, token transformers, fusers, res5 operators.

A part is registered as a factory that takes a :class:`PartContext` (the width it works at, the
clip length, the res5 map size, the TokenLearner settings) and returns the module::

    @TOKENIZERS.register("my_tokenizer")
    def _my_tokenizer(ctx: PartContext) -> nn.Module:
        return MyTokenizer(dim=ctx.dim, num_tokens=ctx.tokenlearner.num_tokens)

after which ``TOKENLEARNER.TOKENIZER my_tokenizer`` (or ``TokenLearnerSpec(tokenizer="my_tokenizer")``)
builds it; the config accepts every registered name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Tuple, Union

from torch import nn

from ..registry import Registry
from ..settings import setting
from .attention import GELU_TANH, MultiHeadSelfAttention
from .blocks import AxisSelfAttention, TemporalMlpMixer, TokenLearnerModule
from .tokenfuser import BroadcastFuser, MaskUnpoolFuser, TokenFuser
from .tokenlearner import DenseTokenizer, FixedGridTokenizer, PoolMlpTokenizer, TokenLearner, TokenLearnerV11
from .vector_transformer import IMPLEMENTATIONS, TokenTransformerLayer, VectorAttention

__all__ = [
    "ALPHA_INITS",
    "FUSERS",
    "NO_FUSER",
    "PartContext",
    "RES5_SPATIAL_OPS",
    "RES5_TEMPORAL_OPS",
    "TOKENIZERS",
    "TOKEN_TRANSFORMERS",
    "TokenLearnerSpec",
    "build_fuser",
    "build_tokenizer",
    "build_tokenlearner_module",
    "tokenlearner_spec",
]

# ``TokenLearnerSpec.fuser`` for a ViT without TokenFuser (the paper's Figure 3 (a)).
NO_FUSER = "none"
# ``TokenLearnerSpec.alpha_init`` values.
ALPHA_INITS = ("torch", "flax")


@dataclass(frozen=True)
class TokenLearnerSpec:
    """How a TokenLearner module is built, in both families (config section ``TOKENLEARNER``: each
    field's key is its name in capitals, ``num_tokens`` <-> ``TOKENLEARNER.NUM_TOKENS``).

    The defaults are the paper's video model (section 6.1): one 1x1 conv alpha, mean pooling, a
    Vector Transformer at d = 432, a TokenFuser mixing all S*T tokens with a linear + sigmoid beta.
    ``docs/faithfulness.md`` lists where the official Scenic code differs and which field switches.
    Each field's help is its declaration below (``tools/model_info.py --help-keys`` lists them).
    """

    tokenizer: str = setting(
        "tokenlearner",
        help="a TOKENIZERS name: tokenlearner, tokenlearner_v11, fixed_grid, dense, pool_mlp",
        choices=lambda: TOKENIZERS.names(),
    )
    num_tokens: int = setting(8, help="S, tokens per frame", positive=True)
    alpha_layers: int = setting(1, help="convs of the attention function alpha (the ViT's: 4)", positive=True)
    alpha_kernel: int = setting(1, help="kernel of alpha's convs, odd (the ViT's: 3)", positive=True)
    pooling: str = setting("mean", help="rho: mean (eq. 1) or sum (Scenic)", choices=("mean", "sum"))
    layernorm: bool = setting(False, help="LayerNorm on the input of alpha (Scenic; the ViT family)")
    alpha_init: str = setting(
        "torch",
        help="initial weights of alpha: torch (PyTorch's uniform default) or flax (Scenic's lecun-normal, a "
        "wider spread); X3D family only, the ViT family always starts like flax",
        choices=ALPHA_INITS,
    )
    v11_hidden_dim: int = setting(64, help="hidden width of the v1.1 tokenizer's MLP", positive=True)
    dim: int = setting(
        0, help="width d of the token transformer's query / key projections; 0 = the token width", non_negative=True
    )
    transformer: str = setting(
        "vector", help="a TOKEN_TRANSFORMERS name: vector, mhsa", choices=lambda: TOKEN_TRANSFORMERS.names()
    )
    num_heads: int = setting(8, help="heads of the mhsa token transformer", positive=True)
    chunk_size: int = setting(
        64, help="query rows per chunk of the Vector Transformer; 0 = the naive form", non_negative=True
    )
    mlp_ratio: float = setting(
        0.0, help="MLP after the token transformer, hidden width ratio; 0 = none", non_negative=True
    )
    fuser: str = setting(
        "tokenfuser",
        help="a FUSERS name (tokenfuser, broadcast, unpool_masks), or none (ViT only: Figure 3 (a))",
        choices=lambda: (*FUSERS.names(), NO_FUSER),
    )
    fuser_mix: str = setting(
        "all",
        help="TokenFuser's token map over all S*T tokens (all, the paper) or per frame (frame, Scenic)",
        choices=("all", "frame"),
    )
    fuser_weights: str = setting(
        "linear", help="TokenFuser's beta: linear (the paper) or mlp (Scenic)", choices=("linear", "mlp")
    )
    fuser_mix_bias: bool = setting(False, help="a bias in the token map (Scenic has one, the paper's M has none)")
    fuser_hidden_dim: int = setting(64, help="hidden width of the mlp beta", positive=True)
    dropout: float = setting(
        0.0,
        help="Scenic's dropout inside the v1.1 MLP, the fuser's MLP and on the fuser's output (X3D family; the "
        "ViT family uses VIT.DROPOUT_RATE)",
        within=(0.0, 1.0),
    )
    attention_impl: str = setting(
        "auto",
        help="the Vector Transformer's kernels: auto (Triton on CUDA, the C kernels on CPU), triton or pytorch",
        choices=IMPLEMENTATIONS,
    )


def tokenlearner_spec(
    value: Union[None, TokenLearnerSpec, Mapping[str, Any]], base: Optional[TokenLearnerSpec] = None
) -> TokenLearnerSpec:
    """A spec from a spec, a mapping of fields to change in ``base`` (``{"num_tokens": 4}``), or None
    (``base``, default the paper's)."""
    base = base or TokenLearnerSpec()
    if value is None:
        return base
    if isinstance(value, TokenLearnerSpec):
        return value
    names = {f.name for f in dataclasses.fields(TokenLearnerSpec)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise TypeError(f"TokenLearnerSpec has no field {', '.join(unknown)}; fields: {', '.join(sorted(names))}")
    return dataclasses.replace(base, **value)


@dataclass(frozen=True)
class PartContext:
    """What a part factory needs to build its module.

    Attributes:
        dim: the width the part works at (the res5 inner width, or the ViT's hidden size).
        num_frames: frames (ViViT: time steps) the token-axis layers are built for.
        spatial_size: (H, W) of the map a tokenizer sees at training time.
        num_heads: heads of the res5 MHSA operators.
        stride: the spatial stride of a res5 spatial operator.
        tokenlearner: the TokenLearner settings.
        act_layer: the activation of the ViT family's TokenLearner parts (flax's tanh GELU).
    """

    dim: int
    num_frames: int = 1
    spatial_size: Tuple[int, int] = (7, 7)
    num_heads: int = 8
    stride: int = 1
    tokenlearner: TokenLearnerSpec = field(default_factory=TokenLearnerSpec)
    act_layer: Callable[[], nn.Module] = GELU_TANH


Factory = Callable[[PartContext], nn.Module]

TOKENIZERS: Registry[Factory] = Registry("tokenizer")
TOKEN_TRANSFORMERS: Registry[Factory] = Registry("token transformer")
FUSERS: Registry[Factory] = Registry("fuser")
# What replaces (or keeps) the 1x3x3 spatial conv of a converted res5 block; a factory returning
# None drops the spatial unit (the block then strides in conv_a).
RES5_SPATIAL_OPS: Registry[Callable[[PartContext], Optional[nn.Module]]] = Registry("res5 spatial operator")
# What replaces the 3x1x1 temporal conv of a converted res5 block.
RES5_TEMPORAL_OPS: Registry[Factory] = Registry("res5 temporal operator")


def _initialised(module: nn.Module, alpha_init: str) -> nn.Module:
    if alpha_init not in ALPHA_INITS:
        raise ValueError(f"alpha_init must be one of {', '.join(ALPHA_INITS)}, got {alpha_init!r}")
    if alpha_init == "flax":
        module.reset_parameters_like_flax()
    return module


@TOKENIZERS.register("tokenlearner")
def _tokenlearner(ctx: PartContext) -> nn.Module:
    tl = ctx.tokenlearner
    module = TokenLearner(
        dim=ctx.dim,
        num_tokens=tl.num_tokens,
        alpha_layers=tl.alpha_layers,
        alpha_kernel=tl.alpha_kernel,
        pooling=tl.pooling,
        use_layernorm=tl.layernorm,
        act_layer=ctx.act_layer,
    )
    return _initialised(module, tl.alpha_init)


@TOKENIZERS.register("tokenlearner_v11")
def _tokenlearner_v11(ctx: PartContext) -> nn.Module:
    tl = ctx.tokenlearner
    module = TokenLearnerV11(
        dim=ctx.dim, num_tokens=tl.num_tokens, hidden_dim=tl.v11_hidden_dim, act_layer=ctx.act_layer, dropout=tl.dropout
    )
    return _initialised(module, tl.alpha_init)


@TOKENIZERS.register("fixed_grid")
def _fixed_grid(ctx: PartContext) -> nn.Module:
    return FixedGridTokenizer(num_tokens=ctx.tokenlearner.num_tokens)


@TOKENIZERS.register("dense")
def _dense(ctx: PartContext) -> nn.Module:
    return DenseTokenizer(num_tokens=ctx.tokenlearner.num_tokens, spatial_size=ctx.spatial_size)


@TOKENIZERS.register("pool_mlp")
def _pool_mlp(ctx: PartContext) -> nn.Module:
    return PoolMlpTokenizer(dim=ctx.dim, num_tokens=ctx.tokenlearner.num_tokens)


@TOKEN_TRANSFORMERS.register("vector")
def _vector(ctx: PartContext) -> nn.Module:
    tl = ctx.tokenlearner
    attention = VectorAttention(
        dim=ctx.dim, attention_dim=tl.dim, chunk_size=tl.chunk_size, implementation=tl.attention_impl
    )
    return TokenTransformerLayer(dim=ctx.dim, attention=attention, mlp_ratio=tl.mlp_ratio)


@TOKEN_TRANSFORMERS.register("mhsa")
def _mhsa(ctx: PartContext) -> nn.Module:
    tl = ctx.tokenlearner
    attention = MultiHeadSelfAttention(dim=ctx.dim, num_heads=tl.num_heads, attention_dim=tl.dim)
    return TokenTransformerLayer(dim=ctx.dim, attention=attention, mlp_ratio=tl.mlp_ratio)


@FUSERS.register("tokenfuser")
def _tokenfuser(ctx: PartContext) -> nn.Module:
    tl = ctx.tokenlearner
    return TokenFuser(
        dim=ctx.dim,
        num_tokens=tl.num_tokens,
        num_frames=ctx.num_frames,
        mix=tl.fuser_mix,
        weights=tl.fuser_weights,
        mix_bias=tl.fuser_mix_bias,
        hidden_dim=tl.fuser_hidden_dim,
        act_layer=ctx.act_layer,
        dropout=tl.dropout,
    )


@FUSERS.register("broadcast")
def _broadcast(ctx: PartContext) -> nn.Module:
    return BroadcastFuser(num_tokens=ctx.tokenlearner.num_tokens)


@FUSERS.register("unpool_masks")
def _unpool_masks(ctx: PartContext) -> nn.Module:
    return MaskUnpoolFuser(num_tokens=ctx.tokenlearner.num_tokens)


def build_tokenizer(ctx: PartContext) -> nn.Module:
    return TOKENIZERS.get(ctx.tokenlearner.tokenizer)(ctx)


def build_fuser(ctx: PartContext) -> nn.Module:
    return FUSERS.get(ctx.tokenlearner.fuser)(ctx)


def build_tokenlearner_module(ctx: PartContext) -> TokenLearnerModule:
    """TokenLearner -> token transformer -> fuser, the res5 temporal module (Fig. 9)."""
    return TokenLearnerModule(
        tokenizer=build_tokenizer(ctx),
        transformer=TOKEN_TRANSFORMERS.get(ctx.tokenlearner.transformer)(ctx),
        fuser=build_fuser(ctx),
    )


RES5_SPATIAL_OPS.register(
    "conv2d",
    lambda ctx: nn.Conv3d(
        ctx.dim, ctx.dim, (1, 3, 3), stride=(1, ctx.stride, ctx.stride), padding=(0, 1, 1), bias=False
    ),
)
RES5_SPATIAL_OPS.register(
    "spatial_mhsa", lambda ctx: AxisSelfAttention(dim=ctx.dim, num_heads=ctx.num_heads, axes="hw")
)
RES5_SPATIAL_OPS.register("none", lambda ctx: None)

RES5_TEMPORAL_OPS.register("conv1d", lambda ctx: nn.Conv3d(ctx.dim, ctx.dim, (3, 1, 1), padding=(1, 0, 0), bias=False))
RES5_TEMPORAL_OPS.register("tokenlearner", build_tokenlearner_module)
RES5_TEMPORAL_OPS.register(
    "joint_mhsa", lambda ctx: AxisSelfAttention(dim=ctx.dim, num_heads=ctx.num_heads, axes="thw")
)
RES5_TEMPORAL_OPS.register(
    "temporal_mhsa", lambda ctx: AxisSelfAttention(dim=ctx.dim, num_heads=ctx.num_heads, axes="t")
)
RES5_TEMPORAL_OPS.register("mlp_mixer", lambda ctx: TemporalMlpMixer(dim=ctx.dim, num_frames=ctx.num_frames))
