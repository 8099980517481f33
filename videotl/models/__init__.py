"""Models: named entry points (``create_model``, ``list_models``), the X3D family with TokenLearner
res5 modules, ViT / ViViT with TokenLearner, and their building blocks."""

# The built-in entry points register themselves as these modules load: MODELS is full from here on.
from . import vit_models, x3d_models  # noqa: E402, F401, I001
from .build import CONFIG_ADAPTERS, build_model
from .components import FUSERS, RES5_SPATIAL_OPS, RES5_TEMPORAL_OPS, TOKEN_TRANSFORMERS, TOKENIZERS, TokenLearnerSpec
from .factory import MODELS, ModelEntry, create_model, list_models, model_entry, register_model
from .memory_format import to_channels_last_3d
from .tokenfuser import BroadcastFuser, MaskUnpoolFuser, TokenFuser
from .tokenlearner import DenseTokenizer, FixedGridTokenizer, PoolMlpTokenizer, TokenLearner, TokenLearnerV11
from .vector_transformer import VectorAttention, vector_attention_chunked, vector_attention_naive
from .vit import VisionTransformer, create_vit, create_vivit, load_pretrained

__all__ = [
    "CONFIG_ADAPTERS",
    "FUSERS",
    "MODELS",
    "RES5_SPATIAL_OPS",
    "RES5_TEMPORAL_OPS",
    "TOKENIZERS",
    "TOKEN_TRANSFORMERS",
    "ModelEntry",
    "TokenLearnerSpec",
    "build_model",
    "create_model",
    "list_models",
    "model_entry",
    "register_model",
    "to_channels_last_3d",
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
    "create_vit",
    "create_vivit",
    "load_pretrained",
]
