"""Models: the X3D family with TokenLearner res5 modules, and their building blocks."""

from .build import MODEL_REGISTRY, build_model, register_model
from .tokenfuser import BroadcastFuser, MaskUnpoolFuser, TokenFuser
from .tokenlearner import DenseTokenizer, FixedGridTokenizer, PoolMlpTokenizer, TokenLearner, TokenLearnerV11
from .vector_transformer import VectorAttention, vector_attention_chunked, vector_attention_naive
from .vit import VisionTransformer, build_vit, build_vivit, create_vit, create_vivit, load_pretrained

__all__ = [
    "MODEL_REGISTRY",
    "build_model",
    "register_model",
    "TokenLearner",
    "TokenLearnerV11",
    "FixedGridTokenizer",
    "DenseTokenizer",
    "PoolMlpTokenizer",
    "TokenFuser",
    "BroadcastFuser",
    "MaskUnpoolFuser",
    "VectorAttention",
    "vector_attention_naive",
    "vector_attention_chunked",
    "VisionTransformer",
    "build_vit",
    "build_vivit",
    "create_vit",
    "create_vivit",
    "load_pretrained",
]
